"""The Transformers engine's continuous batching (Transformers 5.x,
``model.init_continuous_batching``): a paged KV cache, requests entering as others finish and
coming back when they are done. Why it is the default only on a GPU, and how its score is read,
is in ``batch.engine.transformers_engine``'s docstring."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from batch.engine.base import (
    FLOOR,
    Completion,
    Finished,
    GenerationRequest,
    Keyed,
    SamplingSettings,
)

if TYPE_CHECKING:  # pragma: no cover
    from batch.engine.transformers_engine import TransformersEngine

CPU_PAGE = 32  # tokens a KV page holds on a CPU (Transformers sizes a GPU's cache itself)


def start_manager(engine: TransformersEngine, sampling: SamplingSettings) -> Any:
    """A started continuous-batching manager for these settings."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    generation = GenerationConfig(**engine.generation_settings(sampling))
    sizing: dict[str, Any] = {}
    if engine.device == "cpu":  # else Transformers sizes the cache from the GPU's memory
        longest = engine.max_model_len or 4096
        pages = -(-longest // CPU_PAGE)
        sizing = {"page_size": CPU_PAGE, "num_blocks": pages * engine.slots,
                  "max_batch_tokens": max(1024, longest)}  # fmt: skip
    cb = ContinuousBatchingConfig(
        return_logprobs=True,
        max_requests_per_batch=engine.slots,
        seed=engine.config.seed,
        **sizing,
    )
    manager = engine.model.init_continuous_batching(
        generation_config=generation, continuous_batching_config=cb
    )
    manager.start()
    return manager


def stream_continuous(
    engine: TransformersEngine,
    requests: Iterable[Keyed],
    sampling: SamplingSettings,
    max_in_flight: int,
) -> Iterator[Finished]:
    """Keep up to ``max_in_flight`` requests in the manager; yield each as it finishes. If
    the manager's thread dies, its requests in flight get its error and a new one goes on."""
    pending = iter(requests)
    limit = max(1, max_in_flight)
    names = (f"r{n}" for n in itertools.count())
    flight: dict[str, Keyed] = {}
    manager, exhausted = None, False
    try:
        while True:
            if manager is None:
                manager = start_manager(engine, sampling)
            while not exhausted and len(flight) < limit:
                item = next(pending, None)
                if item is None:
                    exhausted = True
                    break
                name = next(names)
                added = manager.add_request(
                    list(item[1].prompt_token_ids), request_id=name,
                    max_new_tokens=sampling.max_tokens, eos_token_id=engine.stop_token_ids,
                )  # fmt: skip
                if added is None:
                    yield item[0], "the continuous-batching manager refused the request"
                    continue
                flight[name] = item
            if not flight:
                return
            result = manager.get_result(timeout=1)
            if result is None:
                if not manager.is_running():
                    error = getattr(manager.background_thread_status, "fatal_error", None)
                    message = f"Transformers' generation thread stopped: {error!r}"
                    for key, _ in flight.values():
                        yield key, message
                    flight.clear()
                    stop_manager(manager)
                    manager = None
                continue
            if not result.is_finished() or result.request_id not in flight:
                continue
            key, request = flight.pop(result.request_id)
            if result.error:
                yield key, f"Transformers: {result.error}"
            else:
                yield key, continuous_completion(engine, result, request)
    finally:
        if manager is not None:
            stop_manager(manager)


def stop_manager(manager: Any) -> None:
    manager.stop(block=True, timeout=30)
    destroy = getattr(manager, "destroy", None)
    if destroy is not None:
        destroy()


def continuous_completion(
    engine: TransformersEngine, result: Any, request: GenerationRequest
) -> Completion:
    generated = list(result.generated_tokens)
    stop = next((i for i, t in enumerate(generated) if t in engine.stop_token_ids), None)
    tokens = generated if stop is None else generated[: stop + 1]
    scores = None
    if request.score_tokens:
        wanted = set(request.score_tokens)
        scores = {position: sampled_against_the_rest(token, logprob)
                  for position, (token, logprob)
                  in enumerate(zip(tokens, result.logprobs, strict=False))
                  if token in wanted}  # fmt: skip
    return Completion(tokens, "length" if stop is None else "stop", 0, scores)


def sampled_against_the_rest(token: int, logprob: float) -> dict[int, float]:
    """A position's log-probabilities when only the sampled token's is known: everything else
    shares ``1 - P(sampled)``, given as the floor (what ``verdict_score`` gives a digit that
    is not listed)."""
    rest = -math.inf if logprob >= 0 else math.log(-math.expm1(logprob))
    return {token: logprob, FLOOR: rest}
