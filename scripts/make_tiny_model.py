#!/usr/bin/env python3
"""Build a tiny gpt-oss-architecture model directory for demos and tests.

    python scripts/make_tiny_model.py OUT_DIR            # random weights (engine tests)

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
from pathlib import Path

VOCAB_SIZE = 201088
EOS_TOKEN_ID = 200002  # <|return|>
PAD_TOKEN_ID = 199999  # <|endoftext|>


def tiny_config(hidden: int = 64, layers: int = 2, heads: int = 4, max_len: int = 4096):
    """A GptOssConfig with the facts DESIGN.md records (head_dim 32 for vLLM's CPU attention)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digest = build_random(args.out_dir, args.seed)
    (args.out_dir / "tiny_model.json").write_text(
        json.dumps({"kind": "random", "seed": args.seed, "weights_sha256": digest}, indent=2)
    )
    print(f"wrote {args.out_dir} (weights sha256 {digest})")


if __name__ == "__main__":
    main()
