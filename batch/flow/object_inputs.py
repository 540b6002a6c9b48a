"""Which objects an ``--input`` URI names: one object, a prefix read like a folder, or a glob
under a prefix, with the same hidden-name and suffix rules as local inputs (``flow.sources``)."""

from __future__ import annotations

import fnmatch
import glob

from batch.errors import InputError, UsageError
from batch.flow import objects
from batch.flow.names import hidden, is_parquet


def object_matches(spec: str) -> tuple[list[str], str]:
    """``_matches`` for a URI: an object, a prefix (a folder) or a glob under one."""
    objects.check_uri(spec)
    if glob.has_magic(spec):
        head, pattern = _split_uri_glob(spec)
        found = []
        for uri in objects.list_files(head):
            below = uri[len(head) :].strip("/").split("/")
            if any(hidden(part) for part in below):
                continue
            whole = _parts_match(below, pattern)
            if whole or (_folder_matches(below[:-1], pattern) and is_parquet(below[-1])):
                found.append(uri)
        if not found:
            raise InputError(f"{spec}: pattern matches no Parquet files")
        return found, head
    kind = objects.kind(spec)
    if kind == "file":
        return [spec], spec.rstrip("/").rsplit("/", 1)[0]
    if kind == "missing":
        raise InputError(f"{spec}: no such object or prefix")
    root = spec.rstrip("/")
    found = []
    for uri in objects.list_files(root):
        below = uri[len(root) :].strip("/").split("/")
        if not any(hidden(part) for part in below) and is_parquet(below[-1]):
            found.append(uri)
    if not found:
        raise InputError(f"{spec}: prefix holds no Parquet files")
    return found, root


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


def key_below(uri: str, root: str) -> str:
    """An object's identity: its key below the source root (a URI prefix)."""
    prefix = root.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise UsageError(f"{uri}: not under --source-root {root}")
    return uri[len(prefix) :]
