"""The job against a real llama.cpp server (llama-cpp-python's), on this CPU: the same rows
labelled through ``--engine openai`` and offline vLLM, greedy, and how many labels agree.

    python scripts/llama_cpp_check.py [--rows 160] [--json PATH] [--work DIR]

llama-cpp-python ships no wheel for this machine, so the first run builds one from its source
release on PyPI (8.5 minutes on 2 AVX2 cores; kept in ``.cache/llama-cpp/``, later runs
reuse it) and installs it, with its server's own dependencies, beside the project's venv (never
into it). The tiny trained model becomes a GGUF file with the converter vendored in that
release (``convert_hf_to_gguf.py``), from the served model directory
(``scripts/served_model.py``: real gpt-oss weights ship their own tokenizer). The server takes
prompts as text only, so the job sends the rendered harmony text on the raw completions
endpoint (``mode: text`` in the manifest) and scores are null. Too long to build in CI: this
script is how the llama.cpp recipe in docs/engines.md was checked.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

VERSION = "0.3.36"
CACHE = ROOT / ".cache" / "llama-cpp"
BUILD_FLAGS = "-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
SERVER_DEPS = ("starlette-context", "diskcache")  # the rest of its [server] extra vLLM has
GREEDY = ["--temperature", "0", "--max-model-len", "2048", "--max-tokens", "96"]


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def llama_cpp(cache: Path) -> tuple[Path, Path]:
    """The installed package folder and the unpacked source (for its GGUF converter)."""
    packages, source = cache / "pkgs", cache / f"llama_cpp_python-{VERSION}"
    if not (source / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py").is_file():
        pip("download", f"llama-cpp-python=={VERSION}", "--no-deps", "--no-binary", ":all:",
            "-d", str(cache))  # fmt: skip
        with tarfile.open(cache / f"llama_cpp_python-{VERSION}.tar.gz") as archive:
            archive.extractall(cache, filter="data")
    if not (packages / "llama_cpp" / "server").is_dir():
        wheels = cache / "wheels"
        if not list(wheels.glob(f"llama_cpp_python-{VERSION}-*.whl")):
            print(f"building llama-cpp-python {VERSION} (8.5 minutes on 2 AVX2 cores)", flush=True)
            env = {**os.environ, "CMAKE_ARGS": BUILD_FLAGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
            pip("wheel", "--no-deps", "-w", str(wheels), str(source), env=env)
        (wheel,) = wheels.glob(f"llama_cpp_python-{VERSION}-*.whl")
        pip("install", "-q", "--no-deps", "--target", str(packages), str(wheel), *SERVER_DEPS)
    return packages, source


def gguf_model(served: Path, source: Path, out: Path) -> Path:
    """The served model directory as one GGUF file (f32: the tiny model is 52 MB)."""
    if not out.is_file():
        converter = source / "vendor" / "llama.cpp"
        env = {**os.environ, "PYTHONPATH": str(converter / "gguf-py")}
        subprocess.run([sys.executable, str(converter / "convert_hf_to_gguf.py"), str(served),
                        "--outfile", str(out), "--outtype", "f32"],
                       check=True, env=env, capture_output=True)  # fmt: skip
    return out


def start_server(packages: Path, model: Path, port: int, log: Path) -> subprocess.Popen:
    """llama.cpp's server on loopback, its (verbose) log to a file, in its own process group."""
    env = {**os.environ, "PYTHONPATH": str(packages)}
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
               "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--model_alias", "tiny",
               "--n_threads", str(os.cpu_count() or 1)]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llama.cpp's server exited:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
            return process
        except OSError:
            time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit(f"llama.cpp's server did not come up in 120 s (its log: {log})")


def label(*args: str) -> float:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "batch.cli", "label", *args, *GREEDY], check=True,
                   env=env, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def trained_model() -> Path:
    """The tests' and the demo's trained tiny model, as they left it in ``.cache``."""
    found = sorted((ROOT / ".cache").glob("tiny-trained-*/tiny_model.json"),
                   key=lambda p: p.stat().st_mtime)  # fmt: skip
    if not found:
        raise SystemExit("no trained tiny model in .cache: run the demo or the tests first, "
                         "or pass --model DIR")  # fmt: skip
    return found[-1].parent


def labels(output: Path) -> dict[tuple[str, int], tuple[str | None, str]]:
    from batch.output.table import LabelTable

    rows = LabelTable(output).scan().select("source_file", "source_row", "label", "status")
    return {(f, r): (lab, status) for f, r, lab, status in rows.collect().iter_rows()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--work", type=Path, default=CACHE / "work")
    parser.add_argument("--port", type=int, default=18555)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="the tiny trained model; default: the newest in .cache (the tests')",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    trained = args.model or trained_model()
    served = ROOT / ".cache" / f"served-{trained.name}"
    if not (served / "served_model.json").is_file():
        subprocess.run([sys.executable, str(HERE / "served_model.py"), str(trained),
                        str(served)], check=True)  # fmt: skip
    CACHE.mkdir(parents=True, exist_ok=True)
    packages, source = llama_cpp(CACHE)
    model = gguf_model(served, source, CACHE / f"{served.name}.gguf")
    work = args.work
    subprocess.run(["rm", "-rf", str(work)], check=True)
    data = work / "in"
    subprocess.run([sys.executable, str(HERE / "sms_to_parquet.py"), str(data), "--split",
                    "heldout", "--shards", "2", "--limit", str(args.rows)],
                   check=True, capture_output=True)  # fmt: skip
    policy = str(ROOT / "policies" / "spam.md")
    offline = label("--input", str(data), "--policy", policy, "--model", str(trained),
                    "--output", str(work / "vllm"))  # fmt: skip
    server = start_server(packages, model, args.port, work / "server.log")
    try:
        remote = label("--engine", "openai", "--base-url", f"http://127.0.0.1:{args.port}/v1",
                       "--served-model", "tiny", "--input", str(data), "--policy", policy,
                       "--output", str(work / "llama"))  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    ours, theirs = labels(work / "llama"), labels(work / "vllm")
    (manifest,) = (work / "llama" / "_runs").glob("*.json")
    engine = json.loads(manifest.read_text())["engine"]
    report = {
        "rows": args.rows,
        "same_keys": ours.keys() == theirs.keys(),
        "agree": sum(ours.get(k) == v for k, v in theirs.items()),
        "of": len(theirs),
        "mode": engine["mode"],
        "scores": engine["scores"],
        "llama_cpp_seconds": round(remote, 1),
        "offline_vllm_seconds": round(offline, 1),
        "llama_cpp_python": VERSION,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["same_keys"] and report["agree"] >= 0.9 * report["of"] else 1


if __name__ == "__main__":
    sys.exit(main())
