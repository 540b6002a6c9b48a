"""Input files: where they are, which source they are, and whether they changed.

A row's identity in the output is (``source_file``, ``source_row``), where ``source_file`` is
the file's path relative to its **source root**: ``--source-root`` when given, else the folder
an ``--input`` names (for a glob, the folder before its first wildcard; for a file, its folder).
So the same data reached through a symlink or another mount point is the same rows.

A file's fingerprint is the sha256 of its bytes. The output's index remembers it with the
file's size and modification time: a file whose size and time are unchanged is not read
again; when they differ, the full hash decides (a copy with new times is still unchanged).
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from batch.errors import InputError, UsageError
from batch.output.index import FileRecord, Index

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_HASH_BLOCK = 1 << 22


@dataclass(frozen=True)
class InputFile:
    """One Parquet shard: where it is read from, which source it is, what its bytes are."""

    path: str  # absolute path, as reached in this run
    num_rows: int
    fingerprint: str  # sha256 of the file's bytes
    source_file: str = ""  # identity: the path relative to its source root
    size: int = 0  # bytes, and the modification time, when the fingerprint was taken
    mtime_ns: int = 0

    def __post_init__(self) -> None:
        if not self.source_file:
            object.__setattr__(self, "source_file", self.path)


def _is_data_file(path: Path) -> bool:
    hidden = any(part.startswith((".", "_")) for part in path.parts[-1:])
    return path.is_file() and not hidden and path.suffix.lower() in PARQUET_SUFFIXES


def _matches(spec: str) -> tuple[list[Path], Path]:
    """The files an ``--input`` names, and the folder their identities are relative to."""
    path = Path(spec)
    if path.is_dir():
        matches = [p for p in sorted(path.rglob("*")) if _is_data_file(p)]
        if not matches:
            raise InputError(f"{spec}: directory holds no Parquet files")
        return matches, path
    if path.is_file():
        return [path], path.parent
    if glob.has_magic(spec):
        matches = [Path(p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
        if not matches:
            raise InputError(f"{spec}: pattern matches no files")
        static = [part for part in Path(spec).parts]
        cut = next(i for i, part in enumerate(static) if glob.has_magic(part))
        return matches, Path(*static[:cut]) if cut else Path(".")
    raise InputError(f"{spec}: no such file or directory")


def resolve_sources(specs: list[str], source_root: str | None = None) -> list[tuple[str, str]]:
    """(absolute path, source identity) of every input file, sorted per ``--input``."""
    found: dict[str, str] = {}
    for spec in specs:
        matches, root = _matches(spec)
        base = os.path.abspath(source_root or root)
        for match in matches:
            path = os.path.abspath(match)
            identity = os.path.relpath(path, base)
            if identity.startswith(".."):
                raise UsageError(f"{path}: not under --source-root {source_root}")
            found.setdefault(path, identity)
    by_identity: dict[str, str] = {}
    for path, identity in found.items():
        if identity in by_identity:
            raise UsageError(
                f"{by_identity[identity]} and {path} would both be source {identity!r}: "
                "give them a common --source-root (a folder above both)"
            )
        by_identity[identity] = path
    return list(found.items())


def resolve_inputs(specs: list[str]) -> list[str]:
    """Expand directories (recursively), files and glob patterns into sorted absolute paths."""
    return [path for path, _ in resolve_sources(specs)]


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def known_unchanged(path: str, source_file: str, index: Index | None) -> InputFile | None:
    """The file as the index last saw it, if its size and modification time are the same."""
    if index is None:
        return None
    record = index.file(source_file)
    stat = os.stat(path)
    if record is None or (record.size, record.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return None
    return InputFile(path, record.rows, record.sha256, source_file, record.size, record.mtime_ns)


def fingerprinted(path: str, source_file: str, num_rows: int) -> InputFile:
    """Hash the file's bytes; the run tells the index (``remember``), so an unchanged file is
    not read again."""
    stat = os.stat(path)
    return InputFile(path, num_rows, file_sha256(path), source_file, stat.st_size, stat.st_mtime_ns)


def remember(inputs: list[InputFile], index: Index) -> None:
    """Record each file's fingerprint with the size and time it was taken at."""
    index.record_files(
        FileRecord(f.source_file, f.path, f.size, f.mtime_ns, f.fingerprint, f.num_rows)
        for f in inputs
        if f.size
    )
