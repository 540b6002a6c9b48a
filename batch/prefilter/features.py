"""Prefilter features: hashed word 1-2-grams and character 2-5-grams (across word boundaries,
so "txt 80086"-style calls to action count), on lower-cased text with every digit folded to 0
(a premium-rate number is a pattern, not a vocabulary item), sublinear TF-IDF, L2-normalised
per block. Needs scikit-learn (its hashing vectorizer):
``pip install "safeguard-batch[prefilter]"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from batch.errors import UsageError

_DIGIT = re.compile(r"\d")


class PrefilterError(UsageError):
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
