"""The Transformers engine on a GPU: do continuous and static batching give the same labels, and
how fast is each? For a machine that has torch and transformers but not this job's other
dependencies (a lent GPU box with no network), so the work is split in three steps:

    python scripts/transformers_gpu_check.py prepare --model DIR --rows 160 --out prompts.json
    python scripts/transformers_gpu_check.py generate --model DIR --prompts prompts.json \
        --out answers.json          # on the GPU machine: needs only torch, transformers, batch/
    python scripts/transformers_gpu_check.py compare --prompts prompts.json --answers answers.json
    python scripts/transformers_gpu_check.py --smoke          # all three on this CPU, seconds

``prepare`` renders the job's own prompts (the SMS texts x the two demo policies, the job's
seeds and score tokens) to token ids; ``generate`` runs ``TransformersEngine.stream`` on them
once per batching, greedy, and keeps each completion's tokens and score log-probabilities with
the wall time; ``compare`` parses the answers with the job's parser and prints, per batching,
the wall time, the statuses, the labels that agree with the other batching and with the SMS
gold labels (spam policy), and the score's largest difference between the two.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench import POLICY_FILES, SMS  # noqa: E402  (the SMS data and the two demo policies)


def prepare(model: str, rows: int, out: Path, sms: Path = SMS) -> dict:
    """The job's requests for the first ``rows`` distinct SMS texts, as token ids."""
    from bench import seeded_requests
    from labelled_data import read_sms

    from batch.engine.base import SamplingSettings
    from batch.flow.score import score_tokens
    from batch.policy.files import load_policies
    from batch.vocab import stop_token_ids

    gold: dict[str, int] = {}
    for item in read_sms(sms):
        gold.setdefault(item.text, item.labels["spam"])
    texts = list(gold)[:rows]
    sampling = SamplingSettings(0.0, 1.0, 128)
    policies = load_policies(POLICY_FILES)
    pairs = [(policy, text) for policy in policies for text in texts]  # policy-major, as:
    seeded = seeded_requests(policies, texts, "0" * 64, sampling)
    requests = [
        {"policy": policy.id, "output": policy.output,
         "gold": gold[text] if policy.id == "spam" else None,
         "prompt": list(request.prompt_token_ids), "seed": request.seed}
        for (policy, text), request in zip(pairs, seeded, strict=True)
    ]  # fmt: skip
    prompts = {"model": model, "max_tokens": sampling.max_tokens, "stop": stop_token_ids(),
               "score_tokens": list(score_tokens()), "requests": requests}  # fmt: skip
    out.write_text(json.dumps(prompts))
    return prompts


def generate(model: str, prompts_path: Path, out: Path, batchings: list[str], batch_size: int):
    """Each batching's completions of the prepared requests, greedy, with its wall time."""
    import torch

    from batch.engine.base import GenerationRequest, SamplingSettings
    from batch.engine.transformers_engine import TransformersConfig, TransformersEngine

    prompts = json.loads(prompts_path.read_text())
    requests = [GenerationRequest(r["prompt"], r["seed"], tuple(prompts["score_tokens"]))
                for r in prompts["requests"]]  # fmt: skip
    sampling = SamplingSettings(0.0, 1.0, prompts["max_tokens"])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    report = {"device": gpu or f"cpu: {platform.processor() or platform.machine()}",
              "torch": torch.__version__, "runs": {}}  # fmt: skip
    for batching in batchings:
        config = TransformersConfig(model, batch_size=batch_size, batching=batching)
        engine = TransformersEngine(config, prompts["stop"])
        started = time.perf_counter()
        answers: dict[int, dict] = {}
        for key, completion in engine.stream(enumerate(requests), sampling, 4 * batch_size):
            if isinstance(completion, str):  # an engine error for this request
                answers[key] = {"error": completion}
                continue
            answers[key] = {"tokens": list(completion.token_ids),
                            "finish": completion.finish_reason,
                            "scores": {str(k): v for k, v in (completion.score_logprobs or
                                                              {}).items()}}  # fmt: skip
        seconds = time.perf_counter() - started
        report["runs"][batching] = {
            "seconds": round(seconds, 3),
            "load_seconds": engine.describe()["load_seconds"],
            "device": engine.device,
            "answers": [answers[i] for i in range(len(requests))],
        }
        del engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    out.write_text(json.dumps(report))
    return report


def compare(prompts_path: Path, answers_path: Path) -> dict:
    """Labels per batching, their agreement with each other and with the gold labels."""
    from batch.engine.base import Completion
    from batch.flow.parse import parse_completion
    from batch.flow.score import verdict_score

    prompts = json.loads(prompts_path.read_text())
    report = json.loads(answers_path.read_text())
    labels, scores, summary = {}, {}, {"device": report["device"], "torch": report["torch"]}
    for batching, run in report["runs"].items():
        mine, mine_scores, statuses, gold_hits, gold_total = [], [], {}, 0, 0
        for request, answer in zip(prompts["requests"], run["answers"], strict=True):
            if "error" in answer:
                mine.append(None)
                mine_scores.append(None)
                statuses["engine_error"] = statuses.get("engine_error", 0) + 1
                continue
            logprobs = {int(k): {int(t): p for t, p in v.items()} for k, v in
                        answer["scores"].items()}  # fmt: skip
            completion = Completion(answer["tokens"], answer["finish"], 0, logprobs or None)
            verdict = parse_completion(completion.token_ids, completion.finish_reason,
                                       request["output"])  # fmt: skip
            statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
            mine.append(verdict.label)
            mine_scores.append(verdict_score(completion, request["output"]))
            if request["gold"] is not None and verdict.label is not None:
                gold_total += 1
                gold_hits += verdict.label == str(request["gold"])
        labels[batching], scores[batching] = mine, mine_scores
        summary[batching] = {
            "seconds": run["seconds"],
            "load_seconds": run["load_seconds"],
            "requests": len(mine),
            "statuses": statuses,
            "spam_gold_accuracy": round(gold_hits / max(1, gold_total), 3),
        }
    if len(labels) == 2:
        (a, la), (b, lb) = labels.items()
        agree = sum(x == y for x, y in zip(la, lb, strict=True))  # a failure on both agrees
        diffs = [abs(x - y) for x, y in zip(scores[a], scores[b], strict=True)
                 if x is not None and y is not None]  # fmt: skip
        summary["agreement"] = {
            "pair": [a, b],
            "labels_agree": agree,
            "of": len(la),
            "max_score_difference": round(max(diffs, default=0.0), 4),
        }
    return summary


def print_summary(summary: dict) -> None:
    print(f"\n{summary['device']}, torch {summary['torch']}; greedy\n")
    print("| batching | wall s | load s | requests | statuses | spam gold accuracy |")
    print("|---|---:|---:|---:|---|---:|")
    for name in ("continuous", "static"):
        if name in summary:
            run = summary[name]
            print(
                f"| {name} | {run['seconds']:.1f} | {run['load_seconds']:.1f} | "
                f"{run['requests']} | {run['statuses']} | {run['spam_gold_accuracy']:.3f} |"
            )
    if "agreement" in summary:
        agree = summary["agreement"]
        print(
            f"\nlabels that agree: {agree['labels_agree']} of {agree['of']}; largest score "
            f"difference {agree['max_score_difference']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", nargs="?", choices=["prepare", "generate", "compare"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--prompts", type=Path, default=None)
    parser.add_argument("--answers", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--batching", nargs="+", default=["continuous", "static"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--json", type=Path, default=None, help="compare, --smoke: write the summary"
    )
    parser.add_argument("--smoke", action="store_true", help="all steps on this CPU, tiny sizes")
    args = parser.parse_args(argv)
    if args.smoke:
        return smoke(args.model, args.json)
    if args.step == "prepare":
        prepare(args.model, args.rows, args.out)
    elif args.step == "generate":
        generate(args.model, args.prompts, args.out, args.batching, args.batch_size)
    elif args.step == "compare":
        summary = compare(args.prompts, args.answers)
        print_summary(summary)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
    else:
        parser.error("give a step (prepare, generate, compare) or --smoke")
    return 0


def smoke(model: str | None, out: Path | None) -> int:
    """Every step on this CPU with two rows x two policies and both batchings (seconds)."""
    if model is None:
        raise SystemExit("--smoke needs --model (the tiny model the tests make)")
    with tempfile.TemporaryDirectory() as tmp:
        prompts, answers = Path(tmp) / "prompts.json", Path(tmp) / "answers.json"
        prepare(model, 2, prompts)
        generate(model, prompts, answers, ["continuous", "static"], 4)
        summary = compare(prompts, answers)
    print_summary(summary)
    if out:
        out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
