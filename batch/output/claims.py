"""Work claims: a live run marks the (source file, policy) pairs it is labelling, so a second
run started on the same output leaves them to it instead of paying the model twice.

A claim is a file under ``OUT/_claims/`` created exclusively (``O_EXCL``). Its holder refreshes
its modification time while it works. A claim is stale, and taken over by renaming it away
(atomic: one taker wins), when:

- it has not been refreshed for ``LEASE_SECONDS`` (or its time is further than that in the
  future: a clock that jumped, a file touched by hand);
- its holder ran on this host, in this PID namespace, and has died;
- its holder was this worker's previous life: the same static worker of a sharded job
  (``--worker-index`` of ``--num-workers``, one live process each), so a restarted pod takes
  its own work back at once;
- it is not a claim at all (not the JSON this module writes) and is older than a few seconds
  (a younger one may be a claim being written).

Claims only save work: the table's upserts stay correct without them. For a table on an
object store they are objects written with conditional requests (``output.object_claims``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from batch.output.failures import writing

CLAIMS_DIR = "_claims"
LEASE_SECONDS = 120.0
UNREADABLE_GRACE_SECONDS = 5.0  # an unreadable claim this young may be one being written
_MAX_PID = 1 << 22  # Linux's pid_max ceiling


def _namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` (a claim's, so in 1..pid_max: ``_holder`` checked it) is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(text: str) -> dict[str, Any] | None:
    """A claim's holder, if the text is one this module wrote (validated as data)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < _MAX_PID:
        return None  # no process anywhere has this pid: not a claim this module wrote
    for name in ("host", "namespace", "key"):
        if not isinstance(data.get(name, ""), str):
            return None
    worker = data.get("worker")
    if worker is not None and not (
        isinstance(worker, list) and len(worker) == 2 and all(type(w) is int for w in worker)
    ):
        return None
    return data


class Claims:
    """The claims one run holds, refreshed by a background thread while it works."""

    def __init__(
        self,
        output: str | Path,
        run_id: str,
        lease: float = LEASE_SECONDS,
        worker: tuple[int, int] | None = None,
    ) -> None:
        """``worker``: (index, count) of a static worker of a sharded job, if it is one."""
        self.folder = Path(output) / CLAIMS_DIR
        self.run_id = run_id
        self.lease = lease
        self.me: dict[str, Any] = {
            "run_id": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "namespace": _namespace(),
        }
        if worker is not None and worker[1] > 1:
            self.me["worker"] = [int(worker[0]), int(worker[1])]
        self.held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.claim"

    def _previous_life(self, holder: dict[str, Any]) -> bool:
        """A claim this worker made before it was restarted (not a live other run)."""
        if holder["run_id"] == self.run_id:
            return False
        return "worker" in self.me and holder.get("worker") == self.me["worker"]

    def _stale(self, age: float, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            return abs(age) > UNREADABLE_GRACE_SECONDS
        if abs(age) > self.lease or self._previous_life(holder):
            return True
        same_namespace = (
            holder.get("host") == self.me["host"]
            and holder.get("namespace") == self.me["namespace"] != "unknown"
        )
        return same_namespace and not _pid_alive(holder["pid"])

    def holder(self, key: str) -> dict[str, Any] | None:
        """Who holds ``key`` now (None if nobody, or only a stale claim)."""
        path = self._path(key)
        try:
            age = time.time() - path.stat().st_mtime
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        holder = _holder(text)
        if self._stale(age, holder):
            return None
        return holder or {"run_id": "a run whose claim is being written"}

    def claim(self, key: str) -> bool:
        """Take ``key`` if nobody live holds it; True when this run holds it afterwards."""
        if key in self.held:
            return True
        with writing(self.folder, "a work claim"):
            return self._claim(key)

    def _claim(self, key: str) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if self.holder(key) is not None:
                    return False
                # Take the stale claim away: only one taker's rename succeeds.
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, path.with_suffix(f".stale-{uuid.uuid4().hex[:8]}"))
                for old in self.folder.glob(f"{path.stem}.stale-*"):
                    old.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({**self.me, "key": key}, handle)
            with self._lock:
                self.held[key] = path
            return True
        return False

    def released(self, key: str) -> bool:
        """Whether ``key``'s claim is gone: its holder finished (a stale claim stays)."""
        return not self._path(key).exists()

    def release(self, key: str) -> None:
        with self._lock:
            path = self.held.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def refresh(self) -> None:
        """Tell other runs this run is alive: touch every claim it holds."""
        with self._lock:
            paths = list(self.held.values())
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)

    def __enter__(self) -> Claims:
        def beat() -> None:
            while not self._stop.wait(self.lease / 4):
                self.refresh()

        self._thread = threading.Thread(target=beat, name="claims-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        """Release every claim when the run succeeded; a failed run's claims stay until they
        go stale, so a run waiting for them takes its files over rather than skip them."""
        self._stop.set()
        if kind is None:
            for key in list(self.held):
                self.release(key)
