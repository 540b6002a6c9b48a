"""Work claims on an object store: the same leases as ``output.claims``, as objects under
``s3://.../labels/_claims/``, made safe by the store's conditional writes instead of a POSIX
filesystem's exclusive create and rename.

- a claim is created with ``If-None-Match: *``: of two runs, one creates it, the other is
  refused (412) and reads who holds it;
- its holder renews it with ``If-Match: <its ETag>`` (a new write moves its Last-Modified
  time); a renewal that is refused means another run took the claim over as stale;
- a stale claim is taken over with ``If-Match`` on the ETag read: one taker wins;
- its age is the store's clock (the response's ``Date`` against ``Last-Modified``), so the
  machines' clocks need not agree.

S3 (and MinIO, Ceph, moto) answer a conditional write that lost with 412 Precondition Failed,
or 409 ConditionalRequestConflict while another conditional write to the key is under way.
The client is boto3 (``pip install 'safeguard-batch[s3]'``), with the standard AWS chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batch.errors import OutputError, UsageError
from batch.output.claims import CLAIMS_DIR, LEASE_SECONDS, Claims, _holder
from batch.output.objects import is_uri

log = logging.getLogger(__name__)
_LOST = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


@lru_cache(maxsize=1)
def client() -> Any:
    """One S3 client per process, from the standard AWS configuration chain."""
    try:
        import boto3
    except ImportError as exc:
        raise UsageError(
            "a label table on S3 needs boto3 for its work claims: pip install 'safeguard-batch[s3]'"
        ) from exc
    return boto3.client("s3")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _lost(exc: Exception) -> bool:
    """A conditional write another writer won (or is winning)."""
    return _code(exc) in _LOST


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("NoSuchKey", "404", "NotFound")


def _age(response: dict[str, Any]) -> float:
    """Seconds since an object was last written, by the store's clock (its ``Date`` header
    against ``Last-Modified``), so that machines' clocks need not agree."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    if "date" not in headers:  # a store that does not say: this machine's clock
        return time.time() - response["LastModified"].timestamp()
    return (parsedate_to_datetime(headers["date"]) - response["LastModified"]).total_seconds()


class ObjectClaims(Claims):
    """The claims one run holds on a table on S3, renewed by a background thread."""

    def __init__(
        self,
        output: str,
        run_id: str,
        lease: float = LEASE_SECONDS,
        worker: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(output, run_id, lease, worker)
        parts = urlsplit(str(output).rstrip("/"))
        self.bucket = parts.netloc
        self.prefix = f"{parts.path.strip('/')}/{CLAIMS_DIR}"
        self.etags: dict[str, str] = {}  # key -> the ETag of this run's claim object

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{hashlib.sha256(key.encode()).hexdigest()[:32]}.claim"

    def _call(self, what: str, action, **kwargs) -> Any:
        try:
            return action(Bucket=self.bucket, **kwargs)
        except Exception as exc:  # botocore's errors (a refusal, no network) are not OSErrors
            if _lost(exc) or _missing(exc):
                raise
            raise OutputError(
                f"s3://{self.bucket}/{self.prefix}: cannot {what} a work claim ({exc})"
            ) from exc

    def _read(self, key: str) -> tuple[dict[str, Any] | None, float, str] | None:
        """(holder, age in seconds by the store's clock, ETag) of a claim; None: no claim."""
        try:
            got = self._call("read", client().get_object, Key=self._object(key))
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        body = got["Body"].read().decode(errors="replace")
        return _holder(body), _age(got), got["ETag"]

    def holder(self, key: str) -> dict[str, Any] | None:
        found = self._read(key)
        if found is None:
            return None
        holder, age, _ = found
        if self._stale(age, holder):
            return None
        return holder or {"run_id": "a run whose claim is being written"}

    def _put(self, key: str, **condition: str) -> str | None:
        """Write this run's claim under a condition; its ETag, or None if another won."""
        body = json.dumps({**self.me, "key": key}).encode()
        try:
            put = self._call("write", client().put_object, Key=self._object(key), Body=body,
                             **condition)  # fmt: skip
        except Exception as exc:
            if _lost(exc):
                return None
            raise
        return put["ETag"]

    def _claim(self, key: str) -> bool:
        for _ in range(3):
            etag = self._put(key, IfNoneMatch="*")
            if etag is None:
                found = self._read(key)
                if found is None:
                    continue  # released meanwhile: try again
                holder, age, old = found
                if not self._stale(age, holder):
                    return False
                etag = self._put(key, IfMatch=old)  # take it over: one taker wins
                if etag is None:
                    continue
            with self._lock:
                self.held[key] = self._object(key)  # type: ignore[assignment]
                self.etags[key] = etag
            return True
        return False

    def released(self, key: str) -> bool:
        try:
            self._call("read", client().head_object, Key=self._object(key))
        except Exception as exc:
            if _missing(exc):
                return True
            raise
        return False

    def release(self, key: str) -> None:
        with self._lock:
            self.held.pop(key, None)
            etag = self.etags.pop(key, None)
        if etag is None:
            return
        try:  # only this run's claim: one taken over since belongs to its taker
            self._call("delete", client().delete_object, Key=self._object(key), IfMatch=etag)
        except Exception as exc:
            if not (_lost(exc) or _missing(exc)):
                raise

    def refresh(self) -> None:
        with self._lock:
            held = dict(self.etags)
        for key, etag in held.items():
            try:
                renewed = self._put(key, IfMatch=etag)
            except Exception as exc:  # noqa: BLE001 - a store that blinked: next beat again
                log.warning("cannot renew the work claim on %s: %s", key, exc)
                continue
            with self._lock:
                if key not in self.etags:
                    continue  # released meanwhile
                if renewed is None:  # taken over as stale: this run's lease lapsed
                    log.warning("work claim on %s was taken over by another run", key)
                    self.etags.pop(key, None)
                    self.held.pop(key, None)
                else:
                    self.etags[key] = renewed


def check_store(output: str) -> None:
    """Fail before any model work if the table's store cannot be written, or ignores
    conditional writes (``If-None-Match``): then neither delta-rs's commits nor the claims
    would be safe with two writers, and the tool refuses rather than lose labels."""
    parts = urlsplit(output.rstrip("/"))
    key = f"{parts.path.strip('/')}/_locks/.probe-{uuid.uuid4().hex}"
    where = f"s3://{parts.netloc}/{key}"
    s3 = client()
    try:
        s3.put_object(Bucket=parts.netloc, Key=key, Body=b"probe", IfNoneMatch="*")
    except Exception as exc:
        raise OutputError(f"{where}: cannot write to the table's store ({exc})") from exc
    try:
        s3.put_object(Bucket=parts.netloc, Key=key, Body=b"again", IfNoneMatch="*")
    except Exception as exc:
        if not _lost(exc):
            raise OutputError(f"{where}: cannot write to the table's store ({exc})") from exc
    else:
        raise OutputError(
            f"s3://{parts.netloc}: this store ignores conditional writes (If-None-Match), so "
            "two writers could overwrite each other's commits; use a store (or a release of it) "
            "that honours them, as AWS S3 does, or a local table"
        )
    finally:
        with contextlib.suppress(Exception):
            s3.delete_object(Bucket=parts.netloc, Key=key)


def open_claims(
    output: str | Path,
    run_id: str,
    lease: float = LEASE_SECONDS,
    worker: tuple[int, int] | None = None,
) -> Claims:
    """The claims of a run on this output: files, or objects for a table on a store."""
    if is_uri(str(output)):
        return ObjectClaims(str(output), run_id, lease, worker)
    return Claims(output, run_id, lease, worker)


def create_once(output: str, create: Callable[[], None], exists: Callable[[], bool]) -> None:
    """Create the table on the store unless another machine does: a CREATE that loses the
    race for version 0 is committed by delta-rs as version 1, a second CREATE TABLE with a new
    table id, so the creators first race for a marker object (``If-None-Match: *``). The
    others wait for the winner's table; a marker left by a creator that died is taken over
    (``If-Match``) once it is older than a lease."""
    parts = urlsplit(output.rstrip("/"))
    key = f"{parts.path.strip('/')}/_locks/create"
    s3 = client()
    deadline = time.monotonic() + 2 * LEASE_SECONDS
    while not exists():
        try:
            s3.put_object(Bucket=parts.netloc, Key=key, Body=b"creating", IfNoneMatch="*")
        except Exception as exc:
            if not _lost(exc):
                raise OutputError(f"s3://{parts.netloc}/{key}: cannot write ({exc})") from exc
            got = s3.head_object(Bucket=parts.netloc, Key=key)
            if _age(got) > LEASE_SECONDS:
                with contextlib.suppress(Exception):  # its creator died: one taker removes it
                    s3.delete_object(Bucket=parts.netloc, Key=key, IfMatch=got["ETag"])
            if time.monotonic() > deadline:
                raise OutputError(
                    f"{output}: another run is creating the table, and did not"
                ) from exc
            time.sleep(0.5)
            continue
        create()
        return
