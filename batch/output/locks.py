"""The output's commit lock: one writer at a time commits to the table and its index.

An advisory ``flock`` on ``OUT/_locks/commit.lock``, held only while a commit is made (not
while the model works), so concurrent runs, static workers and Ray actors serialise their
commits. The kernel releases it when the holder dies, whatever PID namespace it ran in.

For a table on an object store the lock is in the table's local cache folder
(``output.place``): it serialises this machine's writers to the cache's index, while the
store's conditional writes keep the table itself right across machines.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batch.output.failures import writing
from batch.output.place import local_folder

LOCKS_DIR = "_locks"


@contextmanager
def commit_lock(output: str | Path) -> Iterator[None]:
    """Hold the output's commit lock for the duration of the ``with`` block."""
    folder = local_folder(output) / LOCKS_DIR
    with writing(folder, "the commit lock"):
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "commit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    with holding(fd):
        yield


@contextmanager
def holding(fd: int) -> Iterator[None]:
    """An exclusive ``flock`` on an open file for the ``with`` block; the file is closed after."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
