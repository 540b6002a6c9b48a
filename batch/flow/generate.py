"""The generate stage: one engine call for many requests, split and retried when it fails.

An exception from the engine (out of memory on a huge batch, one poisonous request) must not
cost the whole batch: the batch is halved and each half retried, down to single requests; a
request that still fails gets its error message instead of a completion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from batch.engine.base import Completion, Engine, GenerationRequest, SamplingSettings

log = logging.getLogger(__name__)


def generate_with_retries(
    engine: Engine, requests: Sequence[GenerationRequest], sampling: SamplingSettings
) -> list[Completion | str]:
    """Completions in request order; a ``str`` in place of a completion is an engine error."""
    if not requests:
        return []
    try:
        results = engine.generate(requests, sampling)
        if len(results) != len(requests):
            raise RuntimeError(
                f"engine returned {len(results)} completions for {len(requests)} requests"
            )
        return list(results)
    except Exception as exc:  # noqa: BLE001 - any engine failure becomes rows with a status
        message = f"{type(exc).__name__}: {exc}"
        if len(requests) == 1:
            log.warning("engine failed on a single request: %s", message)
            return [message]
        log.warning("engine failed on %d requests (%s); retrying in halves", len(requests), message)
        middle = len(requests) // 2
        return generate_with_retries(engine, requests[:middle], sampling) + generate_with_retries(
            engine, requests[middle:], sampling
        )
