"""An OpenAI-compatible server as the engine: ``vllm serve``, SGLang, llama.cpp's server,
LM Studio, Ollama's OpenAI endpoint.

The prompt the server sees is exactly the harmony prompt this job rendered, never the server's
chat template: sent as token ids where the server takes them (vLLM, SGLang: ``prompt`` as a
list of ids, ``return_token_ids``), else as harmony text on the raw completions endpoint, its
answer encoded back with harmony (``mode`` says which, in the manifest). Stop tokens, the
per-row seed, temperature, top_p and max_tokens go with every request; the score's
log-probabilities where the server returns them. Up to ``max_in_flight`` requests are open at
once; connection errors, timeouts, 429 and 5xx are retried with backoff, and a request that
keeps failing gets ``engine_error`` while the run goes on. Only the given base URL is
contacted (no proxy from the environment); the API key is read from the environment variable
named by ``--api-key-env``, never stored.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from batch.engine.base import (
    SCORE_TOP_K,
    Completion,
    Finished,
    GenerationRequest,
    Keyed,
    SamplingSettings,
    score_logprobs_at,
)
from batch.engine.openai_http import HttpClient, ServerConfig, error_text, retryable
from batch.engine.openai_probe import answer_tokens, probe_server, prompt_body


class OpenAIEngine:
    """Streams requests to an OpenAI-compatible completions endpoint, in parallel."""

    name = "openai"
    slots: int | None = 64  # requests a server is assumed to run at once: 256 in flight

    def __init__(self, config: ServerConfig, stop_token_ids: Sequence[int]) -> None:
        self.config = config
        self.stop_token_ids = list(stop_token_ids)
        self.client = HttpClient(config)
        found = probe_server(self.client, config.served_model, self.stop_token_ids)
        self.model, self.mode, self.scores = found.model, found.mode, found.scores
        self.server = found.server
        limit = found.server.get("max_model_len")
        self.max_model_len = limit if isinstance(limit, int) and limit > 0 else None
        self.calls = 0

    def body(self, request: GenerationRequest, sampling: SamplingSettings) -> dict[str, Any]:
        """One request as the server takes it."""
        body = prompt_body(self.mode, request.prompt_token_ids, self.stop_token_ids)
        body.update(
            model=self.model,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=request.seed,
            **self.config.extra,
        )
        if request.score_tokens and self.scores:
            body.update(logprobs=SCORE_TOP_K, return_tokens_as_token_ids=True)
        return body

    def complete(self, request: GenerationRequest, sampling: SamplingSettings) -> Completion | str:
        """One request with its retries: its completion, or the error that it ended on."""
        body, delay = self.body(request, sampling), self.config.backoff
        deadline = time.monotonic() + self.config.retry_seconds
        for attempt in range(self.config.retries + 1):
            try:
                answer = self.client.call("/completions", body)
                self.calls += 1
                return self.completion(answer, request.score_tokens)
            except Exception as exc:  # noqa: BLE001 - every failure is this request's
                wait_for = delay * (1 + random.random())
                late = time.monotonic() + wait_for > deadline
                if attempt == self.config.retries or late or not retryable(exc):
                    return f"server: {error_text(exc)}"
                time.sleep(wait_for)
                delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    def completion(self, answer: Any, score_tokens: Sequence[int]) -> Completion:
        choice = answer["choices"][0]
        token_ids = answer_tokens(self.mode, choice)
        usage = answer.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        scores = None
        logprobs = choice.get("logprobs") or {}
        if score_tokens and logprobs.get("top_logprobs"):
            top = [_by_token_id(entry) for entry in logprobs["top_logprobs"]]
            scores = score_logprobs_at(token_ids, top, score_tokens)
        finish = choice.get("finish_reason")
        return Completion(token_ids, "length" if finish == "length" else finish, int(cached),
                          scores)  # fmt: skip

    def stream(
        self, requests: Iterable[Keyed], sampling: SamplingSettings, max_in_flight: int
    ) -> Iterator[Finished]:
        """Up to ``max_in_flight`` requests open at once, answers yielded as they come."""
        pending = iter(requests)
        open_: dict[Future, Any] = {}
        with ThreadPoolExecutor(max_workers=max(1, max_in_flight)) as pool:
            try:
                while True:
                    while len(open_) < max_in_flight and (item := next(pending, None)):
                        key, request = item
                        open_[pool.submit(self.complete, request, sampling)] = key
                    if not open_:
                        return
                    done, _ = wait(open_, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield open_.pop(future), future.result()
            finally:
                for future in open_:
                    future.cancel()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "base_url": self.client.base,
            "served_model": self.model,
            "mode": self.mode,
            "scores": "from the server's log-probabilities"
            if self.scores
            else "none: the server returns no log-probabilities (score is null)",
            "server": self.server,
            "retries": self.config.retries,
            "retry_seconds": self.config.retry_seconds,
            "timeout_seconds": self.config.timeout,
        }


def _by_token_id(entry: dict[str, float] | None) -> dict[int, float]:
    """A position's top log-probabilities keyed by token id (``token_id:123`` keys)."""
    out: dict[int, float] = {}
    for token, logprob in (entry or {}).items():
        if isinstance(token, str) and token.startswith("token_id:"):
            try:
                out[int(token.split(":", 1)[1])] = float(logprob)
            except ValueError:
                continue
    return out


@dataclass
class OpenAIEngineFactory:
    """Builds an :class:`OpenAIEngine` where it is called (a Ray actor talks to the server)."""

    config: ServerConfig
    stop_token_ids: list[int]

    def __call__(self) -> OpenAIEngine:
        return OpenAIEngine(self.config, self.stop_token_ids)
