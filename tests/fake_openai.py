"""An OpenAI-compatible server on loopback for the unit tests, speaking one of two contracts:

- ``token ids`` (vLLM, SGLang): ``prompt`` is a list of token ids, answers carry ``token_ids``
  and, asked for, top log-probabilities keyed ``token_id:N``;
- ``text`` (llama.cpp's server, LM Studio, Ollama's OpenAI endpoint): a token-id prompt is
  refused (400); the prompt is text, the answer is text without the stop string it ended on,
  and no log-probabilities by token id.

It answers like the scripted engine (real harmony tokens) and records every request body, so
tests can hold the requests the client sends against the contract.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from batch.engine.base import GenerationRequest
from batch.engine.scripted import harmony_completion


class FakeServer:
    def __init__(self, respond, mode="token ids", model="tiny", failures=0, key=None) -> None:
        self.respond, self.mode, self.model, self.key = respond, mode, model, key
        self.failures = failures  # the first N completions answer 503
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.endswith("/v1/models"):
                    server._send(self, 200, {"object": "list", "data": [{
                        "id": server.model, "root": f"/models/{server.model}",
                        "owned_by": "fake", "max_model_len": 4096}]})  # fmt: skip
                elif self.path == "/version":
                    server._send(self, 200, {"version": "fake-1"})
                else:
                    server._send(self, 404, {"error": "no such path"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    failing = server.failures > 0 and body.get("max_tokens", 0) > 1
                    server.failures -= failing
                if server.key and self.headers.get("Authorization") != f"Bearer {server.key}":
                    return server._send(self, 401, {"error": "bad key"})
                if failing:
                    return server._send(self, 503, {"error": "busy"})
                server._send(self, *server.complete(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, handler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def complete(self, body: dict) -> tuple[int, dict]:
        from batch.vocab import load_encoding

        encoding = load_encoding()
        prompt = body.get("prompt")
        if self.mode == "text" and not isinstance(prompt, str):
            return 400, {"error": {"message": "prompt must be a string"}}
        ids = prompt if isinstance(prompt, list) else encoding.encode(prompt, allowed_special="all")
        request = GenerationRequest(ids, body.get("seed") or 0)
        tokens = list(harmony_completion(self.respond(request)).token_ids)[: body["max_tokens"]]
        choice = {"index": 0, "finish_reason": "stop", "text": encoding.decode(tokens)}
        if self.mode == "token ids":
            choice["token_ids"] = tokens
            if body.get("logprobs"):
                top = [{"token_id:15": -2.5, "token_id:16": -2.5, f"token_id:{t}": -0.1}
                       for t in tokens]  # fmt: skip
                choice["logprobs"] = {"top_logprobs": top}
        else:  # the stop string is left out of the text, as OpenAI's servers do
            choice["text"] = encoding.decode(tokens[:-1])
            choice["stop_reason"] = "<|return|>"
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(tokens)}
        return 200, {"object": "text_completion", "model": self.model, "choices": [choice],
                     "usage": usage}  # fmt: skip
