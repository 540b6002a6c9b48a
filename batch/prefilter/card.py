"""A prefilter's card and arrays, checked before anything in them is trusted.

A card names the policy it was trained for, the features, the threshold and a weights file;
every field the scorer reads is checked for type and range, the weights must be a plain file
beside the card (no path elsewhere, no device), and every array must have the shape the
features imply and hold only finite numbers. A failure is one :class:`PrefilterError` that
names the problem.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from batch.prefilter.features import FeatureSpec, PrefilterError

MAX_WEIGHTS_BYTES = 1 << 30
CHAR_ANALYZERS = ("char", "char_wb")


def _ngrams(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in value)
        and 1 <= value[0] <= value[1] <= 10
    )


def _feature_problems(features: Any) -> list[str]:
    if not isinstance(features, dict):
        return ["'features' must be a table"]
    problems = []
    for key in ("word_ngrams", "char_ngrams"):
        if not _ngrams(features.get(key)):
            problems.append(f"features.{key} must be [low, high] with 1 <= low <= high <= 10")
    size = features.get("n_features")
    if not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 1 << 24):
        problems.append("features.n_features must be an integer from 1 to 2^24")
    if features.get("char_analyzer") not in CHAR_ANALYZERS:
        problems.append(f"features.char_analyzer must be one of {', '.join(CHAR_ANALYZERS)}")
    if not isinstance(features.get("fold_digits"), bool):
        problems.append("features.fold_digits must be true or false")
    return problems


def check_card(card: Any, directory: Path) -> Path:
    """The weights file a valid card names; raises :class:`PrefilterError` otherwise."""
    if not isinstance(card, dict):
        raise PrefilterError(f"{directory}: card.json must hold a JSON object")
    problems = []
    if not isinstance(card.get("policy_id"), str) or not card["policy_id"]:
        problems.append("'policy_id' must be a policy id")
    threshold = card.get("threshold")
    if not (isinstance(threshold, int | float) and not isinstance(threshold, bool)) or not (
        math.isfinite(threshold) and 0.0 <= threshold <= 1.0
    ):
        problems.append(f"'threshold' must be a number from 0 to 1, not {threshold!r}")
    if not isinstance(card.get("weights_sha256"), str):
        problems.append("'weights_sha256' must be the weights file's sha256")
    problems += _feature_problems(card.get("features"))
    name = card.get("weights")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        problems.append(f"'weights' must name a file beside the card, not {name!r}")
    if problems:
        raise PrefilterError(f"{directory}/card.json: " + "; ".join(problems))
    weights = directory / name
    if not weights.is_file() or weights.is_symlink():
        raise PrefilterError(f"{weights}: the weights must be a plain file beside the card")
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise PrefilterError(f"{weights}: larger than {MAX_WEIGHTS_BYTES >> 20} MiB")
    return weights


def check_arrays(
    arrays: dict[str, np.ndarray], spec: FeatureSpec, where: Path
) -> tuple[np.ndarray, float, list[np.ndarray]]:
    """The coefficients, intercept and idf blocks, each of the shape ``spec`` implies and
    finite; raises :class:`PrefilterError` naming the first that is not."""
    shapes = {
        "coef": (2 * spec.n_features,),
        "intercept": (1,),
        "idf_word": (spec.n_features,),
        "idf_char": (spec.n_features,),
    }
    for name, shape in shapes.items():
        if name not in arrays:
            raise PrefilterError(f"{where}: has no {name!r} array")
        array = arrays[name]
        if array.shape != shape or array.dtype.kind != "f":
            raise PrefilterError(
                f"{where}: {name} has shape {array.shape} and type {array.dtype}, "
                f"expected floats of shape {shape}"
            )
        if not np.isfinite(array).all():
            raise PrefilterError(f"{where}: {name} holds values that are not finite (NaN, inf)")
    coef = arrays["coef"].astype(np.float64)
    idf = [arrays["idf_word"].astype(np.float64), arrays["idf_char"].astype(np.float64)]
    return coef, float(arrays["intercept"][0]), idf
