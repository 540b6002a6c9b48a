"""Static sharding for Kubernetes Indexed Jobs and Slurm job arrays.

``--num-workers N --worker-index I``: each input file belongs to exactly one worker, chosen by
a stable hash of its path, never by its position in a listing, so adding a shard moves no
other shard to another worker (and their finished chunks stay where they are). All workers
must see the inputs at the same paths (one shared filesystem or bucket mount).
"""

from __future__ import annotations

import hashlib


def worker_of(path: str, num_workers: int) -> int:
    """The worker (0-based) that labels this input file."""
    digest = hashlib.sha256(path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_workers


def files_for_worker(paths: list[str], num_workers: int, worker_index: int) -> list[str]:
    if num_workers < 1 or not 0 <= worker_index < num_workers:
        raise ValueError(
            f"--worker-index must be in 0..{num_workers - 1} for --num-workers {num_workers}"
        )
    return [p for p in paths if worker_of(p, num_workers) == worker_index]
