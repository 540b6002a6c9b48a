"""Which objects an ``--input`` URI names: one object, a prefix read like a folder, or a glob
under a prefix, with the same hidden-name and suffix rules as local inputs (``flow.sources``)."""

from __future__ import annotations

import fnmatch
import glob

from batch.errors import InputError, UsageError
from batch.output import objects
from batch.output.names import hidden, is_parquet


def object_matches(spec: str) -> tuple[list[str], str]:
    """``_matches`` for a URI: an object, a prefix (a folder) or a glob under one; the store
    is listed once."""
    objects.check_uri(spec)
    if glob.has_magic(spec):
        head, pattern = _split_uri_glob(spec)
        found = [
            uri
            for uri, below in _visible(head, objects.list_files(head))
            if _parts_match(below, pattern)
            or (_folder_matches(below[:-1], pattern) and is_parquet(below[-1]))
        ]
        if not found:
            raise InputError(f"{spec}: pattern matches no Parquet files")
        return found, head
    if objects.is_object(spec):
        return [spec], spec.rstrip("/").rsplit("/", 1)[0]
    root = spec.rstrip("/")
    listed = objects.list_files(root)
    if not listed:
        raise InputError(f"{spec}: no such object or prefix")
    found = [uri for uri, below in _visible(root, listed) if is_parquet(below[-1])]
    if not found:
        raise InputError(f"{spec}: prefix holds no Parquet files")
    return found, root


def _visible(root: str, uris: list[str]) -> list[tuple[str, list[str]]]:
    """Objects listed below a prefix, with their key's parts below it; hidden names left out."""
    listed = []
    for uri in uris:
        below = uri[len(root) :].strip("/").split("/")
        if not any(hidden(part) for part in below):
            listed.append((uri, below))
    return listed


def _split_uri_glob(spec: str) -> tuple[str, list[str]]:
    scheme, rest = spec.split("://", 1)
    parts = rest.split("/")
    cut = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    if cut == 0:
        raise UsageError(f"{spec}: a pattern cannot match bucket names")
    return f"{scheme}://" + "/".join(parts[:cut]), [p for p in parts[cut:] if p]


def _parts_match(names: list[str], pattern: list[str]) -> bool:
    """Glob matching of a key's parts below the pattern's folder (``**``: any depth)."""
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_parts_match(names[i:], pattern[1:]) for i in range(len(names) + 1))
    return (
        bool(names)
        and fnmatch.fnmatchcase(names[0], pattern[0])
        and _parts_match(names[1:], pattern[1:])
    )


def _folder_matches(folders: list[str], pattern: list[str]) -> bool:
    """Whether some folder above an object matches the pattern (it is then expanded)."""
    return any(_parts_match(folders[:depth], pattern) for depth in range(1, len(folders) + 1))


def check_output_outside_prefixes(specs: list[str], output: str) -> None:
    """``check_output_outside`` for a table on a store: under an input prefix (or a pattern's
    prefix) only with a hidden name on the way, which listing leaves out."""
    table = output.rstrip("/")
    for spec in specs:
        if not objects.is_uri(spec):
            continue
        root = _split_uri_glob(spec)[0] if glob.has_magic(spec) else spec.rstrip("/")
        if not table.startswith(root + "/"):
            continue
        if not any(hidden(part) for part in table[len(root) + 1 :].split("/")):
            raise UsageError(
                f"--output {output} is under --input {spec}: the table's own files would be "
                "read as input on the next run; write it elsewhere, or give it a name "
                "starting with '_' (left out when inputs are expanded)"
            )


def key_below(uri: str, root: str) -> str:
    """An object's identity: its key below the source root (a URI prefix)."""
    prefix = root.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise UsageError(f"{uri}: not under --source-root {root}")
    return uri[len(prefix) :]
