"""Plan, then apply, for whole releases (issue 14): the I/O around the pure plan of
pipeline/plan.py.

* :func:`gather_facts` looks at the world once: the route and its stage order, the account
  guard once per account (destination and source), per image of the release the digest
  its tag names at the source and at the destination (one RegistrySession, every lookup
  at once) and a byte estimate, and the package version in both buckets.
* :func:`make_plan` turns those facts into a :class:`~cloudops.pipeline.plan.PromotionPlan`
  (pure, hashed); :func:`write_plan` / :func:`read_plan` store it as a file and read a
  file back bounded and validated (a plan file is hostile input).
* :func:`apply_plan` gathers the facts again for the plan's route and items and goes ahead
  only when nothing changed and the plan refuses nothing; it then executes exactly the
  plan (every image copied by the digest the plan names, the plan's package version) and
  writes one release record carrying the plan hash.

``promote release`` (release.py) is a plan and its execution in one step: both paths
execute releases through :func:`execute_plan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar, cast

from pydantic import ValidationError

from cloudops.aws.ecr import EcrRepositories
from cloudops.aws.guard import require_account
from cloudops.aws.s3_stream import ChecksumMismatchError
from cloudops.copy.engine import CopyProgress
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.oci import ImageManifest
from cloudops.package import promote_package
from cloudops.package_archive import validate_version
from cloudops.package_store import StoredPackage, store_for
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.plan import (
    MAX_PLAN_BYTES,
    NEW_PLAN,
    ImageFacts,
    PackageFacts,
    PlanRoute,
    PromotionFacts,
    PromotionPlan,
    build_plan,
    changes_since,
)
from cloudops.pipeline.promote import ImageSpec, promote_images
from cloudops.pipeline.records import MAX_BYTES, PromotionRecord
from cloudops.pipeline.signatures import SignatureGate
from cloudops.pipeline.stages import Route, promotion_route
from cloudops.refs import validate_tag
from cloudops.registry import RegistryReader, RegistrySession
from cloudops.release import Release, ReleaseResult, load_release
from cloudops.release_current import release_lock, write_current
from cloudops.release_gates import require_gates, require_not_rejected
from cloudops.text import json_without_duplicate_keys

T = TypeVar("T")
T2 = TypeVar("T2")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_INDEX_DEPTH = 2
"""An index of indexes is followed this deep for the byte estimate (deeper ones count 0)."""


@dataclass(frozen=True)
class _Item:
    repository: str
    tag: str
    pinned: str | None


@dataclass(frozen=True)
class _Wanted:
    """What a plan is about: the release's name, its images and its package version."""

    release: str
    images: tuple[_Item, ...]
    package: str | None
    purpose: Literal["release", "rollback", "db-reset"] = "release"

    @classmethod
    def of_release(cls, release: Release, purpose: Literal["release", "rollback"] = "release") -> _Wanted:
        images = tuple(_Item(i.repository, i.tag, i.digest) for i in release.images)
        return cls(release.release, images, release.package.version if release.package else None, purpose)

    @classmethod
    def of_plan(cls, plan: PromotionPlan) -> _Wanted:
        images = tuple(_Item(i.repository, i.tag, i.pinned) for i in plan.images)
        version = plan.package.version if plan.package else None
        return cls(plan.route.release, images, version, plan.route.purpose)


# -- gathering the facts ---------------------------------------------------------------


def gather_facts(
    context: PipelineContext, to: str, release: Release, source: str | None = None
) -> PromotionFacts:
    """What promoting ``release`` into ``to`` would find: read only, nothing written."""
    route = promotion_route(context.pipeline, to, source)
    return _gather(context, route, _Wanted.of_release(release))[0]


def _gather(context: PipelineContext, route: Route, wanted: _Wanted) -> tuple[PromotionFacts, str]:
    """The facts, and the ARN the destination's credentials act as. Checks in the order
    promote_images makes them, each before any lookup: the input, the stage order (the
    route, made by the caller), the account guard once per account, the registry hosts,
    the destination's repositories."""
    pipeline = context.pipeline
    src, dst = route.source, route.destination
    try:
        plan_route = PlanRoute(
            release=wanted.release,
            source=src,
            source_id=pipeline.account(src).account_id,
            destination=dst,
            destination_id=pipeline.account(dst).account_id,
            purpose=wanted.purpose,
        )
    except ValidationError:
        raise InputError(
            "the release name must be 1 to 128 characters, without control characters",
            hint="fix release: in the release file",
        ) from None
    for item in wanted.images:
        validate_tag(item.tag)
        if pipeline.images and item.repository not in pipeline.images:
            raise InputError(
                f"repository {item.repository!r} is not one of the pipeline's images",
                hint=f"pipeline.yaml images: {', '.join(pipeline.images)}",
            )
    if wanted.package is not None:
        validate_version(wanted.package)

    stages = pipeline.stages
    skipped = stages[stages.index(src) + 1 : stages.index(dst)]
    checks = [f"stage order {src} -> {dst}" + (f" (skips {', '.join(skipped)})" if skipped else "")]
    arn = require_account(context.session(dst), purpose=f"promote release {wanted.release} into {dst!r}")
    checks.append(f"account guard {dst} ({plan_route.destination_id}): {arn}")
    source_arn = require_account(context.session(src), purpose=f"read from {src!r}")
    checks.append(f"account guard {src} ({plan_route.source_id}): {source_arn}")
    hosts: tuple[str, str] | None = None
    if wanted.images:
        hosts = context.checked_registry_host(src), context.checked_registry_host(dst)
        repositories = EcrRepositories(context.session(dst))
        for repository in dict.fromkeys(i.repository for i in wanted.images):
            repositories.require(repository)

    images, package = asyncio.run(_lookups(context, route, hosts, wanted))
    return PromotionFacts(plan_route, images, package, tuple(checks)), arn


async def _lookups(
    context: PipelineContext, route: Route, hosts: tuple[str, str] | None, wanted: _Wanted
) -> tuple[list[ImageFacts], PackageFacts | None]:
    """Every registry lookup in one RegistrySession and the two bucket lookups, all at once."""
    version = wanted.package
    if hosts is None or not wanted.images:
        return [], await _package_facts(context, route, version) if version is not None else None
    keychain = context.keychain(route.source, route.destination)
    gate = SignatureGate.for_stage(context.pipeline, route.destination)
    async with RegistrySession(keychain, context.transport_settings()) as pool:
        src, dst = pool.reader(hosts[0]), pool.reader(hosts[1])
        images = _all(_image_facts(src, dst, item, gate) for item in wanted.images)
        if version is None:
            return await images, None
        return await _all2(images, _package_facts(context, route, version))


async def _image_facts(
    src: RegistryReader, dst: RegistryReader, item: _Item, gate: SignatureGate | None
) -> ImageFacts:
    source, destination = await _all2(
        src.head_manifest(item.repository, item.tag), dst.head_manifest(item.repository, item.tag)
    )
    signed = signature = None
    if gate is not None and source is not None:
        verification = await gate.check(src, item.repository, source.digest)
        signed, signature = verification.ok, verification.reason
    estimate = 0
    if source is not None and destination is None and item.pinned in (None, source.digest):
        sizes = await _blob_sizes(src, item.repository, source.digest, 0)  # only what a copy moves
        estimate = min(sum(sizes.values()), MAX_BYTES)
    return ImageFacts(
        item.repository,
        item.tag,
        source=source.digest if source is not None else None,
        destination=destination.digest if destination is not None else None,
        bytes=estimate,
        pinned=item.pinned,
        signed=signed,
        signature=signature,
    )


async def _blob_sizes(reader: RegistryReader, repository: str, digest: str, depth: int) -> dict[str, int]:
    """blob digest -> size of every blob the manifest (an index: its children) names."""
    manifest = await reader.get_manifest(repository, digest)
    if isinstance(manifest, ImageManifest):
        return {blob.digest: max(0, blob.size) for blob in manifest.blobs}
    if depth >= MAX_INDEX_DEPTH:
        return {}
    found: dict[str, int] = {}
    for sizes in await _all(
        _blob_sizes(reader, repository, child.digest, depth + 1) for child in manifest.manifests
    ):
        found.update(sizes)  # a blob shared by two platforms moves once
    return found


async def _package_facts(context: PipelineContext, route: Route, version: str) -> PackageFacts:
    origin, destination = store_for(context, route.source), store_for(context, route.destination)
    source, present = await _all2(
        asyncio.to_thread(origin.stored, version), asyncio.to_thread(destination.stored, version)
    )
    if source is not None and not _SHA256_HEX.fullmatch(source.sha256):
        raise ChecksumMismatchError(
            f"package {version} in {route.source!r} carries no recorded sha256",
            hint="re-publish it with `cloudops package publish` so its checksum is recorded",
        )
    if present is not None and not _SHA256_HEX.fullmatch(present.sha256):
        raise RefusedError(
            f"package version {version} in {route.destination!r} carries no recorded sha256: "
            "cloudops did not write it and cannot tell it is the same",
            hint="versions never change: publish and promote a new version",
        )
    return PackageFacts(
        version,
        source_sha256=_sha(source),
        source_size=source.size if source is not None else None,
        destination_sha256=_sha(present),
    )


def _sha(stored: StoredPackage | None) -> str | None:
    return stored.sha256 if stored is not None else None


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """asyncio.gather that lets every lookup finish (nothing left running when the
    session closes), then raises the first error."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast("list[T]", results)


async def _all2(first: Awaitable[T], second: Awaitable[T2]) -> tuple[T, T2]:
    a, b = await _all([cast("Awaitable[object]", first), cast("Awaitable[object]", second)])
    return cast("T", a), cast("T2", b)


# -- the plan --------------------------------------------------------------------------


def make_plan(
    context: PipelineContext, to: str, release_file: Path, source: str | None = None
) -> PromotionPlan:
    """The plan of promoting the release file into ``to``: read only, nothing written."""
    return plan_release(context, to, load_release(release_file), source)[0]


def plan_release(
    context: PipelineContext,
    to: str,
    release: Release,
    source: str | None = None,
    *,
    purpose: Literal["release", "rollback"] = "release",
) -> tuple[PromotionPlan, str]:
    """The plan, and the ARN the destination's credentials act as (who planned)."""
    route = promotion_route(context.pipeline, to, source)
    facts, arn = _gather(context, route, _Wanted.of_release(release, purpose))
    return build_plan(facts, planned_at=datetime.now(UTC), planned_by=arn), arn


def record_plan(context: PipelineContext, plan: PromotionPlan) -> None:
    """One history record (kind "plan") in the destination's promotion log: a plan was
    written to be approved and applied."""
    route = plan.route
    history.append(
        context,
        PromotionRecord.new(
            kind="plan",
            who=history.who_am_i(plan.planned_by),
            source_account=route.source,
            source_account_id=route.source_id,
            destination_account=route.destination,
            destination_account_id=route.destination_id,
            version=route.release,
            bytes=plan.bytes_to_move,
            result="planned" if plan.ok else "refused",
            error="; ".join(plan.refusals)[:2000] or None,
            plan_hash=plan.plan_hash,
            reason="rollback" if route.purpose == "rollback" else None,
        ),
    )


def apply_plan(
    context: PipelineContext, plan: PromotionPlan, *, progress: CopyProgress | None = None
) -> ReleaseResult:
    """Execute exactly ``plan``, or refuse (exit 3) when the world changed since it was
    made or when it refuses something itself. The facts are gathered again first."""
    if plan.route.purpose == "db-reset":
        raise InputError(
            "this plan resets a database: it is not applied by `cloudops apply`",
            hint=f"cloudops db reset --account {plan.route.destination} --plan PLAN.json",
        )
    started = time.monotonic()
    route = promotion_route(context.pipeline, plan.route.destination, plan.route.source)
    with release_lock(context, route.destination):
        return _apply_locked(context, plan, route, started, progress)


def _apply_locked(
    context: PipelineContext, plan: PromotionPlan, route: Route, started: float, progress: CopyProgress | None
) -> ReleaseResult:
    fresh, arn = _gather(context, route, _Wanted.of_plan(plan))
    changes = changes_since(plan, fresh)
    if changes:
        raise RefusedError(
            f"the world changed since plan {plan.plan_hash[:19]}… was made, nothing was written: "
            + "; ".join(changes),
            hint=NEW_PLAN,
        )
    if not plan.ok:
        raise RefusedError(
            f"plan {plan.plan_hash[:19]}… refuses what it would do, nothing was written: "
            + "; ".join(plan.refusals),
            hint=f"fix what it refuses, then {NEW_PLAN}",
        )
    require_gates(context, plan, arn)  # not rejected; approved when the stage requires it
    return execute_plan(context, plan, arn, started=started, progress=progress)


def execute_plan(
    context: PipelineContext,
    plan: PromotionPlan,
    arn: str,
    *,
    started: float,
    progress: CopyProgress | None = None,
    order: Sequence[tuple[str, str]] = (),
) -> ReleaseResult:
    """Promote the plan's images, each pinned to the digest the plan names (a tag moved
    since is refused by the copy, never copied), then the plan's package version; then
    write one release record carrying the plan hash. An image or package the plan refuses
    is handed on as well and refused again, as ``promote release`` always did (apply_plan
    never gets here with one). ``order``: (repository, tag) in the order to report.

    A release whose every part succeeded is then recorded as the destination's current
    release (releases/current.json and its release log, release_current.py); a failure to
    write or verify that fails the release (``current_error``, exit 1). A release that
    failed in any part never moves current.json."""
    src, dst = plan.route.source, plan.route.destination
    position = {name: n for n, name in enumerate(order)}
    images = sorted(plan.images, key=lambda i: position.get((i.repository, i.tag), len(position)))
    result = ReleaseResult(plan.route.release, dst, plan_hash=plan.plan_hash)
    if images:
        specs = [ImageSpec(i.repository, i.tag, i.pinned or i.source) for i in images]
        result.images = promote_images(context, dst, specs, source=src, progress=progress, of_release=True)
    # Copying may have taken long: a rejection made meanwhile stops the release before the
    # package pointer or current.json moves (release_gates.py).
    rejected = _rejected_meanwhile(context, plan)
    if plan.package is not None:
        # The pointer moves only with every image there: a failed release leaves the account
        # on its current release's package (a re-run moves it). The bytes copied must be the
        # ones the plan (and its approvals) named, whatever the source holds by now.
        images_ok = all(i.ok for i in result.images) and rejected is None
        result.package = promote_package(
            context,
            dst,
            version=plan.package.version,
            source=src,
            of_release=True,
            move_current=images_ok,
            expected_sha256=plan.package.source_sha256,
        )
    if rejected is not None:
        result.current_error = rejected
    elif result.parts_ok:
        # Complete and verified: only now may current.json name it (release_current.py).
        try:
            result.current = write_current(context, plan, arn)
        except (CloudopsError, ValueError) as error:  # ValueError: a document out of bounds
            message = error.message if isinstance(error, CloudopsError) else "invalid current release"
            hint = error.hint if isinstance(error, CloudopsError) else None
            result.current_error = CloudopsError(
                f"release {plan.route.release} is in {dst!r} but not recorded as its current "
                f"release: {message}",
                hint=hint or "promote the release again (or plan and apply it again) to record it",
            )
    result.seconds = time.monotonic() - started
    failures = [str(i.error) for i in result.images if i.error] + (
        [str(result.package.error)] if result.package is not None and result.package.error else []
    )
    if result.current_error is not None:
        failures.append(str(result.current_error))
    rollback = plan.route.purpose == "rollback"
    history.append(
        context,
        PromotionRecord.new(
            kind="rollback" if rollback else "release",
            who=history.who_am_i(arn),
            source_account=src,
            source_account_id=plan.route.source_id,
            destination_account=dst,
            destination_account_id=plan.route.destination_id,
            version=plan.route.release,
            bytes=sum(i.bytes_uploaded for i in result.images)
            + (result.package.bytes_uploaded if result.package is not None else 0),
            seconds=result.seconds,
            result=("rolled-back" if rollback else "promoted") if result.ok else "failed",
            error="; ".join(failures)[:2000] or None,
            plan_hash=plan.plan_hash,
        ),
    )
    return result


def _rejected_meanwhile(context: PipelineContext, plan: PromotionPlan) -> CloudopsError | None:
    try:
        require_not_rejected(context, plan)
    except RefusedError as error:
        return RefusedError(f"{error.message}; nothing more moves", hint=error.hint)
    return None


def promote_release(
    context: PipelineContext,
    to: str,
    release_file: Path,
    *,
    source: str | None = None,
    dry_run: bool = False,
    progress: CopyProgress | None = None,
) -> ReleaseResult:
    """Plan the release (release_plan.py), then execute that plan: the one path that
    executes releases, `cloudops apply`'s too. Unlike `apply` the plan is executed even
    when it refuses a part: what it refuses is refused again and recorded, the rest is
    promoted, the release is reported failed and a re-run completes it."""
    started = time.monotonic()
    release = load_release(release_file)
    if not dry_run:
        promotion_route(context.pipeline, to, source)
        with release_lock(context, to):
            plan, arn = plan_release(context, to, release, source)
            require_gates(context, plan, arn)  # before anything is written
            order = [(i.repository, i.tag) for i in release.images]
            return execute_plan(context, plan, arn, started=started, progress=progress, order=order)
    promotion_route(context.pipeline, to, source)
    require_account(context.session(to), purpose=f"promote release {release.release} into {to!r}")
    result = ReleaseResult(release.release, to, dry_run=True)
    if release.images:
        specs = [ImageSpec(i.repository, i.tag, i.digest) for i in release.images]
        result.images = promote_images(context, to, specs, source=source, dry_run=True, progress=progress)
    if release.package is not None:
        result.package = promote_package(
            context, to, version=release.package.version, source=source, dry_run=True
        )
    result.seconds = time.monotonic() - started
    return result


# -- the plan file ---------------------------------------------------------------------


def plan_text(plan: PromotionPlan) -> str:
    """The plan file's text: the same document `cloudops plan --json` prints."""
    return json.dumps(plan.to_json(), indent=2) + "\n"


def refuse_existing(path: Path, *, force: bool) -> None:
    """Refuse (exit 2) a plan file that is there already, unless ``force``, or one whose
    directory is not there."""
    if not force and (path.exists() or path.is_symlink()):
        raise InputError(f"{path} already exists", hint="pass --force to replace it, or choose another --out")
    if path.is_dir():
        raise InputError(f"{path} is a directory", hint="--out names the plan file to write")
    if not (path.parent if str(path.parent) else Path(".")).is_dir():
        raise InputError(f"cannot write the plan to {path}: its directory does not exist")


def write_plan(plan: PromotionPlan, path: Path, *, force: bool = False) -> None:
    """Write the plan file (0644) through a temporary file in the same directory, then
    rename it into place; an existing file is replaced only with ``force``."""
    refuse_existing(path, force=force)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write the plan to {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(plan_text(plan))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        if force:
            os.replace(temporary, path)
        else:
            _link_new(temporary, path)
    except OSError as exc:
        raise InputError(f"cannot write the plan to {path}: {exc.strerror or type(exc).__name__}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _link_new(temporary: str, path: Path) -> None:
    """Put the file in place only if nothing is there (another run may have written one
    since the check): a hard link fails if the name exists, a rename would replace it."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise InputError(
            f"{path} already exists", hint="pass --force to replace it, or choose another --out"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        refuse_existing(path, force=False)  # a filesystem without hard links
        os.replace(temporary, path)


def read_plan(path: Path) -> PromotionPlan:
    """A plan file read back: at most MAX_PLAN_BYTES, JSON, validated and its hash checked
    (pipeline/plan.py). Anything else is refused with exit 2, naming the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the read
    except FileNotFoundError:
        raise InputError(f"plan file {path} does not exist", hint=NEW_PLAN) from None
    except OSError as exc:
        raise InputError(f"cannot read plan file {path}: {exc.strerror or type(exc).__name__}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"plan file {path} is not a regular file", hint=NEW_PLAN)
        too_big = InputError(
            f"plan file {path} is larger than {MAX_PLAN_BYTES} bytes: not a plan cloudops wrote",
            hint=NEW_PLAN,
        )
        if info.st_size > MAX_PLAN_BYTES:
            raise too_big
        try:
            raw = handle.read(MAX_PLAN_BYTES + 1)
        except OSError as exc:
            raise InputError(f"cannot read plan file {path}: {exc.strerror or type(exc).__name__}") from None
        if len(raw) > MAX_PLAN_BYTES:
            raise too_big
    try:
        document = json_without_duplicate_keys(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError(f"plan file {path} is not JSON", hint=NEW_PLAN) from None
    try:
        return PromotionPlan.from_json(document)
    except InputError as exc:
        raise InputError(f"plan file {path}: {exc.message}", hint=exc.hint) from None


__all__ = [
    "apply_plan",
    "execute_plan",
    "gather_facts",
    "make_plan",
    "plan_release",
    "plan_text",
    "promote_release",
    "read_plan",
    "record_plan",
    "refuse_existing",
    "write_plan",
]
