"""``prefilter train``: a cheap classifier in front of the model."""

from __future__ import annotations

import click

from batch.cli.base import cli
from batch.cli.options import Finite


@cli.group("prefilter")
def prefilter_group() -> None:
    """A cheap classifier in front of the model, trained from labels, with a recall target."""


@prefilter_group.command("train")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--labels",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="An output folder: train on the model's own ok labels for this policy version.",
)
@click.option(
    "--gold",
    type=click.Path(exists=True),
    default=None,
    help="Or a gold-labelled Parquet file/folder (with --label-column), to bootstrap.",
)
@click.option("--label-column", default=None, help="The 0/1 column of --gold.")
@click.option("--text-column", default="text", show_default=True)
@click.option(
    "--recall",
    type=Finite(0.5, 1.0),
    default=0.99,
    show_default=True,
    help="Recall of violations to keep on held-out data.",
)
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output", required=True, type=click.Path(file_okay=False))
def prefilter_train(
    policy_path: str,
    labels: str | None,
    gold: str | None,
    label_column: str | None,
    text_column: str,
    recall: float,
    folds: int,
    seed: int,
    output: str,
) -> None:
    """Train a prefilter for one policy and choose the threshold that keeps --recall."""
    from batch.job.prefilter_train import TrainingSource, train_and_save

    source = TrainingSource(labels, gold, label_column, text_column)
    policy, model = train_and_save(policy_path, source, recall, folds, seed, output)
    card = model.card
    click.echo(
        f"{policy.id}: trained on {card['training_rows']} rows "
        f"({card['training_positives']} violating); threshold {card['threshold']:.4f} keeps "
        f"held-out recall {card['heldout_recall']:.3f} (target {recall}) and escalates "
        f"{card['escalation_fraction']:.1%} of traffic to the model; written to {output}"
    )
