"""JSON over HTTP to an OpenAI-compatible server: one base URL, no proxy from the environment,
an API key from the environment; errors said in one line, and which of them to retry."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from batch.errors import UsageError

TOKEN_IDS, TEXT = "token ids", "text"  # how prompts and answers travel (``mode``)
RETRYABLE_STATUS = (408, 409, 425, 429, 500, 502, 503, 504)


class ServerError(UsageError):
    """The server cannot do this job: unreachable, another model, refuses the options."""


@dataclass
class ServerConfig:
    """Where the server is and how to talk to it; recorded in the manifest (never the key)."""

    base_url: str
    served_model: str | None = None
    api_key_env: str | None = None
    timeout: float = 600.0  # seconds for one request: a long answer on a busy server
    retries: int = 8  # per request, for connection errors, timeouts, 429 and 5xx...
    retry_seconds: float = 120.0  # ...for at most this long: a server down longer fails fast
    backoff: float = 0.5  # seconds before the first retry, doubling (at most 10), with jitter
    extra: dict[str, Any] = field(default_factory=dict)  # more fields for every request body


class HttpClient:
    """JSON over HTTP to one base URL, with no proxy, the key as a bearer token."""

    def __init__(self, config: ServerConfig, base: str | None = None) -> None:
        self.config = config
        self.base = (base or config.base_url).rstrip("/")
        self.timeout = config.timeout
        self.key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if config.api_key_env and not self.key:
            raise ServerError(f"--api-key-env {config.api_key_env}: that variable is not set")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def at(self, base: str) -> HttpClient:
        """The same client for another base URL of the same server."""
        return HttpClient(self.config, base)

    def call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """GET (no body) or POST JSON; the decoded answer, or an ``urllib`` error."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        with self.opener.open(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode("utf-8"))


def error_text(exc: BaseException) -> str:
    """What the server said, or why it could not be reached, in one line."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            detail = exc.read().decode("utf-8", errors="replace")[:300]
        except Exception:  # noqa: BLE001 - the status alone will do
            detail = ""
        return f"HTTP {exc.code}: {detail or exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    return f"{type(exc).__name__}: {reason}"


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRYABLE_STATUS
    return isinstance(exc, urllib.error.URLError | TimeoutError | ConnectionError | OSError)
