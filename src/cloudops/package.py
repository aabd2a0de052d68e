"""Publishing and promoting the deployment package: published once into the build
account's bucket, then propagated stage by stage into every account's own bucket. The
file is inspected by package_archive.py, each account's versions and current pointer
kept by package_store.py.

A version is never overwritten; ``current.json`` moves only after the new version is fully
there and its bytes were read back and hashed by our own code (moto and S3 multipart do
not give a whole-object SHA-256 to trust, ECR-NOTES.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cloudops.aws.guard import require_account
from cloudops.aws.s3_lock import KeyLock
from cloudops.aws.s3_stream import (
    ChecksumMismatchError,
    ResumingReader,
    TransferSettings,
    abort_stale_uploads,
    upload_stream,
)
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.package_archive import inspect_package, validate_version
from cloudops.package_store import InvalidPointerError, PackageStore, StoredPackage, store_for
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.records import PromotionRecord, RecordResult
from cloudops.pipeline.stages import Route, promotion_route, require_outside_release_approval

PackageStatus = Literal[
    "published", "already-published", "promoted", "already-promoted", "planned", "failed", "refused"
]


@dataclass
class PackageResult:
    account: str
    version: str
    status: PackageStatus
    sha256: str = ""
    size: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    source_account: str | None = None
    pointer_moved: bool = False
    error: CloudopsError | None = None

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "refused")

    def as_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "source_account": self.source_account,
            "version": self.version,
            "status": self.status,
            "sha256": self.sha256,
            "size": self.size,
            "bytes_uploaded": self.bytes_uploaded,
            "current_moved": self.pointer_moved,
            "seconds": round(self.seconds, 3),
            "error": str(self.error) if self.error else None,
        }


def publish_package(
    context: PipelineContext,
    path: Path,
    version: str,
    *,
    settings: TransferSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> PackageResult:
    """Check FILE, then upload it into the build account's bucket as ``version`` and make
    it current. A version is immutable: the same bytes again is success with no write,
    other bytes under an existing version are refused."""
    started = time.monotonic()
    validate_version(version)
    package = inspect_package(path)
    build = context.pipeline.build_account
    store = store_for(context, build)
    require_account(store.session, purpose=f"publish the package into {build!r}")
    result = PackageResult(build, version, "published", package.sha256, package.size)
    existing = store.stored(version)
    if existing is not None:
        if existing.sha256 != package.sha256:
            raise RefusedError(
                f"package version {version} already exists in {build!r} with other content "
                f"(sha256 {existing.sha256[:16]}…)",
                hint="versions are immutable: publish under a new version",
            )
        result.status = "already-published"
    else:
        key = store.version_key(version)
        with KeyLock(store.client, store.bucket.name, key + ".lock", what=f"package {version} in {build!r}"):
            abort_stale_uploads(store.client, store.bucket.name, key)
            with path.open("rb") as handle:
                upload_stream(
                    store.client,
                    store.bucket.name,
                    key,
                    handle.read,
                    package.size,
                    expected_sha256=package.sha256,
                    metadata={"sha256": package.sha256, "version": version},
                    settings=settings or context.transfer,
                    progress=progress,
                )
            _verify_or_delete(store, key, package.sha256, package.size)
        result.bytes_uploaded = package.size
    stored = StoredPackage(version, store.version_key(version), package.size, package.sha256)
    if (_current_or_none(store) or {}).get("version") != version:
        store.move_current(stored)
        result.pointer_moved = True
    result.seconds = time.monotonic() - started
    return result


def _current_or_none(store: PackageStore) -> dict[str, str] | None:
    """The pointer where it is about to be moved anyway: an invalid one counts as none
    (it is replaced by a valid one)."""
    try:
        return store.current()
    except InvalidPointerError:
        return None


def _verify_or_delete(store: PackageStore, key: str, sha256: str, size: int) -> None:
    """Read the new object back and hash it: only then may the pointer move to it."""
    actual, got = store.read_back_sha256(key)
    if actual != sha256 or got != size:
        store.delete(key)
        raise ChecksumMismatchError(
            f"s3://{store.bucket.name}/{key} reads back as {got} bytes with sha256 {actual[:16]}…, "
            f"not {size} bytes with {sha256[:16]}…",
            hint="the upload was corrupted and has been removed; run again",
        )


def promote_package(
    context: PipelineContext,
    to: str,
    *,
    version: str | None = None,
    source: str | None = None,
    dry_run: bool = False,
    settings: TransferSettings | None = None,
    progress: Callable[[int], None] | None = None,
    record: bool = True,
    of_release: bool = False,
    move_current: bool = True,
    expected_sha256: str | None = None,
) -> PackageResult:
    """Copy a package version from the previous stage's bucket into ``to``'s bucket
    (source read with the source's credentials, destination written with its own),
    verify it, then move ``to``'s current pointer (unless ``move_current`` is False: a
    release whose images failed copies its package version but leaves the pointer, so it
    keeps naming the account's current release's package). ``of_release``: part of a
    release that passed its gates; otherwise a stage that requires approvals refuses a
    package alone."""
    started = time.monotonic()
    if version is not None:
        validate_version(version)  # bad input is refused before any account is touched
    route = promotion_route(context.pipeline, to, source)
    if not of_release and not dry_run:
        require_outside_release_approval(context.pipeline, route.destination, "a deployment package")
    destination = store_for(context, route.destination)
    arn = require_account(destination.session, purpose=f"promote the package into {to!r}")
    origin = store_for(context, route.source)
    require_account(origin.session, purpose=f"read the package from {route.source!r}")
    if version is None:
        try:
            pointer = origin.current()
        except InvalidPointerError as error:
            raise InputError(
                f"account {route.source!r} has no valid current deployment package: {error.message}",
                hint="pass --version V, or re-publish the package in the source account",
            ) from None
        if pointer is None or "version" not in pointer:
            raise InputError(
                f"account {route.source!r} has no current deployment package",
                hint="publish one with `cloudops package publish FILE --version V`, or pass --version",
            )
        version = pointer["version"]
    validate_version(version)
    result = PackageResult(to, version, "planned", source_account=route.source)
    try:
        _promote_package(
            origin,
            destination,
            route,
            version,
            result,
            dry_run,
            settings or context.transfer,
            progress,
            move_current,
            expected_sha256,
        )
    except CloudopsError as error:
        result.status = "refused" if error.kind == "refused" else "failed"
        result.error = error
    result.seconds = time.monotonic() - started
    if result.error is not None and result.error.kind == "input":
        raise result.error  # bad input writes nothing, not even a record
    if record and not dry_run:
        _record(context, result, arn)
    return result


def _promote_package(
    origin: PackageStore,
    destination: PackageStore,
    route: Route,
    version: str,
    result: PackageResult,
    dry_run: bool,
    settings: TransferSettings,
    progress: Callable[[int], None] | None,
    move_current: bool,
    expected_sha256: str | None,
) -> None:
    source = origin.stored(version)
    if source is None:
        raise InputError(
            f"package version {version} does not exist in account {route.source!r}",
            hint=f"versions there: {', '.join(sorted(p.version for p in origin.versions())) or 'none'}",
        )
    if not re.fullmatch(r"[0-9a-f]{64}", source.sha256):
        raise ChecksumMismatchError(
            f"package {version} in {route.source!r} carries no recorded sha256",
            hint="re-publish it with `cloudops package publish` so its checksum is recorded",
        )
    if expected_sha256 is not None and source.sha256 != expected_sha256:
        # A release's plan named these bytes (and was approved for them): other bytes under
        # the version since are never copied in its name.
        raise RefusedError(
            f"package {version} in {route.source!r} now has sha256 {source.sha256[:16]}…, not the "
            f"{expected_sha256[:16]}… the plan names",
            hint="the source changed after planning: make a new plan (and have it approved)",
        )
    result.sha256, result.size = source.sha256, source.size
    present = destination.stored(version)
    pointer = _current_or_none(destination) or {}  # an invalid pointer is moved over
    if present is not None and present.sha256 != source.sha256:
        raise RefusedError(
            f"package version {version} in {route.destination!r} has other content than in {route.source!r}",
            hint="versions never change: publish and promote a new version",
        )
    if dry_run:
        result.status = "planned"
        return
    if present is None:
        key = destination.version_key(version)
        lock = KeyLock(
            destination.client,
            destination.bucket.name,
            key + ".lock",
            what=f"package {version} in {route.destination!r}",
        )
        with lock:
            if destination.stored(version) is None:  # a run that held the lock may have finished
                # Safe under the lock: any upload still open for this key is a killed run's.
                abort_stale_uploads(destination.client, destination.bucket.name, key)
                reader = ResumingReader(origin.client, origin.bucket.name, source.key)
                try:
                    upload_stream(
                        destination.client,
                        destination.bucket.name,
                        key,
                        reader.read,
                        source.size,
                        expected_sha256=source.sha256,
                        metadata={
                            "sha256": source.sha256,
                            "version": version,
                            "source-account": route.source,
                        },
                        settings=settings,
                        progress=progress,
                    )
                finally:
                    reader.close()
                _verify_or_delete(destination, key, source.sha256, source.size)
                result.bytes_uploaded = source.size
                result.status = "promoted"
            else:
                result.status = "already-promoted"
    else:
        result.status = "already-promoted"
    if not move_current:
        return  # the version is there; the pointer stays where it is (the caller's choice)
    if pointer.get("version") != version or pointer.get("sha256") != source.sha256:
        destination.move_current(
            StoredPackage(version, destination.version_key(version), source.size, source.sha256)
        )
        result.pointer_moved = True


def _record(context: PipelineContext, result: PackageResult, arn: str) -> None:
    if result.status == "planned" or result.source_account is None:
        return
    pipeline = context.pipeline
    status: RecordResult = {
        "promoted": "promoted",
        "already-promoted": "already-promoted",
        "refused": "refused",
    }.get(result.status, "failed")  # type: ignore[assignment]
    history.append(
        context,
        PromotionRecord.new(
            kind="package",
            who=history.who_am_i(arn),
            source_account=result.source_account,
            source_account_id=pipeline.account(result.source_account).account_id,
            destination_account=result.account,
            destination_account_id=pipeline.account(result.account).account_id,
            version=result.version,
            source_digest=f"sha256:{result.sha256}" if result.sha256 else None,
            bytes=result.bytes_uploaded,
            seconds=result.seconds,
            result=status,
            error=str(result.error) if result.error else None,
        ),
    )
