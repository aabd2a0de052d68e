"""Backfill: promote every tag of one repository that the stage before holds and the
destination lacks, in one batch (`cloudops promote image --all-tags`).

What each account holds is read from its own ECR with DescribeImages (paginated, at most
MAX_TAGS tags an account), not from the registry's tag list:

- push times (``--since``) exist only in ECR (imagePushedAt);
- one DescribeImages page gives 1,000 tags with their digests, where the registry's tag
  list names tags only and would need one manifest HEAD per tag to compare digests;
- `cloudops status` reads ECR too (ListImages), so a backfill copies what status calls
  pending; DescribeImages rather than ListImages because it is in the source account's
  documented read-only permissions (docs/jenkins.md) and carries the push time.

ECR only chooses: every tag chosen goes through promote_images, which asks both
registries again (a HEAD each side) with the digest ECR listed pinned, so a tag that
moved in the source after it was listed is refused instead of promoting something other
than the plan said, and a tag that appeared at the destination meanwhile is "already
promoted" or refused as a tag move, as for a single image.

select_tags is pure (no I/O, no clock); backfill_images does the reading around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import botocore.exceptions

from cloudops.aws.ecr import EcrRepositories
from cloudops.aws.guard import require_account
from cloudops.aws.sessions import AccountSession, aws_error
from cloudops.copy.engine import CopyProgress
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.promote import ImagePromotion, ImageSpec, promote_images
from cloudops.pipeline.stages import Route, promotion_route, require_outside_release_approval
from cloudops.referrers import is_referrer_tag
from cloudops.refs import validate_digest, validate_tag
from cloudops.versions import version_key

MAX_TAGS = 10_000
"""Tags read from one repository of one account before the backfill is refused."""

MAX_PATTERN = 200
"""Characters in a --match pattern."""

PAGE_SIZE = 1000
"""DescribeImages' largest page."""

Action = Literal["copy", "already-there", "refused"]


@dataclass(frozen=True)
class SourceImage:
    """A tag the source's ECR lists, the digest it names, and when that image was pushed
    (ECR's imagePushedAt: per image, so a tag added later to a digest already there
    carries the digest's first push time)."""

    tag: str
    digest: str
    pushed_at: datetime | None = None


@dataclass(frozen=True)
class PlannedTag:
    tag: str
    action: Action
    source_digest: str
    destination_digest: str | None = None
    pushed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "action": self.action,
            "source_digest": self.source_digest,
            "destination_digest": self.destination_digest,
            "pushed_at": self.pushed_at.isoformat() if self.pushed_at else None,
        }


@dataclass(frozen=True)
class BackfillPlan:
    """What the source holds against what the destination holds, newest first."""

    tags: tuple[PlannedTag, ...] = ()
    not_matched: int = 0
    """Source tags --match left out."""
    older: int = 0
    """Source tags pushed before --since (or without a push time) left out."""

    def of(self, action: Action) -> tuple[PlannedTag, ...]:
        return tuple(t for t in self.tags if t.action == action)

    @property
    def to_promote(self) -> tuple[PlannedTag, ...]:
        """What goes to promote_images: the copies, and the tag moves (refused and recorded
        there like any other)."""
        return tuple(t for t in self.tags if t.action != "already-there")

    def as_dict(self) -> dict[str, Any]:
        return {
            "copy": [t.tag for t in self.of("copy")],
            "already_there": [t.tag for t in self.of("already-there")],
            "refused": [t.tag for t in self.of("refused")],
            "not_matched": self.not_matched,
            "older_than_since": self.older,
            "tags": [t.as_dict() for t in self.tags],
        }


def compile_match(pattern: str | None) -> re.Pattern[str] | None:
    """--match: a Python regular expression a whole tag must match (re.fullmatch)."""
    if pattern is None:
        return None
    if len(pattern) > MAX_PATTERN:
        raise InputError(
            f"--match is {len(pattern)} characters long: at most {MAX_PATTERN} are accepted",
            hint="match tags with a shorter pattern, e.g. '8\\.5\\..*'",
        )
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise InputError(
            f"--match {pattern!r} is not a valid regular expression: {error}",
            hint="use Python regex syntax; the whole tag must match, e.g. '8\\.5\\..*' or 'v?1\\.[0-9]+'",
        ) from None


def select_tags(
    source: Iterable[SourceImage],
    destination: Mapping[str, str],
    *,
    match: re.Pattern[str] | None = None,
    since: datetime | None = None,
) -> BackfillPlan:
    """Pure: the source tags that --match (a full match) and --since (pushed at or after)
    keep, each compared with the destination's tag -> digest: absent there is a copy, the
    same digest is already there, another digest is refused (tags never move). Newest
    first by the version sort of `status`; a tag listed twice counts once."""
    chosen: dict[str, PlannedTag] = {}
    not_matched = older = 0
    for image in source:
        if image.tag in chosen:
            continue
        if match is not None and match.fullmatch(image.tag) is None:
            not_matched += 1
            continue
        if since is not None and (image.pushed_at is None or image.pushed_at < since):
            older += 1
            continue
        there = destination.get(image.tag)
        action: Action
        if there is None:
            action = "copy"
        elif there == image.digest:
            action = "already-there"
        else:
            action = "refused"
        chosen[image.tag] = PlannedTag(image.tag, action, image.digest, there, image.pushed_at)
    ordered = sorted(chosen.values(), key=lambda t: version_key(t.tag), reverse=True)
    return BackfillPlan(tuple(ordered), not_matched, older)


# -- reading ECR ------------------------------------------------------------------------


@dataclass
class Listing:
    images: list[SourceImage] = field(default_factory=list)
    invalid: int = 0
    """Entries ECR listed whose tag or digest is not valid: dropped, counted."""


def list_images(session: AccountSession, repository: str, *, limit: int = MAX_TAGS) -> Listing:
    """Every tag of ``repository`` in the session's own ECR with its digest and push time
    (DescribeImages, paginated), but referrer tags (``sha256-<hex>[.sig|.att|.sbom]``: the
    copy engine carries them with the image they refer to). More than ``limit`` tags is
    refused: a backfill of that size is not one batch."""
    account = session.name
    what = f"listing images of {repository} in {account!r}"
    found = Listing()
    read = 0
    try:
        client = session.client("ecr")
        pages = client.get_paginator("describe_images").paginate(
            repositoryName=repository,
            registryId=session.account.account_id,
            filter={"tagStatus": "TAGGED"},
            PaginationConfig={"PageSize": PAGE_SIZE},
        )
        for page in pages:
            for detail in page.get("imageDetails", []):
                tags = detail.get("imageTags") or []
                read += max(1, len(tags))
                if read > limit:
                    raise RefusedError(
                        f"{repository} in {account!r} holds more than {limit:,} tags: "
                        f"a backfill reads at most {limit:,}",
                        hint="promote tags one by one with --tag, or expire old tags first "
                        "(an ECR lifecycle policy)",
                    )
                pushed = detail.get("imagePushedAt")
                for tag in tags:
                    if is_referrer_tag(tag):
                        continue  # a signature's or SBOM's tag: it travels with its image
                    image = _image(tag, detail.get("imageDigest"), pushed)
                    if image is None:
                        found.invalid += 1
                    else:
                        found.images.append(image)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
            raise InputError(
                f"ECR repository {repository} does not exist in account {account!r} "
                f"({session.account.account_id})",
                hint=f"run `cloudops init {account}` to create the account's repositories",
            ) from None
        raise aws_error(exc, what) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_error(exc, what) from None
    return found


def _image(tag: object, digest: object, pushed: object) -> SourceImage | None:
    if not isinstance(tag, str) or not isinstance(digest, str):
        return None
    try:
        validate_tag(tag)
        validate_digest(digest)
    except CloudopsError:
        return None
    when = pushed.astimezone(UTC) if isinstance(pushed, datetime) and pushed.tzinfo else None
    return SourceImage(tag, digest, when)


# -- the backfill -----------------------------------------------------------------------


@dataclass
class BackfillResult:
    route: Route
    repository: str
    plan: BackfillPlan
    dry_run: bool
    images: list[ImagePromotion] = field(default_factory=list)
    """promote_images' outcome for every tag of plan.to_promote, in the plan's order."""
    invalid: int = 0
    """Names the source's ECR listed that are not valid tags or digests: never promoted."""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.images)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "repository": self.repository,
            "source_account": self.route.source,
            "destination_account": self.route.destination,
            "plan": self.plan.as_dict(),
            "invalid_tags": self.invalid,
            "images": [r.as_dict() for r in self.images],
        }


def backfill_images(
    context: PipelineContext,
    to: str,
    repository: str,
    *,
    source: str | None = None,
    match: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
    progress: CopyProgress | None = None,
    on_plan: Callable[[BackfillResult], None] | None = None,
    limit: int = MAX_TAGS,
) -> BackfillResult:
    """Promote every tag of ``repository`` the source (the stage before ``to``, or
    ``source``) holds and ``to`` lacks, chosen by ``match`` and ``since``, in one
    promote_images batch (blobs shared). Checked before anything is read: the pattern,
    the stage rules, the approval rule (a stage that requires approvals takes no backfill,
    dry run or not: it takes releases), the repository; then the account guard on both
    sides before their ECR is listed. ``on_plan`` sees the plan before anything is copied."""
    pattern = compile_match(match)
    pipeline = context.pipeline
    route = promotion_route(pipeline, to, source)
    require_outside_release_approval(pipeline, route.destination, "a backfill of images")
    if pipeline.images and repository not in pipeline.images:
        raise InputError(
            f"repository {repository!r} is not one of the pipeline's images",
            hint=f"pipeline.yaml images: {', '.join(pipeline.images)}",
        )
    destination = context.session(route.destination)
    origin = context.session(route.source)
    require_account(destination, purpose=f"promote into {route.destination!r}")
    require_account(origin, purpose=f"read from {route.source!r}")
    EcrRepositories(destination).require(repository)

    held = list_images(origin, repository, limit=limit)
    there = list_images(destination, repository, limit=limit)
    plan = select_tags(held.images, {i.tag: i.digest for i in there.images}, match=pattern, since=since)
    result = BackfillResult(route, repository, plan, dry_run, invalid=held.invalid)
    if on_plan is not None:
        on_plan(result)
    specs = _specs(repository, plan.to_promote, route)
    if specs:
        result.images = promote_images(context, to, specs, source=source, dry_run=dry_run, progress=progress)
    return result


def _specs(repository: str, tags: Sequence[PlannedTag], route: Route) -> list[ImageSpec]:
    hint = (
        f"the tag moved in {route.source!r} after its ECR was listed: tags never move there "
        "either; check the source account, then run the backfill again"
    )
    return [ImageSpec(repository, t.tag, t.source_digest, pin_hint=hint) for t in tags]
