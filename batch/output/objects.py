"""Inputs on object storage (``s3://``, ``gs://``, ``az://``...), through pyarrow's filesystems.

pyarrow speaks each store's own API (S3's through the AWS SDK), so credentials, region and
endpoint come from the store's standard chain: for S3, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` or ``~/.aws``, ``AWS_REGION``, and
``AWS_ENDPOINT_URL`` for an S3-compatible store (MinIO, Ceph). A URI never carries them:
one with a user part or a query is refused, so nothing secret reaches the table or a manifest.

An object's change stamp is its size, its modification time (whole seconds on S3) and its
ETag, which changes with every write whatever the times say.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from batch.errors import InputError, UsageError

SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss", "hdfs")
_READ_BLOCK = 1 << 22


@dataclass(frozen=True)
class ObjectStat:
    """What says whether an object changed, without reading it."""

    size: int
    mtime_ns: int
    etag: str = ""


def is_uri(spec: str) -> bool:
    """Whether an ``--input`` (or a path in the table) names an object store."""
    scheme, sep, _ = str(spec).partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def check_uri(uri: str) -> str:
    """Refuse a URI that carries credentials or options (they belong in the environment)."""
    parts = urlsplit(uri)
    if "@" in parts.netloc or parts.query:
        raise UsageError(
            f"{parts.scheme}://{parts.hostname or ''}/...: credentials and options go in the "
            "environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws...), not in the URI, so "
            "that they never reach the table or a run's manifest"
        )
    return uri


@lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str) -> Any:
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds here
        raise InputError(f"{scheme}://{bucket}: cannot reach this store ({exc})") from exc


def resolve(uri: str) -> tuple[Any, str]:
    """The filesystem that holds ``uri`` and the object's path in it (``bucket/key``)."""
    parts = urlsplit(check_uri(uri))
    path = (parts.netloc + parts.path).rstrip("/")
    return _filesystem(parts.scheme.lower(), parts.netloc), path


def list_files(uri: str) -> list[str]:
    """Every object below a prefix (at any depth), as URIs, sorted; [] when there is none."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    scheme = uri.split("://", 1)[0]
    try:
        selector = fs.FileSelector(path, recursive=True, allow_not_found=True)
        infos = filesystem.get_file_info(selector)
    except OSError as exc:
        raise InputError(f"{uri}: cannot list ({exc})") from exc
    return sorted(f"{scheme}://{info.path}" for info in infos if info.type == fs.FileType.File)


def is_object(uri: str) -> bool:
    """Whether ``uri`` names one object (else it may be a prefix)."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    try:
        return filesystem.get_file_info(path).type == fs.FileType.File
    except OSError as exc:
        raise InputError(f"{uri}: cannot reach ({exc})") from exc


def stat(uri: str) -> ObjectStat:
    """Size, modification time and ETag, from one HEAD request's headers."""
    filesystem, path = resolve(uri)
    try:
        with filesystem.open_input_file(path) as handle:
            headers = {_text(k): _text(v) for k, v in handle.metadata().items()}
            size = handle.size()
        mtime_ns = _iso_ns(headers.get("Last-Modified", ""))
        if mtime_ns is None:  # a store that names the time otherwise: one more request
            mtime_ns = filesystem.get_file_info(path).mtime_ns
    except OSError as exc:
        raise InputError(f"{uri}: cannot read ({exc})") from exc
    return ObjectStat(size, int(mtime_ns or 0), headers.get("ETag", "").strip('"'))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _iso_ns(stamp: str) -> int | None:
    """pyarrow's ISO 8601 ``Last-Modified`` as nanoseconds since the epoch (None if not)."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def open_random(uri: str) -> Any:
    """A seekable pyarrow file (Parquet reads its footer, then the pages it needs)."""
    filesystem, path = resolve(uri)
    try:
        return filesystem.open_input_file(path)
    except OSError as exc:
        raise InputError(f"{uri}: cannot open ({exc})") from exc


def sha256(uri: str) -> str:
    """The object's bytes hashed as they stream in."""
    import hashlib

    filesystem, path = resolve(uri)
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path) as stream:
        while block := stream.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()
