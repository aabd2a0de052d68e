"""Promoting images into an account: resolve the source digest, refuse tag moves, copy by
digest with the copy engine, verify, and record every outcome in the destination's log.

Order of checks, each before anything is written: stage rules -> the account guard
(destination and source credentials must act in their own accounts) -> the registry
hosts belong to those accounts -> the destination repository exists -> the source tag
exists -> the destination tag is absent or already names the same digest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cloudops.aws.ecr import EcrRepositories
from cloudops.aws.guard import require_account
from cloudops.copy.engine import CopyEngine, CopyProgress, TagConflictError
from cloudops.copy.plan import CopyRequest
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.records import PromotionRecord
from cloudops.pipeline.signatures import SignatureGate
from cloudops.pipeline.stages import Route, promotion_route, require_outside_release_approval
from cloudops.refs import Reference, validate_tag
from cloudops.registry.session import RegistrySession


class UnsignedImageError(RefusedError):
    """The destination stage requires a valid cosign signature and the image has none."""


Status = Literal["planned", "promoted", "already-promoted", "refused", "failed"]


@dataclass(frozen=True)
class ImageSpec:
    repository: str
    tag: str
    digest: str | None = None
    """When given (a release file pins it), the source tag must still name this digest."""
    pin_hint: str | None = field(default=None, compare=False)
    """The fix to print when the source tag names another digest than ``digest`` (default:
    fix the release file); a backfill pins the digest it listed in ECR."""


@dataclass
class ImagePromotion:
    route: Route
    repository: str
    tag: str
    status: Status = "planned"
    source_digest: str | None = None
    destination_digest: str | None = None
    bytes_uploaded: int = 0
    blobs_uploaded: int = 0
    seconds: float = 0.0
    error: CloudopsError | None = None
    action: str = ""
    recorded: bool = field(default=False)
    referrers: list[dict[str, object]] = field(default_factory=list)
    """Signatures, SBOMs, attestations carried with the image (copy engine's report)."""
    warnings: list[str] = field(default_factory=list)
    """Referrers a registry listed that were not carried, and why."""

    @property
    def ok(self) -> bool:
        return self.status in ("planned", "promoted", "already-promoted")

    def as_dict(self) -> dict[str, object]:
        return {
            "source_account": self.route.source,
            "destination_account": self.route.destination,
            "repository": self.repository,
            "tag": self.tag,
            "status": self.status,
            "action": self.action,
            "source_digest": self.source_digest,
            "destination_digest_before": self.destination_digest,
            "bytes_uploaded": self.bytes_uploaded,
            "blobs_uploaded": self.blobs_uploaded,
            "seconds": round(self.seconds, 3),
            "error": str(self.error) if self.error else None,
            "recorded": self.recorded,
            "referrers": self.referrers,
            "warnings": self.warnings,
        }


def promote_images(
    context: PipelineContext,
    to: str,
    images: Sequence[ImageSpec],
    *,
    source: str | None = None,
    dry_run: bool = False,
    progress: CopyProgress | None = None,
    concurrency: int = 8,
    of_release: bool = False,
) -> list[ImagePromotion]:
    """Promote every image into ``to``. Raises for problems that concern the whole run
    (stage rules, wrong credentials, unknown repository); per-image outcomes (missing tag,
    tag move, copy failure) are returned and recorded. ``of_release``: part of a release
    that passed its gates (release_gates.py); otherwise a stage that requires approvals
    refuses single images."""
    pipeline = context.pipeline
    route = promotion_route(pipeline, to, source)
    if not of_release and not dry_run:
        require_outside_release_approval(pipeline, route.destination, "an image")
    for image in images:
        validate_tag(image.tag)
        if pipeline.images and image.repository not in pipeline.images:
            raise InputError(
                f"repository {image.repository!r} is not one of the pipeline's images",
                hint=f"pipeline.yaml images: {', '.join(pipeline.images)}",
            )
    destination = context.session(route.destination)
    arn = require_account(destination, purpose=f"promote into {route.destination!r}")
    require_account(context.session(route.source), purpose=f"read from {route.source!r}")
    src_host = context.checked_registry_host(route.source)
    dst_host = context.checked_registry_host(route.destination)
    repositories = EcrRepositories(destination)
    for repository in dict.fromkeys(i.repository for i in images):
        repositories.require(repository)

    results = asyncio.run(
        _promote(context, route, src_host, dst_host, images, dry_run, progress, concurrency)
    )
    if not dry_run:
        for result in results:
            _record(context, result, arn)
    return results


async def _promote(
    context: PipelineContext,
    route: Route,
    src_host: str,
    dst_host: str,
    images: Sequence[ImageSpec],
    dry_run: bool,
    progress: CopyProgress | None,
    concurrency: int,
) -> list[ImagePromotion]:
    keychain = context.keychain(route.source, route.destination)
    gate = SignatureGate.for_stage(context.pipeline, route.destination)
    async with RegistrySession(keychain, context.transport_settings()) as pool:
        src, dst = pool.reader(src_host), pool.reader(dst_host)
        started = time.monotonic()

        async def inspect(image: ImageSpec) -> ImagePromotion:
            result = ImagePromotion(route, image.repository, image.tag)
            try:
                head = await src.head_manifest(image.repository, image.tag)
                if head is None:
                    raise InputError(
                        f"{image.repository}:{image.tag} does not exist in account {route.source!r}",
                        hint="check the tag; only images present in the source stage can be promoted",
                    )
                if image.digest and head.digest != image.digest:
                    raise TagConflictError(
                        f"{image.repository}:{image.tag} in {route.source!r} is {head.digest}, "
                        f"not the pinned {image.digest}",
                        hint=image.pin_hint or "the release file pins another digest: fix the release file",
                    )
                result.source_digest = head.digest
                if gate is not None:
                    checked = await gate.check(src, image.repository, head.digest)
                    if not checked.ok:
                        raise UnsignedImageError(
                            f"{image.repository}:{image.tag} in {route.source!r} ({head.digest[:19]}) has no "
                            f"valid signature: {checked.reason}; "
                            f"{route.destination!r} accepts only signed images",
                            hint="sign it in the build account (`cloudops sign`) and promote it again, "
                            "so the signature travels with it",
                        )
                current = await dst.head_manifest(image.repository, image.tag)
                result.destination_digest = current.digest if current else None
                if current is None:
                    result.action = "copy"
                elif current.digest == head.digest:
                    result.action = "already there"
                    result.status = "already-promoted"
                else:
                    raise TagConflictError(
                        f"{image.repository}:{image.tag} in {route.destination!r} already names "
                        f"{current.digest}, not {head.digest} from {route.source!r}",
                        hint="tags never move: build and promote a new tag",
                    )
            except CloudopsError as error:
                result.status = "refused" if error.kind == "refused" else "failed"
                result.error = error
            return result

        results = list(await asyncio.gather(*(inspect(i) for i in images)))
        # An image already there still goes to the copy engine: signatures made since the
        # last promotion follow it (nothing else is written; the tag is not touched).
        to_copy = [r for r in results if r.action in ("copy", "already there") and r.error is None]
        if dry_run or not to_copy:
            for r in results:
                r.seconds = time.monotonic() - started
            return results

        requests = [
            CopyRequest(
                Reference(src_host, r.repository, r.tag, r.source_digest),
                Reference(dst_host, r.repository, r.tag),
            )
            for r in to_copy
        ]
        engine = CopyEngine(
            pool, concurrency=concurrency, progress=progress, retry=context.retry, referrers=context.referrers
        )
        report = await engine.copy(requests, allow_tag_move=False)
        for result, copied in zip(to_copy, report.results, strict=True):
            result.bytes_uploaded = copied.bytes_uploaded
            result.blobs_uploaded = copied.blobs_uploaded
            result.referrers = copied.referrers
            result.warnings = copied.warnings
            if copied.status == "copied":
                result.status = "promoted"
            elif copied.status == "up-to-date" and result.action == "already there":
                pass  # already-promoted, as inspected
            elif copied.status == "up-to-date":
                # Another promotion wrote the same digest meanwhile: nothing written by us.
                result.status = "already-promoted"
            else:
                result.status = "refused" if copied.status == "refused" else "failed"
                result.error = copied.error
        for r in results:
            r.seconds = time.monotonic() - started
        return results


def _record(context: PipelineContext, result: ImagePromotion, arn: str) -> None:
    pipeline = context.pipeline
    if result.status == "planned":
        return
    record = PromotionRecord.new(
        kind="image",
        who=history.who_am_i(arn),
        source_account=result.route.source,
        source_account_id=pipeline.account(result.route.source).account_id,
        destination_account=result.route.destination,
        destination_account_id=pipeline.account(result.route.destination).account_id,
        repository=result.repository,
        tag=result.tag,
        source_digest=result.source_digest,
        bytes=result.bytes_uploaded,
        seconds=result.seconds,
        result=result.status,
        error=str(result.error) if result.error else None,
    )
    history.append(context, record)
    result.recorded = True
