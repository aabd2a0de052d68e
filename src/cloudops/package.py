"""The deployment package: a zip with webapps/, database/ and tools/ (tools/ holds the Data
Population Tool that creates or updates the RDS database). Published once into the build
account's bucket, then propagated stage by stage into every account's own bucket.

Layout in each bucket, for pipeline key ``deployment-package/ext-deployment-package.zip``:

    deployment-package/versions/<V>/ext-deployment-package.zip   immutable, per version,
                                                                 metadata: version, sha256
    deployment-package/current.json                              {"version", "sha256", "key"}

A version is never overwritten; ``current.json`` moves only after the new version is fully
there and its bytes were read back and hashed by our own code (moto and S3 multipart do
not give a whole-object SHA-256 to trust, ECR-NOTES.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import stat
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import botocore.exceptions
from pydantic import BaseModel, ConfigDict, StringConstraints

from cloudops.aws.guard import require_account
from cloudops.aws.s3 import AccountBucket
from cloudops.aws.s3_json import read_json_object
from cloudops.aws.s3_lock import KeyLock
from cloudops.aws.s3_stream import (
    ChecksumMismatchError,
    ResumingReader,
    TransferSettings,
    abort_stale_uploads,
    upload_stream,
)
from cloudops.aws.sessions import AccountSession, aws_error, object_missing
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.records import PromotionRecord, RecordResult
from cloudops.pipeline.stages import Route, promotion_route, require_outside_release_approval

VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
REQUIRED_DIRS = ("webapps/", "database/", "tools/")
READ_BLOCK = 1024 * 1024
# A zip is hostile input until checked. Far above any real deployment
# package (a few GiB of wars and SQL, a few thousand files), far below a zip bomb.
MAX_MEMBERS = 50_000
MAX_TOTAL_UNCOMPRESSED = 16 * 1024**3
MAX_RATIO = 100  # uncompressed : compressed, for a member over RATIO_FLOOR bytes
RATIO_FLOOR = 1024 * 1024
_DRIVE = re.compile(r"[A-Za-z]:")


class PackageError(InputError):
    """A deployment package file that is not what the pipeline needs."""


@dataclass(frozen=True)
class PackageFile:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class StoredPackage:
    version: str
    key: str
    size: int
    sha256: str


def validate_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise InputError(
            f"invalid package version {version!r}",
            hint="use 1-64 letters, digits, and . _ + - (e.g. 8.5.0 or 2026.11.28-1)",
        )
    return version


def inspect_package(path: Path) -> PackageFile:
    """Refuse anything but a readable zip with webapps/, database/ and tools/ holding the
    data-population CLI. Every member's CRC is checked (streamed), so a truncated or
    corrupt zip is caught before a byte is uploaded. The zip is hostile input: member
    names that would escape a folder when unpacked (absolute, C:, \\\\host, ..),
    symlinks, too many members, and a zip bomb (declared or actual uncompressed size, or
    compression ratio) are refused too."""
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            _check_members(path, archive.infolist())
            bad = _read_members(path, archive)
    except FileNotFoundError:
        raise PackageError(f"package file {path} does not exist") from None
    except IsADirectoryError:
        raise PackageError(f"{path} is a directory, not a package zip") from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        ValueError,
        RuntimeError,  # an encrypted member
        NotImplementedError,  # an unknown compression method
    ) as exc:
        raise PackageError(
            f"{path} is not a readable zip ({type(exc).__name__})",
            hint="the file is corrupt or truncated: rebuild the deployment package",
        ) from None
    if bad is not None:
        raise PackageError(
            f"{path} is corrupt: member {safe_member_name(bad)} fails its CRC or header check",
            hint="rebuild the package",
        )
    tops = {name.split("/", 1)[0] + "/" for name in names if "/" in name}
    missing = [d for d in REQUIRED_DIRS if d not in tops]
    if missing:
        raise PackageError(
            f"{path} lacks {', '.join(missing)} (a deployment package has webapps/, database/ and tools/)",
            hint="build the package with the Elastic Path deployment package build",
        )
    if not any(n.startswith("tools/") and "data-population" in n for n in names):
        raise PackageError(
            f"{path}: tools/ holds no data-population CLI",
            hint="the package must carry the Data Population Tool under tools/",
        )
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(READ_BLOCK), b""):
            hasher.update(block)
    return PackageFile(path, size, hasher.hexdigest())


def safe_member_name(name: str) -> str:
    """A member name as it may be put in a message: quoted, with control and invisible
    characters escaped (repr does: ESC, \\r, bidi overrides), cut short (it is the zip
    author's text). Markup is the printing layer's to escape."""
    return repr(name[:200] + ("..." if len(name) > 200 else ""))


def _refuse_member(path: Path, name: str, why: str) -> PackageError:
    return PackageError(
        f"{path}: member {safe_member_name(name)} {why}",
        hint="rebuild the deployment package with the Elastic Path build; do not publish this file",
    )


def _check_members(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """What the central directory says, before a byte of content is read."""
    if len(members) > MAX_MEMBERS:
        raise PackageError(
            f"{path} has {len(members)} members (more than {MAX_MEMBERS}): not a deployment package",
            hint="rebuild the deployment package with the Elastic Path build",
        )
    declared = 0
    seen: set[str] = set()
    for info in members:
        name = info.filename
        parts = re.split(r"[/\\]", name)
        if name.startswith(("/", "\\")) or _DRIVE.match(name):
            raise _refuse_member(path, name, "has an absolute path (it would unpack outside its folder)")
        if ".." in parts:
            raise _refuse_member(path, name, "has a '..' path segment (it would unpack outside its folder)")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise _refuse_member(path, name, "has control characters in its name")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse_member(path, name, "is a symbolic link (a package holds files and folders only)")
        # Two members that unpack to one file (the same name, in another case or with "\\"
        # for "/"): which one is unpacked would depend on the unzip tool and the disk.
        unpacked = "/".join(p for p in name.casefold().replace("\\", "/").split("/") if p not in ("", "."))
        if unpacked in seen:
            raise _refuse_member(
                path, name, "has the same name as another member (which one is unpacked is not defined)"
            )
        seen.add(unpacked)
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _refuse_member(
                path,
                name,
                f"declares {info.file_size} bytes from {info.compress_size} compressed "
                f"(over {MAX_RATIO}:1): a zip bomb",
            )
        declared += info.file_size
        if declared > MAX_TOTAL_UNCOMPRESSED:
            raise _refuse_member(
                path,
                name,
                f"takes the declared uncompressed size over {MAX_TOTAL_UNCOMPRESSED} bytes: a zip bomb",
            )


def _read_members(path: Path, archive: zipfile.ZipFile) -> str | None:
    """Read every member to its end, checking its CRC (zipfile does at the end of each),
    and count the bytes that really come out: a header may lie about sizes. The name of
    the first member that fails its CRC, or None."""
    total = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        produced = 0
        try:
            with archive.open(info) as member:
                while block := member.read(READ_BLOCK):
                    produced += len(block)
                    total += len(block)
                    if produced > RATIO_FLOOR and produced > MAX_RATIO * max(info.compress_size, 1):
                        raise _refuse_member(
                            path, info.filename, f"inflates over {MAX_RATIO}:1 while read: a zip bomb"
                        )
                    if total > MAX_TOTAL_UNCOMPRESSED:
                        raise _refuse_member(
                            path,
                            info.filename,
                            f"takes the uncompressed size over {MAX_TOTAL_UNCOMPRESSED} bytes: a zip bomb",
                        )
        except zipfile.BadZipFile:
            return info.filename
    return None


class InvalidPointerError(InputError):
    """An account's current.json that is too large, not JSON or not a pointer (hostile
    input: whoever may write the bucket may write it)."""


class CurrentPointer(BaseModel):
    """current.json as :meth:`PackageStore.move_current` writes it; read back bounded."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    sha256: Annotated[str, StringConstraints(pattern=r"^(?:sha256:)?[0-9a-f]{64}$")]
    key: Annotated[str, StringConstraints(max_length=1024)] | None = None
    size: Annotated[str, StringConstraints(max_length=32)] | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class PackageStore:
    """One account's packages in its own bucket."""

    def __init__(self, session: AccountSession, bucket: str, package_key: str):
        self.session = session
        self.bucket = AccountBucket(session, bucket)
        pure = PurePosixPath(package_key)
        self.prefix = str(pure.parent) if str(pure.parent) != "." else ""
        self.filename = pure.name

    @property
    def client(self) -> Any:
        return self.bucket.client

    def version_key(self, version: str) -> str:
        return "/".join(p for p in (self.prefix, "versions", version, self.filename) if p)

    @property
    def pointer_key(self) -> str:
        return "/".join(p for p in (self.prefix, "current.json") if p)

    def stored(self, version: str) -> StoredPackage | None:
        key = self.version_key(version)
        try:
            head = self.client.head_object(Bucket=self.bucket.name, Key=key)
        except botocore.exceptions.ClientError as exc:
            if object_missing(exc):
                return None
            raise aws_error(exc, f"reading s3://{self.bucket.name}/{key}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"reading s3://{self.bucket.name}/{key}") from None
        sha = head.get("Metadata", {}).get("sha256", "")
        return StoredPackage(version, key, int(head["ContentLength"]), sha)

    def current(self) -> dict[str, str] | None:
        """The current pointer (``version``, ``sha256``, ...), or None when there is none.
        Read bounded and validated (aws/s3_json.py): a pointer that is too large, not
        JSON or not a valid pointer raises InvalidPointerError, never a crash."""
        where = f"s3://{self.bucket.name}/{self.pointer_key}"
        try:
            found = read_json_object(self.client, self.bucket.name, self.pointer_key, CurrentPointer)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NoSuchBucket"):
                return None
            raise aws_error(exc, f"reading {where}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"reading {where}") from None
        if found.value is None:
            raise InvalidPointerError(
                f"{where} is not a valid package pointer: {found.problem}",
                hint="move it again: `cloudops promote package --version V` "
                "(`cloudops package publish` in the build account)",
            )
        return found.value.as_dict()

    def versions(self) -> list[StoredPackage]:
        found: list[StoredPackage] = []
        prefix = "/".join(p for p in (self.prefix, "versions") if p) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket.name, Prefix=prefix):
                for item in page.get("Contents", []):
                    parts = item["Key"][len(prefix) :].split("/")
                    if len(parts) == 2 and parts[1] == self.filename:
                        stored = self.stored(parts[0])
                        if stored is not None:
                            found.append(stored)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) == "NoSuchBucket":
                return []
            raise aws_error(exc, f"listing packages in {self.bucket.name}") from None
        return found

    def move_current(self, stored: StoredPackage) -> None:
        doc = {
            "version": stored.version,
            "sha256": stored.sha256,
            "key": stored.key,
            "size": str(stored.size),
        }
        try:
            self.client.put_object(
                Bucket=self.bucket.name,
                Key=self.pointer_key,
                Body=json.dumps(doc).encode(),
                ContentType="application/json",
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"moving the current package pointer in {self.bucket.name}") from None

    def read_back_sha256(self, key: str) -> tuple[str, int]:
        reader = ResumingReader(self.client, self.bucket.name, key)
        hasher = hashlib.sha256()
        size = 0
        try:
            for block in iter(lambda: reader.read(READ_BLOCK * 8), b""):
                hasher.update(block)
                size += len(block)
        finally:
            reader.close()
        return hasher.hexdigest(), size

    def delete(self, key: str) -> None:
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            self.client.delete_object(Bucket=self.bucket.name, Key=key)


def store_for(context: PipelineContext, account: str) -> PackageStore:
    return PackageStore(
        context.session(account), context.pipeline.bucket(account), context.pipeline.deployment_package.key
    )


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
                    settings=settings or TransferSettings(),
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
) -> PackageResult:
    """Copy a package version from the previous stage's bucket into ``to``'s bucket
    (source read with the source's credentials, destination written with its own),
    verify it, then move ``to``'s current pointer. ``of_release``: part of a release that
    passed its gates; otherwise a stage that requires approvals refuses a package alone."""
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
        _promote_package(origin, destination, route, version, result, dry_run, settings, progress)
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
    settings: TransferSettings | None,
    progress: Callable[[int], None] | None,
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
                        settings=settings or TransferSettings(),
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
