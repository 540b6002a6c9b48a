"""``model fingerprint``: the hash a run records for a model, computed where the weights are."""

from __future__ import annotations

import click

from batch.cli.base import cli


@cli.group()
def model() -> None:
    """Tools for model directories."""


@model.command("fingerprint")
@click.argument("model_dir", type=click.Path())
def fingerprint(model_dir: str) -> None:
    """Print the fingerprint of a local model directory: the same sha256 a run with --model
    DIR records, so a server's weights can be named with --model-fingerprint."""
    from batch.engine.fingerprint import model_fingerprint

    click.echo(model_fingerprint(model_dir))
