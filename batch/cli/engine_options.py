"""The options that say which model runs where, and how it generates: the same for label,
relabel and policy test."""

from __future__ import annotations

import click

from batch.cli.options import INT32_MAX, Finite

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
    click.option("--model", required=True, help="Local model directory (no hub downloads)."),
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
        help="Any other vllm.LLM argument (VALUE parsed as JSON if it can be); repeatable.",
    ),
    VOCAB_OPTION,
    click.option("-v", "--verbose", is_flag=True, help="Show vLLM's own log messages."),
]
