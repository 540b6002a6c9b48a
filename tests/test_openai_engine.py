"""--engine openai against servers on loopback that speak vLLM's contract (token ids) and the
text-only one of llama.cpp, LM Studio and Ollama's OpenAI endpoint (tests/fake_openai.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import POLICIES, write_shards
from fake_openai import FakeServer
from helpers import answering, make_config, read_output, run, well_formed

from batch.cli import cli
from batch.engine.openai_engine import OpenAIEngine
from batch.engine.openai_http import ServerConfig, ServerError
from batch.vocab import stop_token_ids


def engine(server: FakeServer, **settings) -> OpenAIEngine:
    return OpenAIEngine(ServerConfig(server.url, **settings), stop_token_ids())


def rows(output):
    return {(r["source_file"], r["source_row"], r["policy_id"]): r
            for r in read_output(output).to_pylist()}  # fmt: skip


def test_token_ids_go_to_the_server_and_the_labels_are_the_scripted_engines(tmp_path, policies):
    inputs = write_shards(tmp_path / "in", [5, 4])
    with FakeServer(well_formed) as server:
        result = run([inputs], policies, tmp_path / "out", engine(server), max_in_flight=4)
    run([inputs], policies, tmp_path / "ref", answering())
    served, scripted = rows(tmp_path / "out"), rows(tmp_path / "ref")
    assert served.keys() == scripted.keys()
    assert [served[k]["label"] for k in sorted(served)] == [
        scripted[k]["label"] for k in sorted(served)
    ]
    assert {r["status"] for r in served.values()} == {"ok"}
    # the prompt is exactly the one this job rendered: the same prompt hash
    assert {r["prompt_sha256"] for r in served.values()} == {
        r["prompt_sha256"] for r in scripted.values()
    }
    assert all(r["score"] is not None for r in served.values())
    described = result.manifest["engine"]
    assert described["mode"] == "token ids" and described["served_model"] == "tiny"
    body = server.bodies[-1]
    assert isinstance(body["prompt"], list) and body["stop_token_ids"] == [200002, 200012]
    assert body["return_token_ids"] is True and isinstance(body["seed"], int)
    assert body["temperature"] == 1.0 and body["top_p"] == 1.0 and body["max_tokens"] == 64


def test_text_servers_get_harmony_text_never_a_chat_template(tmp_path, policies):
    """The recorded contract for LM Studio and Ollama's OpenAI endpoint (and llama.cpp's
    server): a raw completions request with the rendered harmony text and the stop strings."""
    inputs = write_shards(tmp_path / "in", [3])
    with FakeServer(well_formed, mode="text", model="gpt-oss-safeguard:20b") as server:
        result = run([inputs], policies, tmp_path / "out", engine(server))
    body = server.bodies[-1]
    assert set(body) == {"model", "prompt", "stop", "max_tokens", "temperature", "top_p", "seed"}
    assert body["model"] == "gpt-oss-safeguard:20b" and body["stop"] == ["<|return|>", "<|call|>"]
    assert body["prompt"].startswith("<|start|>system<|message|>")
    assert body["prompt"].endswith("<|start|>assistant")
    assert "messages" not in body  # never the chat endpoint, never its template
    found = rows(tmp_path / "out")
    assert {r["status"] for r in found.values()} == {"ok"} and len(found) == 6
    assert all(r["score"] is None for r in found.values())  # no token-id log-probabilities
    described = result.manifest["engine"]
    assert described["mode"] == "text" and described["scores"].startswith("none")


def test_busy_answers_are_retried_and_a_request_that_keeps_failing_is_an_engine_error(
    tmp_path, policies
):
    inputs = write_shards(tmp_path / "in", [2])
    with FakeServer(well_formed, failures=2) as server:
        run([inputs], policies[:1], tmp_path / "out", engine(server, backoff=0.01))
    assert {r["status"] for r in rows(tmp_path / "out").values()} == {"ok"}
    with FakeServer(well_formed, failures=10_000) as server:
        result = run([inputs], policies[:1], tmp_path / "bad", engine(server, backoff=0.001,
                                                                        retries=2))  # fmt: skip
    assert result.manifest["counts"]["status"]["engine_error"] == 2
    errors = {r["error"] for r in rows(tmp_path / "bad").values()}
    assert errors == {'server: HTTP 503: {"error": "busy"}'}


def test_a_server_that_cannot_serve_the_job_is_one_clear_error_before_any_row(tmp_path):
    with pytest.raises(ServerError, match="cannot reach the server"):
        OpenAIEngine(ServerConfig("http://127.0.0.1:9/v1", retries=0), stop_token_ids())
    with FakeServer(well_formed) as server, pytest.raises(ServerError, match="not 'other'"):
        engine(server, served_model="other")
    inputs = write_shards(tmp_path / "in", [2])
    spam, out = str(POLICIES / "spam.md"), str(tmp_path / "out")
    args = ["label", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "--input",
            str(inputs), "--policy", spam, "--output", out]  # fmt: skip
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 2 and "cannot reach the server" in done.output
    assert not (tmp_path / "out" / "_delta_log").exists()


def test_the_api_key_comes_from_the_environment_and_is_never_written(
    tmp_path, policies, monkeypatch
):
    monkeypatch.setenv("SAFEGUARD_TEST_KEY", "s3cret-key")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # only the base URL is contacted
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    inputs = write_shards(tmp_path / "in", [2])
    with FakeServer(well_formed, key="s3cret-key") as server:
        result = run([inputs], policies[:1], tmp_path / "out",
                     engine(server, api_key_env="SAFEGUARD_TEST_KEY"))  # fmt: skip
    assert server.headers[-1]["Authorization"] == "Bearer s3cret-key"
    assert "s3cret-key" not in result.manifest_path.read_text()
    assert result.manifest["counts"]["status"]["ok"] == 2
    monkeypatch.delenv("SAFEGUARD_TEST_KEY")
    with (
        FakeServer(well_formed, key="s3cret-key") as server,
        pytest.raises(ServerError, match="not set"),
    ):
        engine(server, api_key_env="SAFEGUARD_TEST_KEY")


def test_the_fingerprint_is_the_servers_word_unless_given(tmp_path, tiny_model_dir):
    from batch.engine.fingerprint import model_fingerprint
    from batch.job.engine import prepare_engine, server_fingerprint
    from batch.job.options import EngineOptions

    def options(**extra):
        settings = dict(model=None, reasoning_effort="low", temperature=0.0, top_p=1.0,
                        max_tokens=64, tensor_parallel_size=1, gpu_memory_utilization=0.9,
                        max_model_len=None, engine_args=(), vocab_dir=None, verbose=False,
                        engine="openai")  # fmt: skip
        return EngineOptions(**{**settings, **extra})

    with FakeServer(well_formed) as server:
        _, said = prepare_engine(options(base_url=server.url))
        assert said == server_fingerprint(engine(server).server)
        _, local = prepare_engine(options(base_url=server.url, model=str(tiny_model_dir)))
        assert local == model_fingerprint(tiny_model_dir)
        _, given = prepare_engine(options(base_url=server.url, model_fingerprint="a" * 64))
        assert given == "a" * 64
    printed = CliRunner().invoke(cli, ["model", "fingerprint", str(tiny_model_dir)])
    assert printed.exit_code == 0 and printed.output.strip() == model_fingerprint(tiny_model_dir)


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A model directory as far as fingerprints go: a config and a weight file."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_oss", "hidden_size": 32}))
    (folder / "model.safetensors").write_bytes(
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"\x01" * 64
    )
    return folder


def test_requests_run_in_parallel_up_to_the_limit(tmp_path, policies):
    import threading
    import time

    live, most = [0], [0]
    lock = threading.Lock()

    def slow(request):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
        time.sleep(0.05)
        with lock:
            live[0] -= 1
        return well_formed(request)

    inputs = write_shards(tmp_path / "in", [12])
    with FakeServer(slow) as server:
        config = make_config([inputs], policies[:1], tmp_path / "out", max_in_flight=5,
                             batch_size=100, chunk_size=100)  # fmt: skip
        from batch.runners.local import run_label_job

        run_label_job(config, engine(server))
    assert 2 <= most[0] <= 5


def test_the_served_tokenizer_lists_only_ids_the_model_holds():
    """harmony names a special token past gpt-oss's 201,088 ids; a tokenizer listing it is
    refused by llama.cpp's GGUF converter (scripts/served_model.py, scripts/llama_cpp_check.py)."""
    import served_model

    from batch.vocab import load_encoding

    encoding = load_encoding()
    specials = served_model.model_specials(201088)
    ids = [encoding.encode(s, allowed_special="all")[0] for s in specials]
    assert "<|reserved_201088|>" in encoding.special_tokens_set  # what made the bug
    assert "<|reserved_201088|>" not in specials and max(ids) == 201087
    assert {"<|return|>", "<|start|>", "<|channel|>"} <= set(specials) and ids == sorted(ids)
