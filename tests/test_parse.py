import pytest

from batch.engine.scripted import harmony_completion
from batch.parse import (
    OK,
    PARSE_ERROR,
    TRUNCATED,
    parse_binary,
    parse_completion,
    parse_json,
)
from batch.render import load_encoding


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
