"""What an OpenAI-compatible server can do, found out before any row is labelled: which model
it serves, whether it takes token ids, whether it returns log-probabilities; and the request
and answer shapes of each mode.

Probed with one tiny request each way. A server that cannot be reached, serves another model,
or refuses both ways is one clear message (exit 2), never a run of ``engine_error`` rows.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from typing import Any

from batch.engine.openai_http import TEXT, TOKEN_IDS, HttpClient, ServerError, error_text

STOP_TEXTS = ("<|return|>", "<|call|>")
_PROBE = "<|start|>user<|message|>Answer 0.<|end|><|start|>assistant"


@dataclass(frozen=True)
class Found:
    model: str
    mode: str
    scores: bool
    server: dict[str, Any]


def _models(client: HttpClient) -> list[dict[str, Any]]:
    try:
        listed = client.call("/models")
    except Exception as exc:  # noqa: BLE001 - whatever it is, the run cannot start
        raise ServerError(f"{client.base}: cannot reach the server ({error_text(exc)})") from exc
    models = listed.get("data") if isinstance(listed, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise ServerError(f"{client.base}/models: not an OpenAI model list ({str(listed)[:200]})")
    return models


def _chosen(models: list[dict[str, Any]], wanted: str | None, base: str) -> dict[str, Any]:
    ids = [str(m.get("id")) for m in models]
    if wanted is not None:
        for model in models:
            if model.get("id") == wanted:
                return model
        raise ServerError(f"{base} serves {', '.join(ids) or 'no model'}, not {wanted!r}")
    if len(models) != 1:
        raise ServerError(
            f"{base} serves {', '.join(ids) or 'no model'}: name one with --served-model"
        )
    return models[0]


def _version(client: HttpClient) -> str | None:
    """The server's version where it says (vLLM: ``/version`` beside ``/v1``)."""
    root = client.base[: -len("/v1")] if client.base.endswith("/v1") else client.base
    try:
        answer = client.at(root).call("/version")
    except Exception:  # noqa: BLE001 - not every server has one
        return None
    return str(answer.get("version")) if isinstance(answer, dict) else None


def describe_server(client: HttpClient, wanted: str | None) -> dict[str, Any]:
    """What the server says of the model it serves (id, root, owner, limit, its version);
    a clear error if it cannot be reached or does not serve ``wanted``."""
    model = _chosen(_models(client), wanted, client.base)
    return {"model": str(model["id"]), "root": model.get("root"),
            "owned_by": model.get("owned_by"), "max_model_len": model.get("max_model_len"),
            "version": _version(client)}  # fmt: skip


def probe_server(client: HttpClient, wanted: str | None, stop_token_ids: list[int]) -> Found:
    """The served model, the mode it takes prompts in, and whether scores come back."""
    from batch.vocab import load_encoding

    server = describe_server(client, wanted)
    name = server["model"]
    ids = load_encoding().encode(_PROBE, allowed_special="all")
    attempts = []
    for mode in (TOKEN_IDS, TEXT):
        body = {"model": name, "max_tokens": 1, "temperature": 0, "logprobs": 1,
                **prompt_body(mode, ids, stop_token_ids)}  # fmt: skip
        if mode == TOKEN_IDS:
            body["return_tokens_as_token_ids"] = True
        try:
            choice = client.call("/completions", body)["choices"][0]
        except (urllib.error.HTTPError, KeyError, IndexError, TypeError) as exc:
            attempts.append(f"{mode}: {error_text(exc)}")
            continue
        except Exception as exc:  # noqa: BLE001 - the server went away mid-probe
            raise ServerError(f"{client.base}: probe failed ({error_text(exc)})") from exc
        if mode == TOKEN_IDS and not isinstance(choice.get("token_ids"), list):
            attempts.append(f"{mode}: the answer has no token_ids")
            continue
        top = (choice.get("logprobs") or {}).get("top_logprobs") or []
        scores = mode == TOKEN_IDS and any(
            isinstance(k, str) and k.startswith("token_id:") for entry in top for k in entry or {}
        )
        return Found(name, mode, scores, server)
    raise ServerError(f"{client.base} refuses completions for {name}: " + "; ".join(attempts))


def prompt_body(mode: str, prompt: Any, stop_token_ids: list[int]) -> dict[str, Any]:
    """The prompt and stop fields of a request in ``mode``."""
    if mode == TOKEN_IDS:
        return {"prompt": [int(t) for t in prompt], "return_token_ids": True,
                "stop_token_ids": list(stop_token_ids), "skip_special_tokens": False}  # fmt: skip
    from batch.vocab import load_encoding

    return {"prompt": load_encoding().decode(list(prompt)), "stop": list(STOP_TEXTS)}


def answer_tokens(mode: str, choice: dict[str, Any]) -> list[int]:
    """An answer's token ids: as the server gave them, or its text encoded with harmony (the
    stop string it ended on, which servers leave out, put back)."""
    if mode == TOKEN_IDS:
        return [int(t) for t in choice["token_ids"]]
    from batch.vocab import load_encoding

    encoding = load_encoding()
    text = str(choice.get("text") or "")
    tokens = list(encoding.encode(text, allowed_special="all"))
    reason = choice.get("stop_reason")
    if choice.get("finish_reason") == "stop" and not text.endswith(STOP_TEXTS):
        stop = reason if reason in STOP_TEXTS else STOP_TEXTS[0]
        tokens += encoding.encode(stop, allowed_special="all")
    return tokens
