"""Chunks: slices of one input file, the unit of planning, checkpointing and scale-out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from batch.flow.plan import content_sha256
from batch.flow.read import iter_batches, read_rows
from batch.flow.sources import InputFile


@dataclass
class Chunk:
    """A slice of one input file: rows ``[first_row, first_row + len(ids))``."""

    source: InputFile
    index: int
    first_row: int
    ids: list[str | None]
    texts: list[str | None]
    hashes: list[str | None]
    wanted: frozenset[int] | None = None  # row offsets a sample run labels; None: every row
    policies: frozenset[str] | None = None  # policy ids to label it under; None: every one

    def wanted_rows(self) -> set[int]:
        return set(range(len(self.ids))) if self.wanted is None else set(self.wanted)

    @property
    def size(self) -> int:
        """How many of its rows this run labels."""
        return len(self.ids) if self.wanted is None else len(self.wanted)


def make_chunk(
    source: InputFile,
    index: int,
    chunk_size: int,
    ids: list[str | None],
    texts: list[str | None],
    sample: set[int] | None = None,
) -> Chunk | None:
    """The chunk ``index`` of a file from its rows; None when a sample wants none of them."""
    first = index * chunk_size
    wanted = None
    if sample is not None:
        wanted = frozenset(r - first for r in sample if first <= r < first + len(ids))
        if not wanted:
            return None
    hashes = [content_sha256(t) for t in texts]
    return Chunk(source, index, first, ids, texts, hashes, wanted)


def iter_chunks(
    source: InputFile,
    id_column: str,
    text_column: str,
    chunk_size: int,
    sample: set[int] | None = None,
) -> Iterator[Chunk]:
    """Cut a file into chunks of exactly ``chunk_size`` rows (the last may be shorter).

    Chunk boundaries depend only on the file and ``chunk_size``, never on row-group layout,
    so a chunk's identity is stable across runs. With ``sample`` (source rows to label),
    chunks holding none of them are not yielded.
    """
    ids: list[str | None] = []
    texts: list[str | None] = []
    index = 0
    for _, batch in iter_batches(source, id_column, text_column, chunk_size):
        ids.extend(batch.column(0).to_pylist())
        texts.extend(batch.column(1).to_pylist())
        while len(ids) >= chunk_size:
            chunk = make_chunk(
                source, index, chunk_size, ids[:chunk_size], texts[:chunk_size], sample
            )
            if chunk is not None:
                yield chunk
            del ids[:chunk_size], texts[:chunk_size]
            index += 1
    if ids:
        chunk = make_chunk(source, index, chunk_size, ids, texts, sample)
        if chunk is not None:
            yield chunk


def read_chunk(
    source: InputFile, id_column: str, text_column: str, chunk_size: int, index: int
) -> Chunk:
    """One chunk of a file, read on its own (what a distributed worker does)."""
    start = index * chunk_size
    ids, texts = read_rows(source, id_column, text_column, start, start + chunk_size)
    chunk = make_chunk(source, index, chunk_size, ids, texts)
    assert chunk is not None
    return chunk


def chunk_count(source: InputFile, chunk_size: int) -> int:
    """How many chunks a file is cut into, from its row count alone."""
    return (source.num_rows + chunk_size - 1) // chunk_size
