"""Where an output lives: a local (or mounted) folder, or a prefix on an S3-compatible object
store (``s3://bucket/labels``: AWS S3, MinIO, Ceph...).

On a store, the Delta table's commits are made safe by the store itself (delta-rs writes each
log entry with a conditional put, so two writers never both make one version; a MERGE that
lost the race is retried), run manifests, diffs, candidates and reports are objects beside
the table, and work claims are objects created with ``If-None-Match: *``
(``output.object_claims``).
What must stay on a local disk, the index (SQLite, the label store's pointer file) and the
lock that serialises this machine's writers to it, lives in a **cache folder** per table:
``<cache dir>/tables/<hash of the table's URI>/``. The cache dir is ``--cache-dir``, else
``$SAFEGUARD_BATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/safeguard-batch`` (``~/.cache/...``).
The cache is checked against the table's history at every run (``output.history``), so a
lost, stale or copied cache costs work, never a wrong label.

Only S3's API is supported for the table for now: claims need its conditional writes (GCS and
Azure have their own, not wired here); inputs can be on ``gs://`` and ``az://`` too.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from pathlib import Path

from batch.errors import UsageError
from batch.output import objects
from batch.output.failures import writing
from batch.output.names import hidden

CACHE_ENV = "SAFEGUARD_BATCH_CACHE_DIR"
TABLE_SCHEMES = ("s3",)
_CACHE_ID = "cache_id"


def is_remote(output: str | Path) -> bool:
    """Whether the output is on an object store (a URI), not a local folder."""
    return objects.is_uri(str(output))


def check_remote(output: str) -> str:
    """Refuse a table URI the tool cannot commit to safely; return it without a trailing /."""
    objects.check_uri(output)
    scheme = output.split("://", 1)[0].lower()
    if scheme not in TABLE_SCHEMES:
        raise UsageError(
            f"{output}: the label table can be on a local folder or on S3 (s3://, also MinIO "
            f"and Ceph through AWS_ENDPOINT_URL), not on {scheme}:// yet; inputs can be"
        )
    bucket, _, prefix = output.split("://", 1)[1].partition("/")
    if not bucket or not prefix.strip("/"):
        raise UsageError(
            f"{output}: name a prefix in the bucket for the table (s3://bucket/labels)"
        )
    return output.rstrip("/")


def join(output: str | Path, *parts: str) -> str:
    """A path (or URI) under the output."""
    if is_remote(output):
        return "/".join([str(output).rstrip("/"), *parts])
    return str(Path(output, *parts))


def cache_root() -> Path:
    """The folder that holds the local caches of tables on object storage."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "safeguard-batch"


def use_cache_root(folder: str | Path) -> None:
    """Keep table caches under ``folder`` (``--cache-dir``) from now on. Set as the variable
    the library reads, so that the run's static workers and Ray actors started from this
    process use it too."""
    os.environ[CACHE_ENV] = os.path.abspath(os.path.expanduser(str(folder)))


def local_folder(output: str | Path) -> Path:
    """Where the output's local state lives (index, commit lock): the output folder itself,
    or, for a table on a store, its cache folder (made on first use, with the table's URI
    written in it for whoever looks)."""
    if not is_remote(output):
        return Path(output)
    uri = str(output).rstrip("/")
    folder = cache_root() / "tables" / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if not (folder / "table.txt").is_file():
        with writing(folder, "the table's local cache"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "table.txt").write_text(uri + "\n")
    return folder


def cache_id(output: str | Path) -> str | None:
    """The identity of this machine's cache of a table on a store (None for a local table,
    whose one index every writer shares): commits name it, so a cache tells the commits it
    recorded from those of other machines, which it must not trust its marks across. The host
    name is part of it, so a cache folder copied to another machine is another cache there."""
    if not is_remote(output):
        return None
    path = local_folder(output) / _CACHE_ID
    try:
        return f"{path.read_text().strip()}@{socket.gethostname()}"
    except FileNotFoundError:
        pass
    new = uuid.uuid4().hex
    tmp = path.with_name(f".{_CACHE_ID}.{new}")
    with writing(path, "the table's local cache"):
        tmp.write_text(new)
        try:
            os.link(tmp, path)  # the first writer's id wins; the others read it
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return f"{path.read_text().strip()}@{socket.gethostname()}"


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file beside the table whole: on a store, one PUT (atomic: a reader sees the old
    object or the new one); locally, a temporary file and a rename."""
    if not is_remote(path):
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        with writing(target, "the file"):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return
    filesystem, key = objects.resolve(str(path))
    with writing(str(path), "the object"), filesystem.open_output_stream(key) as stream:
        stream.write(data)


def read_bytes(path: str | Path) -> bytes:
    """A file (or object) beside the table; FileNotFoundError when there is none."""
    if not is_remote(path):
        return Path(path).read_bytes()
    filesystem, key = objects.resolve(str(path))
    try:
        with filesystem.open_input_stream(key) as stream:
            return stream.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if "NoSuchKey" in str(exc) or "does not exist" in str(exc).lower():
            raise FileNotFoundError(str(path)) from exc
        raise


def listing(folder: str | Path, suffix: str) -> list[str]:
    """The files (or objects) directly in a folder beside the table whose names end with
    ``suffix``, sorted; [] when there is none."""
    if not is_remote(folder):
        return sorted(str(p) for p in Path(folder).glob(f"*{suffix}"))
    from pyarrow import fs

    scheme = str(folder).split("://", 1)[0]
    return sorted(
        f"{scheme}://{info.path}"
        for info in _children(str(folder))
        if info.type == fs.FileType.File and info.path.endswith(suffix)
    )


def _children(prefix: str) -> list:
    """What lies directly under a prefix on a store (pyarrow ``FileInfo``s; [] if nothing)."""
    from pyarrow import fs

    filesystem, key = objects.resolve(prefix)
    return filesystem.get_file_info(fs.FileSelector(key, recursive=False, allow_not_found=True))


def name(path: str | Path) -> str:
    """A path's or URI's last part."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def has_log(output: str | Path) -> bool:
    """Whether the output holds a Delta table (its ``_delta_log`` has a commit)."""
    if not is_remote(output):
        return (Path(output) / "_delta_log").is_dir()
    from deltalake import DeltaTable

    from batch.output.readable import TableError

    try:
        return DeltaTable.is_deltatable(str(output))
    except OSError as exc:
        raise TableError(
            f"{output}: cannot reach the table's store ({_store_reason(exc)})"
        ) from exc


def _store_reason(exc: BaseException) -> str:
    """The innermost reason of an object_store error chain ("Connection refused"), whose
    first line only says "Generic S3 error"."""
    text = str(exc)
    if "NoSuchBucket" in text:
        return "no such bucket"
    if "AccessDenied" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
        return "access denied: check the credentials (AWS_* variables, ~/.aws, role)"
    lines = [re.sub(r"\x1b\[[0-9;]*m|↳", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("<")]
    return lines[-1] if lines else type(exc).__name__


def holds_anything(output: str) -> list[str]:
    """Names of what lies under a prefix on a store that is not the tool's (no ``_`` or
    ``.``), at its top level: a prefix of other data is no place for a table."""
    names = [info.base_name for info in _children(output)]
    return sorted(n for n in names if not hidden(n))


def canonical(output: str | Path) -> str:
    """One spelling per output: a store's URI without a trailing /, a folder's absolute path."""
    if is_remote(output):
        return str(output).rstrip("/")
    return str(Path(output).resolve())


def size(path: str | Path) -> int:
    """A file's (or object's) size in bytes."""
    if not is_remote(path):
        return Path(path).stat().st_size
    filesystem, key = objects.resolve(str(path))
    return int(filesystem.get_file_info(key).size or 0)


def check_writable(output: str | Path) -> None:
    """Fail before any model work if the output folder cannot be created and written (for a
    table on a store: the store, with conditional writes, and the table's local cache)."""
    if is_remote(output):
        from batch.output.object_claims import check_store

        check_store(str(output))
    folder = local_folder(output) / "_locks"
    probe = folder / f".probe-{os.getpid()}"
    with writing(output, "the output folder"):
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
