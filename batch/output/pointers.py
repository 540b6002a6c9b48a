"""The label store's pointers on disk: an open-addressing hash table in one file, so a lookup
or an insert costs the same at ten labels as at ten million (a B-tree of random keys does
not: SQLite's grew from 3 to 24 us an insert between 0 and 2M entries here, one page written
per entry once the tree outgrows its cache).

Slots of 32 bytes: the first 16 bytes of the content hash, then the work id, source id, row
and table version (little-endian u32 each). An empty slot is all zeros. Linear probing, at
most ``MAX_LOAD`` full (64 to 128 bytes of disk a key); a run reserves room for what it may
add before it starts (``reserve``), so a table is rebuilt bigger, into a new file that
replaces the old one atomically, at most once a run. Reads and writes are ``pread`` of one
page and ``pwrite`` of one slot, so the table lives in the OS's file cache, not in this
process's memory.

The file is derived data: every pointer is checked against the label table before it is
used, so a slot lost to a kill, a race between two writers or a torn write costs a miss,
never a wrong label. Writers take an advisory lock beside the file while they insert.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from batch.output.locks import holding

MAGIC = b"SGPTRS01"
HEADER = 4096  # magic, capacity, count, writing (a put under way); then the slots
SLOT = 32
PAGE = 4096
PER_PAGE = PAGE // SLOT
FIRST_CAPACITY = 1 << 12
MAX_LOAD = 0.5
_EMPTY = bytes(16)
_VALUE = struct.Struct("<IIII")  # work, source, row, version
_HEAD = struct.Struct("<8sQQQ")
NO_VERSION = _U32 = (1 << 32) - 1  # a value's version when it is not known
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1

Key = tuple[int, bytes]  # work id, 16 bytes of the content hash
Value = tuple[int, int, int]  # source id, row, table version


class PointerFile:
    """One process's handle on the pointer file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            _create(self.path, FIRST_CAPACITY)
        self.fd = os.open(self.path, os.O_RDWR)
        self.inode = os.fstat(self.fd).st_ino
        head = os.pread(self.fd, _HEAD.size, 0)
        fields = _HEAD.unpack(head) if len(head) == _HEAD.size else (b"", 0, 0, 0)
        magic, capacity, count, writing = fields
        size = os.fstat(self.fd).st_size
        if (
            magic != MAGIC
            or not capacity
            or capacity & (capacity - 1)
            or size != (HEADER + capacity * SLOT)
        ):
            os.close(self.fd)  # not ours, or torn: start again (pointers are only hints)
            _create(self.path, FIRST_CAPACITY)
            return self._open()
        self.capacity, self.count = capacity, count
        if writing:  # a writer was killed mid-put: its count is stale, count the slots
            self.count = self._occupied()

    def _occupied(self) -> int:
        import numpy as np

        total = 0
        for start in range(HEADER, HEADER + self.capacity * SLOT, 1 << 20):
            data = np.frombuffer(os.pread(self.fd, 1 << 20, start), dtype=np.uint64)
            total += int(np.count_nonzero(data.reshape(-1, SLOT // 8)[:, :2].any(axis=1)))
        return total

    def close(self) -> None:
        os.close(self.fd)

    def _fresh(self) -> None:
        """Reopen if another process replaced the file (it grew the table)."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self.inode:
            os.close(self.fd)
            self._open()

    def _start(self, key: Key) -> int:
        work, content = key
        mixed = int.from_bytes(content[:8], "little") ^ ((work * _MIX) & _MASK)
        return mixed & (self.capacity - 1)

    def _find(self, key: Key) -> tuple[int, Value | None]:
        """The slot holding ``key`` and its value, or the empty slot where it would go and
        None. One page read, almost always (probing runs on past a page only when full)."""
        work, content = key
        slot = self._start(key)
        for _ in range(self.capacity // PER_PAGE + 1):
            page = slot // PER_PAGE
            data = os.pread(self.fd, PAGE, HEADER + page * PAGE)
            offset = (slot % PER_PAGE) * SLOT
            while offset < PAGE:
                there = data[offset : offset + 16]
                if there == _EMPTY:
                    return page * PER_PAGE + offset // SLOT, None
                if there == content:
                    value = _VALUE.unpack_from(data, offset + 16)
                    if value[0] == work:
                        return page * PER_PAGE + offset // SLOT, value
                offset += SLOT
            slot = ((page + 1) * PER_PAGE) % self.capacity
        raise RuntimeError(f"{self.path}: no free slot")  # MAX_LOAD keeps this from happening

    def get(self, keys: Iterable[Key]) -> dict[Key, Value]:
        """The value of each key the file holds."""
        self._fresh()
        found: dict[Key, Value] = {}
        for key in keys:
            _, value = self._find(key)
            if value is not None:
                found[key] = value[1:]
        return found

    def reserve(self, more: int) -> None:
        """Grow now, if need be, so that ``more`` new keys fit without growing mid-run."""
        with _locked(self.lock_path):
            self._fresh()
            if self.count + more > MAX_LOAD * self.capacity:
                self._grow(self.count + more)

    def put(self, entries: Iterable[tuple[Key, Value]]) -> None:
        """Insert or replace entries (under the writers' lock)."""
        with _locked(self.lock_path):
            self._fresh()
            os.pwrite(self.fd, _HEAD.pack(MAGIC, self.capacity, self.count, 1), 0)
            for key, value in entries:
                if self.count + 1 > MAX_LOAD * self.capacity:
                    self._grow(self.count + 1)
                self._put(key, value)
            os.pwrite(self.fd, _HEAD.pack(MAGIC, self.capacity, self.count, 0), 0)

    def _put(self, key: Key, value: Value) -> None:
        work, content = key
        slot, old = self._find(key)
        if old is None:
            self.count += 1
        record = content + _VALUE.pack(work & _U32, *(v & _U32 for v in value))
        os.pwrite(self.fd, record, HEADER + slot * SLOT)

    def _grow(self, needed: int) -> None:
        """Rebuild with room for ``needed`` keys in a new file, then put it in place."""
        capacity = self.capacity * 2
        while needed > MAX_LOAD * capacity:
            capacity *= 2
        old = self.fd
        temporary = self.path.with_name(self.path.name + ".grow")
        _create(temporary, capacity)
        self.fd, self.capacity, self.count = os.open(temporary, os.O_RDWR), capacity, 0
        for start in range(HEADER, os.fstat(old).st_size, 1 << 20):
            data = os.pread(old, 1 << 20, start)
            for offset in range(0, len(data), SLOT):
                content = data[offset : offset + 16]
                if content != _EMPTY:
                    work, *value = _VALUE.unpack_from(data, offset + 16)
                    self._put((work, content), tuple(value))  # type: ignore[arg-type]
        os.pwrite(self.fd, _HEAD.pack(MAGIC, self.capacity, self.count, 1), 0)
        os.replace(temporary, self.path)
        os.close(old)
        self.inode = os.fstat(self.fd).st_ino

    def disk_bytes(self) -> int:
        return os.fstat(self.fd).st_blocks * 512


def _create(path: Path, capacity: int) -> None:
    """An empty table (a sparse file: empty slots take no disk until written near)."""
    temporary = path.with_name(path.name + f".new-{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(_HEAD.pack(MAGIC, capacity, 0, 0).ljust(HEADER, b"\0"))
        handle.truncate(HEADER + capacity * SLOT)
    os.replace(temporary, path)


def _locked(path: Path) -> AbstractContextManager[None]:
    return holding(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
