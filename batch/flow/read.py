"""The read stage: resolve input shards, validate their columns before any model work, stream
their record batches, and read a row's text back for reports."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from batch.errors import InputError

__all__ = ["InputError", "InputFile"]

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_FOOTER_BYTES = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One Parquet shard, named by path and by a content fingerprint that survives copies."""

    path: str
    num_rows: int
    fingerprint: str


def _is_data_file(path: Path) -> bool:
    hidden = any(part.startswith((".", "_")) for part in path.parts[-1:])
    return path.is_file() and not hidden and path.suffix.lower() in PARQUET_SUFFIXES


def resolve_inputs(specs: list[str]) -> list[str]:
    """Expand directories (recursively), files and glob patterns into sorted absolute paths."""
    found: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            matches = [p for p in sorted(path.rglob("*")) if _is_data_file(p)]
            if not matches:
                raise InputError(f"{spec}: directory holds no Parquet files")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(spec):
            matches = [
                Path(p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()
            ]
            if not matches:
                raise InputError(f"{spec}: pattern matches no files")
        else:
            raise InputError(f"{spec}: no such file or directory")
        found.extend(os.path.abspath(p) for p in matches)
    unique = list(dict.fromkeys(found))
    return unique


def file_fingerprint(path: str) -> str:
    """sha256 of a file's size and its last MiB (the Parquet footer and its statistics).

    Cheap for multi-GB shards, independent of the path and of mtime, and changed by any edit
    that changes the footer, which in Parquet means any change of content.
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        handle.seek(max(0, size - _FOOTER_BYTES))
        digest.update(handle.read())
    return digest.hexdigest()[:32]


def is_text_type(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        return is_text_type(arrow_type.value_type)
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or getattr(pa.types, "is_string_view", lambda _t: False)(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def inspect_input(path: str, id_column: str, text_column: str) -> InputFile:
    """Check one shard's footer and schema; raise :class:`InputError` naming the file."""
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        num_rows = parquet.metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in (id_column, text_column) if c not in schema.names]
    if missing:
        raise InputError(
            f"{path}: missing column {', '.join(repr(c) for c in missing)}; "
            f"it has {', '.join(schema.names) or 'no columns'} "
            "(choose others with --id-column / --text-column)"
        )
    text_type = schema.field(text_column).type
    if not is_text_type(text_type):
        raise InputError(f"{path}: text column {text_column!r} has type {text_type}, not a string")
    return InputFile(path=path, num_rows=num_rows, fingerprint=file_fingerprint(path))


def inspect_inputs(
    paths: list[str], id_column: str, text_column: str, skip_bad: bool = False
) -> tuple[list[InputFile], list[dict[str, str]]]:
    """Validate every shard up front, so a bad file fails the run before any model work.

    With ``skip_bad`` the bad files are returned as ``{"path", "error"}`` records instead.
    """
    good, bad = [], []
    for path in paths:
        try:
            good.append(inspect_input(path, id_column, text_column))
        except InputError as exc:
            if not skip_bad:
                raise
            bad.append({"path": path, "error": str(exc)})
    return good, bad


def _ids_as_strings(ids: pa.Array) -> pa.Array:
    """Ids of any Arrow type as strings: a cast where Arrow has one, else Python's ``str``."""
    if pa.types.is_dictionary(ids.type):
        ids = ids.dictionary_decode()
    try:
        return ids.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        values = ids.to_pylist()
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _texts_as_strings(texts: pa.Array) -> pa.Array:
    """Text as ``large_string``; invalid UTF-8 is replaced (U+FFFD) rather than failing the run."""
    if pa.types.is_dictionary(texts.type):
        texts = texts.dictionary_decode()
    if pa.types.is_null(texts.type):
        return pa.nulls(len(texts), pa.large_string())
    try:
        texts.validate(full=True)
        return texts.cast(pa.large_string())
    except pa.ArrowInvalid:
        raw = texts.cast(pa.large_binary()).to_pylist()
        return pa.array(
            [None if b is None else b.decode("utf-8", errors="replace") for b in raw],
            pa.large_string(),
        )


def iter_batches(
    source: InputFile, id_column: str, text_column: str, batch_size: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yield ``(first_source_row, batch)`` with columns ``id`` (string) and ``text`` (string).

    Streams with ``pyarrow.dataset`` so memory stays bounded by the batch (and row group) size.
    """
    dataset = ds.dataset(source.path, format="parquet")
    start = 0
    for batch in dataset.to_batches(
        columns=[id_column, text_column], batch_size=batch_size, use_threads=False
    ):
        if batch.num_rows == 0:
            continue
        columns = [_ids_as_strings(batch.column(0)), _texts_as_strings(batch.column(1))]
        yield start, pa.record_batch(columns, names=["id", "text"])
        start += batch.num_rows


def read_rows(
    source: InputFile, id_column: str, text_column: str, start: int, stop: int
) -> tuple[list[str | None], list[str | None]]:
    """Ids and texts of rows ``[start, stop)``, reading only the row groups that hold them.

    Lets a worker read one chunk of a large shard without reading what comes before it.
    """
    parquet = pq.ParquetFile(source.path)
    ids: list[str | None] = []
    texts: list[str | None] = []
    offset = 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if offset + rows > start and offset < stop:
            table = parquet.read_row_group(group, columns=[id_column, text_column])
            low, high = max(start - offset, 0), min(stop - offset, rows)
            part = table.slice(low, high - low)
            ids.extend(_ids_as_strings(part.column(0).combine_chunks()).to_pylist())
            texts.extend(_texts_as_strings(part.column(1).combine_chunks()).to_pylist())
        offset += rows
        if offset >= stop:
            break
    return ids, texts


def read_texts(path: str, rows: list[int], text_column: str) -> dict[int, str] | None:
    """The texts of some rows of a shard, for showing or training on labelled items.

    None when the file (or its column) can no longer be read; rows out of range or without a
    string are left out.
    """
    try:
        column = pq.read_table(path, columns=[text_column]).column(0)
    except (OSError, KeyError, ValueError):
        return None
    texts = {}
    for row in rows:
        if row is not None and 0 <= row < len(column):
            value = column[row].as_py()
            if isinstance(value, str):
                texts[row] = value
    return texts


def parquet_pattern(path: str | Path) -> str:
    """A Parquet file as it is, or every Parquet file below a folder (gold files, for instance)."""
    source = Path(path)
    return str(source / "**" / "*.parquet") if source.is_dir() else str(source)
