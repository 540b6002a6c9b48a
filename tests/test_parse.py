import pytest

from batch.engine.scripted import harmony_completion
from batch.flow.parse import (
    OK,
    PARSE_ERROR,
    TRUNCATED,
    parse_binary,
    parse_completion,
    parse_json,
)
from batch.vocab import load_encoding


def parse(final, analysis="Looks fine.", fmt="binary", finish="stop"):
    completion = harmony_completion(final, analysis, finish_reason=finish)
    return parse_completion(completion.token_ids, completion.finish_reason, fmt)


def test_binary_ok_carries_label_violation_and_reasoning():
    verdict = parse("1", "It offers a prize and asks to text a short code.")
    assert verdict.status == OK
    assert verdict.label == "1" and verdict.violation is True
    assert verdict.reasoning == "It offers a prize and asks to text a short code."
    assert parse("0").violation is False


def test_json_ok_carries_category_and_rationale():
    final = '{"violation": 1, "policy_category": "hate", "rationale": "Dehumanises a group."}'
    verdict = parse(final, fmt="json")
    assert (verdict.status, verdict.label, verdict.violation) == (OK, "1", True)
    assert verdict.policy_category == "hate"
    assert verdict.rationale == "Dehumanises a group."


@pytest.mark.parametrize(
    "text, label",
    [("1", "1"), (" 0\n", "0"), ("`1`", "1"), ('"0"', "0"), ("1.", "1"), ("**1**", "1")],
)
def test_binary_tolerates_decoration(text, label):
    assert parse_binary(text)[0] == label


@pytest.mark.parametrize("text", ["yes", "10", "1 because spam", "", "0 or 1"])
def test_binary_rejects_anything_else(text):
    with pytest.raises(ValueError):
        parse_binary(text)


@pytest.mark.parametrize(
    "text, label",
    [
        ('{"violation": 0}', "0"),
        ('{"violation": true, "policy_category": null}', "1"),
        ('```json\n{"violation": "1"}\n```', "1"),
    ],
)
def test_json_variants(text, label):
    assert parse_json(text)[0] == label


@pytest.mark.parametrize(
    "text", ['{"violation": 2}', '{"category": "x"}', "[1]", "{violation: 1}", "1"]
)
def test_json_rejects_bad_objects(text):
    with pytest.raises(ValueError):
        parse_json(text)


def test_missing_final_is_a_parse_error():
    verdict = parse(None, "Only thinking, never answering.")
    assert verdict.status == PARSE_ERROR
    assert "no final" in verdict.error
    assert verdict.reasoning == "Only thinking, never answering."


def test_unparseable_verdict_is_a_parse_error():
    verdict = parse("maybe", fmt="binary")
    assert verdict.status == PARSE_ERROR and verdict.label is None
    verdict = parse("not json", fmt="json")
    assert verdict.status == PARSE_ERROR and "JSON" in verdict.error


def test_hitting_max_tokens_is_truncated_even_mid_analysis():
    completion = harmony_completion("1", "a long analysis " * 20, max_tokens=10)
    assert completion.finish_reason == "length"
    verdict = parse_completion(completion.token_ids, completion.finish_reason, "binary")
    assert verdict.status == TRUNCATED
    assert verdict.label is None


def test_damaged_tail_keeps_the_reasoning_that_came_before_it():
    encoding = load_encoding()
    text = "<|channel|>analysis<|message|>Thought it through.<|end|><|start|>assistant<|channel|>"
    tokens = encoding.encode(text, allowed_special="all")
    verdict = parse_completion(tokens, "stop", "binary")
    assert verdict.status == PARSE_ERROR
    assert verdict.reasoning == "Thought it through."


def test_garbage_tokens_never_raise():
    tokens = load_encoding().encode("random words without any harmony framing")
    assert parse_completion(tokens, "stop", "binary").status == PARSE_ERROR
    assert parse_completion(tokens, "length", "binary").status == TRUNCATED
    assert parse_completion([], "stop", "json").status == PARSE_ERROR


def _harmony_only(tokens, finish_reason, output_format):
    """The verdict harmony's own parser gives, with the fast path switched off."""
    import batch.flow.parse as parse_module

    original = parse_module._fast_messages
    parse_module._fast_messages = lambda encoding, tokens: None
    try:
        return parse_completion(tokens, finish_reason, output_format)
    finally:
        parse_module._fast_messages = original


def test_fast_path_agrees_with_harmony_on_valid_and_damaged_completions():
    import random

    from batch.flow.parse import _fast_messages

    encoding = load_encoding()
    finals = ["0", "1", ' {"violation": 1, "policy_category": "hate"} ', "", "maybe", "1\n"]
    analyses = [None, "", "Plain.", "Multi\nline\n\nreasoning ", "émoji 😀 中文 \u200b", "a" * 300]
    texts = []
    for final in finals:
        for analysis in analyses:
            texts.append(
                (
                    f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant"
                    if analysis is not None
                    else ""
                )
                + f"<|channel|>final<|message|>{final}<|return|>"
            )
    texts += [
        "<|channel|>analysis<|message|>only thinking<|end|>",
        "<|channel|>commentary<|message|>tool talk<|end|>"
        "<|start|>assistant<|channel|>final<|message|>1<|return|>",
        "<|channel|>final<|message|>0<|end|>",
        "<|channel|>analysis<|message|>x<|end|><|start|>user<|channel|>final<|message|>1<|return|>",
        '<|channel|>final <|constrain|>json<|message|>{"violation": 0}<|return|>',
        "<|channel|>final<|message|>1<|return|>trailing",
        "plain text with no harmony at all",
        "<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>analysis<|message|>b<|end|><|start|>assistant<|channel|>final<|message|>0<|return|>",
    ]
    rng = random.Random(0)
    checked = fast_hits = 0
    for text in texts:
        tokens = encoding.encode(text, allowed_special="all")
        variants = [tokens] + [tokens[: rng.randint(0, len(tokens))] for _ in range(4)]
        variants += [tokens[:i] + tokens[i + 1 :] for i in rng.sample(range(len(tokens)), 2)]
        for variant in variants:
            for fmt in ("binary", "json"):
                assert parse_completion(variant, "stop", fmt) == _harmony_only(
                    variant, "stop", fmt
                ), (
                    encoding.decode(variant),
                    fmt,
                )
                checked += 1
            fast_hits += _fast_messages(encoding, list(variant)) is not None
    assert checked > 500 and fast_hits > 50  # both paths were really exercised
