"""A cheap text classifier in front of the reasoning model: clearly-fine items skip the GPU.

The model is a sparse linear one: hashed word 1-2-grams and character 2-5-grams (across word
boundaries, so "txt 80086"-style calls to action count), on lower-cased text with every digit
folded to 0 (a premium-rate number is a pattern, not a vocabulary item), sublinear TF-IDF,
L2-normalised per block, logistic regression. It is saved as
plain arrays (``prefilter.npz``, loaded with ``allow_pickle=False``: nothing in it can run
code) plus ``card.json``, which says what it was trained for and how well it did. Items that
score below the card's threshold get label 0 with ``decided_by = "prefilter"``; the threshold
was chosen so that held-out recall of violations meets a target (``batch.prefilter_train``).

Scoring needs scikit-learn (its hashing vectorizer): ``pip install "safeguard-batch[prefilter]"``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CARD = "card.json"
WEIGHTS = "prefilter.npz"
FORMAT = "safeguard-prefilter/1"
_DIGIT = re.compile(r"\d")


class PrefilterError(ValueError):
    """A prefilter that cannot be used; the message says why."""


@dataclass(frozen=True)
class FeatureSpec:
    """How text becomes features; stored in the card so scoring matches training."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    n_features: int = 1 << 19
    char_analyzer: str = "char"  # "char_wb" keeps character n-grams inside words
    fold_digits: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "word_ngrams": list(self.word_ngrams),
            "char_ngrams": list(self.char_ngrams),
            "n_features": self.n_features,
            "char_analyzer": self.char_analyzer,
            "fold_digits": self.fold_digits,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            tuple(data["word_ngrams"]),
            tuple(data["char_ngrams"]),
            int(data["n_features"]),
            str(data["char_analyzer"]),
            bool(data["fold_digits"]),
        )


def _lower(text: str) -> str:
    return text.lower()


def _lower_fold_digits(text: str) -> str:
    return _DIGIT.sub("0", text.lower())


def _vectorizers(spec: FeatureSpec):
    try:
        from sklearn.feature_extraction.text import HashingVectorizer
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise PrefilterError(
            "the prefilter needs scikit-learn: pip install 'safeguard-batch[prefilter]'"
        ) from exc
    common = dict(
        n_features=spec.n_features,
        alternate_sign=False,
        norm=None,
        preprocessor=_lower_fold_digits if spec.fold_digits else _lower,
    )
    word = HashingVectorizer(analyzer="word", ngram_range=spec.word_ngrams, **common)
    char = HashingVectorizer(analyzer=spec.char_analyzer, ngram_range=spec.char_ngrams, **common)
    return word, char


def term_counts(texts: list[str], spec: FeatureSpec) -> list:
    """Raw hashed counts per block (word, char), as CSR matrices."""
    return [v.transform(texts) for v in _vectorizers(spec)]


def document_frequencies(counts: list) -> list[np.ndarray]:
    return [np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64) for m in counts]


def idf_from(df: list[np.ndarray], rows: int) -> list[np.ndarray]:
    """Smoothed idf, as scikit-learn's TfidfTransformer computes it."""
    return [np.log((1.0 + rows) / (1.0 + d)) + 1.0 for d in df]


def features(counts: list, idf: list[np.ndarray]):
    """Sublinear TF x IDF, L2-normalised per block, blocks side by side."""
    from scipy import sparse
    from sklearn.preprocessing import normalize

    blocks = []
    for matrix, weights in zip(counts, idf, strict=True):
        m = matrix.astype(np.float64).tocsr(copy=True)
        m.data = 1.0 + np.log(m.data)
        m = m.multiply(weights.reshape(1, -1)).tocsr()
        blocks.append(normalize(m, norm="l2", copy=False))
    return sparse.hstack(blocks, format="csr")


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
    """Read a prefilter; refuses anything but plain arrays whose hash matches the card."""
    directory = Path(directory)
    try:
        card = json.loads((directory / CARD).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PrefilterError(f"{directory}: no readable {CARD} ({exc})") from exc
    if card.get("format") != FORMAT:
        raise PrefilterError(f"{directory}: {CARD} is not a {FORMAT} card")
    weights = directory / card.get("weights", WEIGHTS)
    try:
        raw = weights.read_bytes()
    except OSError as exc:
        raise PrefilterError(f"{directory}: cannot read {weights.name}: {exc}") from exc
    if hashlib.sha256(raw).hexdigest() != card.get("weights_sha256"):
        raise PrefilterError(f"{weights}: sha256 differs from the card's weights_sha256")
    try:
        with np.load(weights, allow_pickle=False) as arrays:
            coef = arrays["coef"].astype(np.float64)
            intercept = float(arrays["intercept"][0])
            idf = [arrays["idf_word"].astype(np.float64), arrays["idf_char"].astype(np.float64)]
    except (ValueError, KeyError, OSError) as exc:
        raise PrefilterError(f"{weights}: not a prefilter weights file ({exc})") from exc
    return Prefilter(card, coef, intercept, idf, str(directory))
