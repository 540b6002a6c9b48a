"""Work claims: a live run marks the (source file, policy) pairs it is labelling, so a second
run started on the same output leaves them to it instead of paying the model twice.

A claim is a file under ``OUT/_claims/`` created exclusively (``O_EXCL``). Its holder refreshes
its modification time while it works; a claim is stale when it has not been refreshed for
``LEASE_SECONDS``, or when its holder ran on this host, in this PID namespace, and has died.
A stale claim is taken over by renaming it away (atomic: one taker wins). Claims only save
work: the table's upserts stay correct without them.
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


def _namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Claims:
    """The claims one run holds, refreshed by a background thread while it works."""

    def __init__(self, output: str | Path, run_id: str, lease: float = LEASE_SECONDS) -> None:
        self.folder = Path(output) / CLAIMS_DIR
        self.run_id = run_id
        self.lease = lease
        self.me = {
            "run_id": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "namespace": _namespace(),
        }
        self.held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.claim"

    def _stale(self, path: Path, holder: dict[str, Any]) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if age > self.lease:
            return True
        same_namespace = (
            holder.get("host") == self.me["host"]
            and holder.get("namespace") == self.me["namespace"] != "unknown"
        )
        return same_namespace and not _pid_alive(int(holder.get("pid", 0)))

    def holder(self, key: str) -> dict[str, Any] | None:
        """Who holds ``key`` now (None if nobody, or only a stale claim)."""
        path = self._path(key)
        try:
            holder = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return None if self._stale(path, holder) else holder

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

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for key in list(self.held):
            self.release(key)
