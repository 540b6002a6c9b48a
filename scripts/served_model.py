"""A model directory a server can load: the weights of MODEL_DIR and tokenizer files built from
the shared o200k vocabulary and harmony's special tokens (real gpt-oss weights ship theirs).

    python scripts/served_model.py MODEL_DIR OUT_DIR

``vllm serve`` needs a tokenizer even when prompts come as token ids (it detokenizes answers
and refuses every completion with ``--skip-tokenizer-init``). The tokenizer is checked against
harmony before it is written: the same ids for plain and special-token text. It lists only the
special tokens the model's vocabulary holds: harmony names one past gpt-oss's 201,088 ids
(``<|reserved_201088|>``), which llama.cpp's GGUF converter rightly refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHECKS = ["hello world, see you at 8pm!", "<|start|>user<|message|>free prize<|end|>",
          "ünïcödé 漢字 😀 and\nnew lines\t"]  # fmt: skip


def o200k_pattern() -> str:
    """tiktoken's own o200k pre-tokenizer pattern, without downloading its vocabulary."""
    import tiktoken_ext.openai_public as public

    loader = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda *args, **kwargs: {}
    try:
        return public.o200k_base()["pat_str"]
    finally:
        public.load_tiktoken_bpe = loader


def model_specials(vocab_size: int) -> list[str]:
    """harmony's special tokens that fit the model's vocabulary, in id order."""
    from batch.vocab import load_encoding

    encoding = load_encoding()
    ids = {s: encoding.encode(s, allowed_special="all")[0] for s in encoding.special_tokens_set}
    return sorted((s for s, i in ids.items() if i < vocab_size), key=ids.__getitem__)


def build_tokenizer(out: Path, vocab_size: int) -> None:
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from batch.vocab import check_vocab, load_encoding

    encoding = load_encoding()
    specials = model_specials(vocab_size)
    converted = TikTokenConverter(vocab_file=str(check_vocab()), pattern=o200k_pattern(),
                                  extra_special_tokens=specials).converted()  # fmt: skip
    tokens = {"eos_token": "<|return|>", "pad_token": "<|endoftext|>"}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=converted, **tokens)
    for text in CHECKS:
        ours = tokenizer.encode(text, add_special_tokens=False)
        theirs = encoding.encode(text, allowed_special="all")
        if ours != theirs:
            raise SystemExit(f"tokenizer differs from harmony on {text!r}: {ours} != {theirs}")
    tokenizer.save_pretrained(out)


def main(argv: list[str] | None = None) -> None:
    model, out = (Path(p) for p in (argv or sys.argv[1:]))
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    out.mkdir(parents=True, exist_ok=True)
    for path in model.iterdir():
        if path.is_file():
            shutil.copy2(path, out / path.name)
    config = json.loads((model / "config.json").read_text())
    build_tokenizer(out, int(config["vocab_size"]))
    (out / "served_model.json").write_text(json.dumps({"weights_from": str(model)}) + "\n")


if __name__ == "__main__":
    main()
