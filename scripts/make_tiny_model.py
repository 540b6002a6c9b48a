#!/usr/bin/env python3
"""Build a tiny gpt-oss-architecture model directory for demos and tests.

    python scripts/make_tiny_model.py OUT_DIR            # random weights (engine tests)
    python scripts/make_tiny_model.py OUT_DIR --train    # trained to answer (demo, tests)

The model has gpt-oss's real vocabulary size (201,088) and harmony's token ids, so prompts
rendered by the job run through vLLM unchanged; everything else is shrunk until it fits in a
few megabytes and loads in seconds on a CPU. It is not gpt-oss-safeguard: it exists to drive
the pipeline end to end without downloading anything. Seeded: the same command gives the same
weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
TRAIN_POLICIES = ("spam", "harassment")

VOCAB_SIZE = 201088
EOS_TOKEN_ID = 200002  # <|return|>
PAD_TOKEN_ID = 199999  # <|endoftext|>


def tiny_config(hidden: int = 64, layers: int = 2, heads: int = 4, max_len: int = 4096):
    """Both modes share it: the random model is a little wider, the trained one a little smaller."""
    from transformers import GptOssConfig

    return GptOssConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=64,
        num_local_experts=4,
        num_experts_per_tok=2,
        layer_types=[
            "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)
        ],
        sliding_window=128,
        max_position_embeddings=max_len,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=PAD_TOKEN_ID,
        tie_word_embeddings=False,
    )


def weights_sha256(out_dir: Path) -> str:
    """sha256 over every weight file's bytes, in name order (what 'same weights' means)."""
    digest = hashlib.sha256()
    for path in sorted(out_dir.glob("*.safetensors")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_random(out_dir: Path, seed: int = 0) -> str:
    """Save a randomly initialised tiny gpt-oss in bfloat16 safetensors; return its hash."""
    import torch
    from transformers import GptOssForCausalLM

    torch.manual_seed(seed)
    model = GptOssForCausalLM(tiny_config()).to(torch.bfloat16)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    return weights_sha256(out_dir)


def build_trained(out_dir: Path, data_dir: Path, seed: int = 0, steps: int = 420) -> dict:
    """Train the tiny model on the non-held-out 80% of both data sets; return its card."""
    import torch
    from labelled_data import is_held_out, read_moderation, read_sms
    from train_tiny import build_examples, train
    from transformers import GptOssForCausalLM

    from batch.policy.files import load_policy

    torch.set_num_threads(2)
    # Same weights on every build: CPU scatter/index-put accumulation is otherwise run in
    # parallel in an order that depends on thread timing.
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    policies = {pid: load_policy(ROOT / "policies" / f"{pid}.md") for pid in TRAIN_POLICIES}
    sms = [i for i in read_sms(data_dir / "sms-spam-collection" / "SMSSpamCollection")]
    moderation = read_moderation(data_dir / "openai-moderation-2022" / "samples-1680.jsonl.gz")
    sms_train = [i for i in sms if not is_held_out(i.id, seed)]
    mod_train = [i for i in moderation if not is_held_out(i.id, seed)]
    prefixes, examples = build_examples(policies, sms_train, mod_train)
    print(
        f"training on {len(sms_train)} SMS + {len(mod_train)} moderation items "
        f"= {len(examples)} (item, policy) examples",
        flush=True,
    )
    config = tiny_config(hidden=32, layers=2, heads=2)
    model = GptOssForCausalLM(config)
    started = time.perf_counter()
    losses = train(model, prefixes, examples, steps=steps, seed=seed)
    seconds = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    return {
        "kind": "trained",
        "seed": seed,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "final_loss": round(sum(losses[-20:]) / 20, 4),
        "examples": len(examples),
        "policies": {pid: p.sha256 for pid, p in policies.items()},
        "held_out": "sha256(seed:id) < 0.2, see is_held_out in scripts/labelled_data.py",
        "weights_sha256": weights_sha256(out_dir),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", action="store_true", help="train it to answer in harmony")
    parser.add_argument("--steps", type=int, default=420)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    if args.train:
        sys.path.insert(0, str(ROOT))
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        card = build_trained(args.out_dir, args.data_dir, args.seed, args.steps)
    else:
        card = {
            "kind": "random",
            "seed": args.seed,
            "weights_sha256": build_random(args.out_dir, args.seed),
        }
    (args.out_dir / "tiny_model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.out_dir} ({card['kind']}, weights sha256 {card['weights_sha256']})")


if __name__ == "__main__":
    main()
