"""Input files: where they are, which source they are, and whether they changed.

A row's identity in the output is (``source_file``, ``source_row``), where ``source_file`` is
the file's path relative to its **source root**: ``--source-root`` when given, else the folder
an ``--input`` names (for a glob, the folder before its first wildcard; for a file, its folder).
So the same data reached through a symlink or another mount point is the same rows.

A file's fingerprint is the sha256 of its bytes. The output's index remembers it with the
file's size and modification time (and, on object storage, its ETag): a file whose size and
time are unchanged is not read again; when they differ, the full hash decides (a copy with
new times is still unchanged).

An input may be a URI on object storage (``s3://bucket/prefix/``, a glob under it, one
object): the same rules hold there, with keys in place of paths (``output.objects``).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from batch.errors import InputError, UsageError
from batch.flow.object_inputs import check_output_outside_prefixes, key_below, object_matches
from batch.output import objects
from batch.output.index import FileRecord, Index
from batch.output.names import PARQUET_SUFFIXES
from batch.output.names import hidden as _hidden

log = logging.getLogger(__name__)
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
    etag: str = ""  # an object's ETag then (object storage)

    def __post_init__(self) -> None:
        if not self.source_file:
            object.__setattr__(self, "source_file", self.path)


def as_text(path: str) -> str:
    """A path as valid UTF-8 text, so the table, the index and the manifest can hold it: bytes
    of a name that are not UTF-8 (a file from another system) become ``\\xNN`` escapes.
    Files are still opened by their real path."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def _data_files(folder: Path) -> list[Path]:
    """The Parquet files below a folder, leaving out hidden files and folders at any depth."""
    found = []
    for directory, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not _hidden(name)]
        found += [
            Path(directory) / name
            for name in files
            if not _hidden(name) and Path(name).suffix.lower() in PARQUET_SUFFIXES
        ]
    return sorted(found)


def _glob(spec: str) -> tuple[list[Path], Path]:
    """A pattern's files, and folders expanded like a folder; hidden matches left out."""
    root = _glob_root(spec)
    matches: list[Path] = []
    for hit in map(Path, sorted(glob.glob(spec, recursive=True))):
        below = hit.relative_to(root).parts if hit.is_relative_to(root) else hit.parts
        if any(_hidden(part) for part in below):
            continue
        if hit.is_dir():
            matches += _data_files(hit)
        elif hit.is_file():
            matches.append(hit)
    if not matches:
        raise InputError(f"{spec}: pattern matches no Parquet files")
    return matches, root


def _matches(spec: str) -> tuple[list[Path], Path]:
    """The files an ``--input`` names, and the folder their identities are relative to.

    A file named explicitly is always taken; folders and patterns leave out names that start
    with ``_`` or ``.`` (and, in folders, files that are not ``.parquet``).
    """
    path = Path(spec)
    if path.is_dir():
        matches = _data_files(path)
        if not matches:
            raise InputError(f"{spec}: directory holds no Parquet files")
        return matches, path
    if path.is_file():
        return [path], path.parent
    if glob.has_magic(spec):
        return _glob(spec)
    raise InputError(f"{spec}: no such file or directory")


def check_output_outside(specs: list[str], output: str) -> None:
    """Refuse an output that an input would read: its own files would become input.

    An output inside an input folder (or under a pattern's match) is refused unless its name
    there starts with ``_`` or ``.``, which expansion leaves out (``--output data/_labels``).
    """
    if objects.is_uri(output):
        check_output_outside_prefixes(specs, output)
        return
    inside = Path(os.path.abspath(output))
    for spec in specs:
        if objects.is_uri(spec) or Path(spec).is_file() or not _reads(spec, inside):
            continue
        raise UsageError(
            f"--output {output} is inside --input {spec}: the table's own files would be "
            "read as input on the next run; write it elsewhere, or give it a name starting "
            "with '_' (left out when inputs are expanded)"
        )


def _reads(spec: str, output: Path) -> bool:
    """Whether expanding ``spec`` (a folder or a pattern) could reach files under ``output``."""
    root, pattern = _split_glob(spec) if glob.has_magic(spec) else (Path(spec), ())
    root = Path(os.path.abspath(root))
    if output == root:
        return True
    if not output.is_relative_to(root):
        return False
    below = output.relative_to(root).parts
    if any(_hidden(part) for part in below):
        return False
    if any("**" in part for part in pattern):
        return True
    pairs = zip(below, pattern, strict=False)  # deeper parts: a matched folder is expanded
    return all(fnmatch.fnmatchcase(name, part) for name, part in pairs)


def _split_glob(spec: str) -> tuple[Path, tuple[str, ...]]:
    """A pattern's folder before its first wildcard, and its parts from there on."""
    parts = Path(spec).parts
    cut = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return (Path(*parts[:cut]) if cut else Path(".")), parts[cut:]


def _glob_root(spec: str) -> Path:
    return _split_glob(spec)[0]


def resolve_sources(specs: list[str], source_root: str | None = None) -> list[tuple[str, str]]:
    """(absolute path, source identity) of every input file, sorted per ``--input``."""
    found: dict[str, str] = {}
    for spec in specs:
        if objects.is_uri(spec):
            uris, top = object_matches(spec)
            for uri in uris:
                found.setdefault(uri, key_below(uri, source_root or top))
            continue
        if source_root and objects.is_uri(source_root):
            raise UsageError(f"{spec}: a local input cannot be under --source-root {source_root}")
        matches, root = _matches(spec)
        base = os.path.abspath(source_root or root)
        for match in matches:
            path = os.path.abspath(match)
            identity = as_text(os.path.relpath(path, base))
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
    if objects.is_uri(path):
        return objects.sha256(path)
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
    if record is None:
        return None
    stamp = file_stamp(path)
    if (record.size, record.mtime_ns, record.etag) != stamp:
        return None
    return InputFile(path, record.rows, record.sha256, source_file, *stamp)


def file_stamp(path: str) -> tuple[int, int, str]:
    """Size, modification time and ETag ("" for a local file): what says it may have changed."""
    if objects.is_uri(path):
        found = objects.stat(path)
        return found.size, found.mtime_ns, found.etag
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns, ""


def fingerprinted(path: str, source_file: str, num_rows: int) -> InputFile:
    """Hash the file's bytes; the run tells the index (``remember``), so an unchanged file is
    not read again. The stamp is taken first: a write during the hash then shows next run."""
    stamp = file_stamp(path)
    return InputFile(path, num_rows, file_sha256(path), source_file, *stamp)


def remember(inputs: list[InputFile], index: Index) -> None:
    """Record each file's fingerprint with the size and time it was taken at; warn when a
    source identity the index knows is reached at another path (two day folders given one
    after the other without ``--source-root``: each file would take over the other's
    labels as if it had changed)."""
    for source in inputs:
        known = index.file(source.source_file)
        moved = known is not None and known.path != as_text(source.path)
        if moved and known.sha256 != source.fingerprint:  # same bytes: the same file, elsewhere
            log.warning(
                "%s is source %r, which earlier runs read at %s: if these are different "
                "files, give --source-root (a folder above both) so each keeps its labels",
                as_text(source.path),
                source.source_file,
                known.path,
            )
    index.record_files(
        FileRecord(
            f.source_file, as_text(f.path), f.size, f.mtime_ns, f.fingerprint, f.num_rows, f.etag
        )
        for f in inputs
        if f.size
    )
