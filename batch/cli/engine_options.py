"""The options that say which model runs where, and how it generates: the same for label,
relabel and policy test."""

from __future__ import annotations

import click

from batch.cli.options import INT32_MAX, Finite

ENGINES = ("vllm", "openai", "transformers")

VOCAB_OPTION = click.option(
    "--vocab-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding o200k_base.tiktoken (else $TIKTOKEN_ENCODINGS_BASE).",
)
EFFORT_OPTION = click.option(
    "--reasoning-effort",
    type=click.Choice(["low", "medium", "high"]),
    default="low",
    show_default=True,
    help="Harmony system reasoning effort; low is fastest (the prompt hash depends on it).",
)


# Model, generation and engine options: the same for label, relabel and policy test.
ENGINE_OPTIONS = [
    click.option(
        "--engine",
        type=click.Choice(ENGINES),
        default="vllm",
        show_default=True,
        help="vllm: offline vLLM in this process; openai: an OpenAI-compatible server "
        "(vllm serve, SGLang, llama.cpp, LM Studio, Ollama) at --base-url; transformers: "
        "Hugging Face Transformers in this process.",
    ),
    click.option(
        "--model",
        default=None,
        help="Local model directory (no hub downloads); required but for --engine openai, "
        "where it is a local copy of the served weights to fingerprint.",
    ),
    click.option("--base-url", default=None, help="--engine openai: e.g. http://127.0.0.1:8000/v1"),
    click.option(
        "--served-model",
        default=None,
        help="--engine openai: the model name the server serves (default: its only one).",
    ),
    click.option(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="--engine openai: the environment variable that holds the API key (never the key).",
    ),
    click.option(
        "--retry-seconds",
        type=Finite(0.0, 86400.0),
        default=120.0,
        show_default=True,
        help="--engine openai: how long one request retries connection errors, timeouts, 429 "
        "and 5xx before it becomes an engine_error row (a server down longer fails fast).",
    ),
    click.option(
        "--model-fingerprint",
        default=None,
        metavar="SHA",
        help="--engine openai: the weights' fingerprint, from 'safeguard-batch model fingerprint "
        "DIR' where the weights are (default: what the server reports of itself).",
    ),
    EFFORT_OPTION,
    click.option("--temperature", type=Finite(0.0, 100.0), default=1.0, show_default=True),
    click.option("--top-p", type=Finite(0.0, 1.0, min_open=True), default=1.0, show_default=True),
    click.option(
        "--max-tokens",
        type=click.IntRange(1, INT32_MAX),
        default=1024,
        show_default=True,
        help="Completion budget; a truncated analysis never reaches a verdict.",
    ),
    click.option("--tensor-parallel-size", type=click.IntRange(1), default=1, show_default=True),
    click.option(
        "--gpu-memory-utilization",
        type=Finite(0.05, 1.0),
        default=0.90,
        show_default=True,
    ),
    click.option(
        "--max-model-len",
        type=click.IntRange(1, INT32_MAX),
        default=None,
        help="Context length; longer prompts get status too_long. Default: the model's.",
    ),
    click.option(
        "--engine-arg",
        "engine_args",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any other vllm.LLM argument (VALUE parsed as JSON if it can be); repeatable. "
        "With --engine transformers: from_pretrained arguments, and batching=continuous|static "
        "(default: static, faster wherever it was measured: docs/engines.md).",
    ),
    VOCAB_OPTION,
    click.option("-v", "--verbose", is_flag=True, help="Show vLLM's own log messages."),
]
