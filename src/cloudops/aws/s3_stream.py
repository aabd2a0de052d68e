"""Streaming S3 transfers with bounded memory and our own SHA-256 verification.

Cross-account: the source is read with the source account's client, the destination is
written with the destination's (no bucket policy needed, ECR-NOTES.md "S3"). The source is
read as ONE sequential GET (moto re-reads the whole object for every ranged GET, and a
single stream is as fast as S3 gives one connection); a broken stream resumes with a ranged
GET from where it stopped. Parts go up in parallel, at most ``workers`` in flight, so memory
stays near (workers + 1) x part_size. The whole stream is hashed as it passes; a multipart
upload is completed only when the hash equals the expected one, and aborted on any failure
(so no orphaned upload and no half-written object). Modelled on s3transfer's split:
botocore retries calls, this module only retries a stream that broke mid-way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import botocore.exceptions

from cloudops.errors import CloudopsError

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_THRESHOLD = 16 * MiB  # = part size: a single PUT holds at most one part in memory
MAX_PARTS = 10_000


class ChecksumMismatchError(CloudopsError):
    """Bytes whose SHA-256 is not the one recorded for them: a corrupt source."""


class TransferError(CloudopsError):
    """An S3 transfer failed; nothing was left at the destination key."""


@dataclass(frozen=True)
class TransferSettings:
    multipart_threshold: int = DEFAULT_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    workers: int = 4
    stream_retries: int = 3

    def part_size_for(self, size: int) -> int:
        """S3 allows 10,000 parts: grow the part for huge objects."""
        part = max(self.part_size, 5 * MiB)
        while size // part >= MAX_PARTS:
            part *= 2
        return part


@dataclass
class UploadOutcome:
    sha256: str
    size: int
    parts: int


ProgressCallback = Callable[[int], None]


def _what(exc: BaseException) -> str:
    """An AWS failure in words: the error code and message S3 gave, never a key."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {str(error.get('Message', ''))[:200]}"
    return type(exc).__name__


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _read_block(stream: Callable[[int], bytes], size: int) -> bytes:
    """Exactly ``size`` bytes, fewer only at the end. A network read can come back short,
    and S3 refuses a part under 5 MiB that is not the last: fill the block, copying only
    when a read was short (a full first read is passed on as it is)."""
    first = stream(size)
    if len(first) >= size or not first:
        return first
    pieces = [first]
    got = len(first)
    while got < size:
        block = stream(size - got)
        if not block:
            break
        pieces.append(block)
        got += len(block)
    return b"".join(pieces)


def upload_stream(
    client: Any,
    bucket: str,
    key: str,
    read: Callable[[int], bytes],
    size: int,
    *,
    expected_sha256: str | None,
    metadata: dict[str, str],
    settings: TransferSettings,
    progress: ProgressCallback | None = None,
) -> UploadOutcome:
    """Upload ``size`` bytes from ``read`` to bucket/key. With ``expected_sha256``, the
    object is committed only when the bytes hash to it."""
    if size < settings.multipart_threshold:
        body = _read_block(read, size + 1)
        hasher = hashlib.sha256(body)
        _check(hasher.hexdigest(), len(body), expected_sha256, size, key)
        try:
            client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                Metadata=metadata,
                ChecksumSHA256=_b64(hasher.digest()),
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise TransferError(f"upload of s3://{bucket}/{key} failed: {_what(exc)}") from None
        if progress:
            progress(len(body))
        return UploadOutcome(hasher.hexdigest(), len(body), 1)
    return _multipart(client, bucket, key, read, size, expected_sha256, metadata, settings, progress)


def _multipart(
    client: Any,
    bucket: str,
    key: str,
    read: Callable[[int], bytes],
    size: int,
    expected_sha256: str | None,
    metadata: dict[str, str],
    settings: TransferSettings,
    progress: ProgressCallback | None,
) -> UploadOutcome:
    part_size = settings.part_size_for(size)
    try:
        upload_id = client.create_multipart_upload(
            Bucket=bucket, Key=key, Metadata=metadata, ChecksumAlgorithm="SHA256"
        )["UploadId"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise TransferError(f"starting the upload of s3://{bucket}/{key} failed: {_what(exc)}") from None
    hasher = hashlib.sha256()
    slots = threading.BoundedSemaphore(settings.workers)
    futures: list[Future[dict[str, Any]]] = []
    total = 0

    def send(number: int, block: bytes) -> dict[str, Any]:
        try:
            checksum = _b64(hashlib.sha256(block).digest())
            answer = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=block,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
            if progress:
                progress(len(block))
            return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
        finally:
            slots.release()

    try:
        with ThreadPoolExecutor(max_workers=settings.workers) as pool:
            number = 0
            while True:
                # Take a slot BEFORE reading the next part: at most `workers` parts exist.
                slots.acquire()
                block = _read_block(read, part_size)
                if not block:
                    slots.release()
                    break
                number += 1
                hasher.update(block)
                total += len(block)
                futures.append(pool.submit(send, number, block))
                del block
                if any(f.done() and f.exception() for f in futures) or total >= size + 1:
                    break
            parts = [f.result() for f in futures]
        _check(hasher.hexdigest(), total, expected_sha256, size, key)
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException as exc:
        # Never leave an orphaned upload (it is billed and invisible): abort on anything,
        # KeyboardInterrupt included. A kill -9 is cleaned by abort_stale_uploads next run.
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        if isinstance(exc, CloudopsError | KeyboardInterrupt):
            raise
        if isinstance(exc, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
            raise TransferError(
                f"upload of s3://{bucket}/{key} failed: {_what(exc)}",
                hint="nothing was written; run again",
            ) from None
        raise
    return UploadOutcome(hasher.hexdigest(), total, len(futures))


def _check(actual: str, got: int, expected: str | None, size: int, key: str) -> None:
    if got != size:
        raise ChecksumMismatchError(
            f"{key}: read {got} bytes, expected {size}",
            hint="the source changed or was truncated; nothing was written",
        )
    if expected is not None and actual != expected:
        raise ChecksumMismatchError(
            f"{key}: content hashes to sha256:{actual[:16]}…, "
            f"but its recorded checksum is sha256:{expected[:16]}…",
            hint="the source object is corrupt; nothing was written at the destination",
        )


def abort_stale_uploads(client: Any, bucket: str, key: str) -> int:
    """Abort multipart uploads left for ``key`` by a killed run. Returns how many."""
    aborted = 0
    try:
        answer = client.list_multipart_uploads(Bucket=bucket, Prefix=key)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return 0
    for upload in answer.get("Uploads", []) or []:
        if upload.get("Key") != key:
            continue
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
            aborted += 1
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            pass
    return aborted


class ResumingReader:
    """A sequential reader of an S3 object that resumes a broken stream with a ranged GET
    from the offset it reached, up to ``retries`` times."""

    def __init__(
        self, client: Any, bucket: str, key: str, *, version_id: str | None = None, retries: int = 3
    ):
        self._client, self._bucket, self._key = client, bucket, key
        self._version = version_id
        self._retries = retries
        self._offset = 0
        self._body: Any = None

    def _open(self) -> None:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        if self._version:
            params["VersionId"] = self._version
        if self._offset:
            params["Range"] = f"bytes={self._offset}-"
        self._body = self._client.get_object(**params)["Body"]

    def read(self, size: int) -> bytes:
        for attempt in range(self._retries + 1):
            try:
                if self._body is None:
                    self._open()
                block: bytes = self._body.read(size)
                self._offset += len(block)
                return block
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
                self._body = None
                if attempt == self._retries:
                    raise TransferError(
                        f"reading s3://{self._bucket}/{self._key} broke at byte {self._offset}: {_what(exc)}",
                        hint="the network dropped the stream and retries ran out; run again",
                    ) from None
        return b""

    def close(self) -> None:
        if self._body is not None:
            self._body.close()


def file_reader(handle: BinaryIO) -> Callable[[int], bytes]:
    return handle.read
