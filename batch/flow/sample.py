"""A random, reproducible sample of input rows, for trying a policy edit before a full run."""

from __future__ import annotations

import random

from batch.flow.read import InputFile


def sample_rows(inputs: list[InputFile], size: int, seed: int = 0) -> dict[str, set[int]]:
    """``size`` rows drawn without replacement over all inputs, as source rows per file path.

    The same inputs (in the same order), size and seed always give the same rows; a larger
    ``size`` with the same seed does not, in general, contain a smaller one.
    """
    total = sum(f.num_rows for f in inputs)
    positions = sorted(random.Random(seed).sample(range(total), min(size, total)))
    chosen: dict[str, set[int]] = {f.path: set() for f in inputs}
    start, files = 0, iter(inputs)
    current = next(files, None)
    for position in positions:
        while current is not None and position >= start + current.num_rows:
            start += current.num_rows
            current = next(files, None)
        assert current is not None
        chosen[current.path].add(position - start)
    return chosen
