"""A cheap text classifier in front of the reasoning model: clearly-fine items skip the GPU.

A sparse linear model over ``features`` (logistic regression), saved as plain arrays
(``prefilter.npz``, loaded with ``allow_pickle=False``: nothing in it can run code) plus
``card.json``, which says what it was trained for and how well it did. Items that score below
the card's threshold get label 0 with ``decided_by = "prefilter"``; the threshold was chosen
so that held-out recall of violations meets a target (``batch.prefilter.train``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batch.policy.files import Policy
from batch.prefilter.card import check_arrays, check_card
from batch.prefilter.features import FeatureSpec, PrefilterError, features, term_counts

CARD = "card.json"
WEIGHTS = "prefilter.npz"
FORMAT = "safeguard-prefilter/1"


@dataclass
class Prefilter:
    """A trained prefilter for one policy."""

    card: dict[str, Any]
    coef: np.ndarray
    intercept: float
    idf: list[np.ndarray]
    path: str = ""

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.card["features"])

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"])

    @property
    def policy_id(self) -> str:
        return str(self.card["policy_id"])

    @property
    def fingerprint(self) -> str:
        """Identifies the weights and threshold: part of a routed run's cache key."""
        return hashlib.sha256(
            f"{self.card['weights_sha256']}|{self.threshold!r}".encode()
        ).hexdigest()

    def scores(self, texts: list[str]) -> np.ndarray:
        """Probability of a violation, per text."""
        if not texts:
            return np.zeros(0)
        matrix = features(term_counts(texts, self.spec), self.idf)
        logits = matrix @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.asarray(logits).ravel()))


def save(prefilter: Prefilter, directory: str | Path) -> Path:
    """Write ``prefilter.npz`` (plain arrays) and ``card.json`` (with the weights' sha256)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS
    np.savez_compressed(
        weights,
        coef=prefilter.coef.astype(np.float32),
        intercept=np.array([prefilter.intercept], dtype=np.float64),
        idf_word=prefilter.idf[0].astype(np.float32),
        idf_char=prefilter.idf[1].astype(np.float32),
    )
    card = {**prefilter.card, "format": FORMAT, "weights": WEIGHTS}
    card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    prefilter.card = card
    (directory / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return directory


def load(directory: str | Path) -> Prefilter:
    """Read a prefilter; refuses anything but a valid card and plain, finite arrays of the
    right shapes whose hash matches the card (``card.check_card``, ``card.check_arrays``)."""
    directory = Path(directory)
    try:
        card = json.loads((directory / CARD).read_text())
    except (OSError, ValueError) as exc:
        raise PrefilterError(f"{directory}: no readable {CARD} ({exc})") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise PrefilterError(f"{directory}: {CARD} is not a {FORMAT} card")
    weights = check_card(card, directory)
    try:
        raw = weights.read_bytes()
    except OSError as exc:
        raise PrefilterError(f"{directory}: cannot read {weights.name}: {exc}") from exc
    if hashlib.sha256(raw).hexdigest() != card["weights_sha256"]:
        raise PrefilterError(f"{weights}: sha256 differs from the card's weights_sha256")
    try:
        with np.load(weights, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, KeyError, OSError) as exc:
        raise PrefilterError(f"{weights}: not a prefilter weights file ({exc})") from exc
    spec = FeatureSpec.from_dict(card["features"])
    coef, intercept, idf = check_arrays(arrays, spec, weights)
    return Prefilter(card, coef, intercept, idf, str(directory))


def load_for_policies(
    directories: Sequence[str], policies: Sequence[Policy], allow_mismatch: bool = False
) -> tuple[dict[str, Prefilter], list[str]]:
    """The prefilters by policy id, and the ids of those used for another policy version.

    A prefilter trained for another version of its policy is refused unless
    ``allow_mismatch``; one for a policy the run does not label, or a second one for the same
    policy, is refused always.
    """
    by_id = {p.id: p for p in policies}
    prefilters: dict[str, Prefilter] = {}
    allowed: list[str] = []
    for directory in directories:
        prefilter = load(directory)
        policy = by_id.get(prefilter.policy_id)
        if policy is None:
            raise PrefilterError(
                f"{directory}: prefilter for policy {prefilter.policy_id!r}, which this run "
                "does not label"
            )
        if prefilter.policy_id in prefilters:
            raise PrefilterError(f"two prefilters for policy {policy.id!r}")
        trained_for = prefilter.card.get("policy_sha256")
        if trained_for != policy.sha256:
            if not allow_mismatch:
                raise PrefilterError(
                    f"{directory}: prefilter was trained for {policy.id} with policy_sha256 "
                    f"{str(trained_for)[:12]}…, but {policy.path} is now {policy.sha256[:12]}…; "
                    "retrain it (safeguard-batch prefilter train) or pass "
                    "--prefilter-allow-mismatch to use it anyway"
                )
            allowed.append(policy.id)
        prefilters[policy.id] = prefilter
    return prefilters, allowed
