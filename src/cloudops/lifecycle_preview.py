"""What an account's ECR lifecycle policies would expire, and whether a release still uses
it (issue 16: a lifecycle that never deletes what runs).

For each image repository of the pipeline (``images:``), in the account's own ECR, behind
the account guard: the repository's lifecycle policy (GetLifecyclePolicy; none means
nothing expires), its images (DescribeImages: digest, tags, push time; paged and bounded),
and the policy evaluated on them (lifecycle.py, pure). Each digest that would expire is
then looked up in what the account runs or may roll back to: its current release
(releases/current.json) and the newest ``keep_releases`` entries of its release log
(release_rollback.read_log). Only read calls are made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import botocore.exceptions

from cloudops.aws.ecr import lifecycle_policy_text
from cloudops.aws.guard import require_account
from cloudops.aws.sessions import aws_error
from cloudops.lifecycle import Expiry, Image, LifecyclePolicyError, evaluate, parse_policy
from cloudops.pipeline.context import PipelineContext
from cloudops.release_current import CurrentRelease
from cloudops.release_current import store_for as release_store_for
from cloudops.release_rollback import MAX_LOG_READ, read_log

DEFAULT_KEEP_RELEASES: Final = 3
"""Releases of the log, newest first, kept for rollback unless told otherwise."""
MAX_KEEP_RELEASES: Final = MAX_LOG_READ
"""The release log is read at most this far back (release_rollback.py)."""
MAX_IMAGES: Final = 100_000
"""ECR's quota of images per repository: more in one listing is not believed."""
PAGE_SIZE: Final = 1000
"""DescribeImages' largest page."""
MAX_TAGS_PER_IMAGE: Final = 1000
_MAX_DIGEST: Final = 200
_MAX_TAG: Final = 300


@dataclass(frozen=True)
class ReleaseUse:
    """A release whose images must stay: the current one or one kept for rollback."""

    release: str
    plan_hash: str
    current: bool

    @property
    def label(self) -> str:
        return f"{self.release} ({'current' if self.current else 'kept for rollback'})"

    def as_dict(self) -> dict[str, object]:
        return {"release": self.release, "plan_hash": self.plan_hash, "current": self.current}


@dataclass(frozen=True)
class ExpiringImage:
    repository: str
    expiry: Expiry
    in_use_by: tuple[ReleaseUse, ...] = ()

    @property
    def in_use(self) -> bool:
        return bool(self.in_use_by)

    def as_dict(self) -> dict[str, object]:
        image = self.expiry.image
        return {
            "digest": image.digest,
            "tags": list(image.tags),
            "pushed_at": image.pushed_at.astimezone(UTC).isoformat(timespec="seconds"),
            "rule": {"priority": self.expiry.rule_priority, "description": self.expiry.rule_description},
            "in_use_by": [u.as_dict() for u in self.in_use_by],
        }


@dataclass
class RepositoryPreview:
    repository: str
    has_policy: bool = False
    images: int = 0
    expiring: list[ExpiringImage] = field(default_factory=list)
    note: str | None = None
    """Why nothing was evaluated, when that is normal (no repository, no policy)."""
    problem: str | None = None
    """Why the policy could not be evaluated (invalid, not supported, too many images):
    nothing is known of what it would expire."""

    def as_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "has_policy": self.has_policy,
            "images": self.images,
            "note": self.note,
            "problem": self.problem,
            "expiring": [e.as_dict() for e in self.expiring],
        }


@dataclass
class LifecyclePreview:
    account: str
    account_id: str
    keep_releases: int
    releases: list[ReleaseUse] = field(default_factory=list)
    repositories: list[RepositoryPreview] = field(default_factory=list)
    log_skipped: list[str] = field(default_factory=list)

    @property
    def in_use(self) -> list[ExpiringImage]:
        """Images a rule would expire while a release (current or kept) uses them."""
        return [e for r in self.repositories for e in r.expiring if e.in_use]

    @property
    def problems(self) -> list[RepositoryPreview]:
        return [r for r in self.repositories if r.problem]

    @property
    def ok(self) -> bool:
        """Nothing in use would expire and every policy could be evaluated."""
        return not self.in_use and not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "account_id": self.account_id,
            "ok": self.ok,
            "keep_releases": self.keep_releases,
            "releases": [r.as_dict() for r in self.releases],
            "expiring": sum(len(r.expiring) for r in self.repositories),
            "in_use_expiring": len(self.in_use),
            "repositories": [r.as_dict() for r in self.repositories],
            "release_log_skipped": self.log_skipped,
        }


def releases_in_use(
    context: PipelineContext, account: str, keep_releases: int
) -> tuple[list[ReleaseUse], dict[tuple[str, str], list[ReleaseUse]], list[str]]:
    """The current release and the ``keep_releases`` newest other releases of the release
    log (distinct by name, newest entry of each): the
    releases, (repository, digest) -> the releases using it, and log entries skipped.
    The caller has passed the account guard. current.json unreadable:
    UnreadableCurrentError (what is in use is then not known, so nothing is judged)."""
    store = release_store_for(context, account)
    current = store.read()
    log = read_log(store) if keep_releases > 0 else None
    documents: list[tuple[CurrentRelease, bool]] = [(current, True)] if current is not None else []
    if log is not None:
        # N releases besides the current one, by name, newest first: the current release is
        # usually the newest log entry too, and a release applied again adds an entry of
        # the same name (what rollback goes back to is the newest entry of another name).
        kept: list[str] = [current.release] if current is not None else []
        for entry in log.entries:
            if len(kept) - (current is not None) >= keep_releases:
                break
            if entry.release not in kept:
                kept.append(entry.release)
                documents.append((entry, False))
    releases: list[ReleaseUse] = []
    uses: dict[tuple[str, str], list[ReleaseUse]] = {}
    seen: set[str] = set()
    for document, is_current in documents:
        if document.plan_hash in seen:  # the current release is usually the newest log entry too
            continue
        seen.add(document.plan_hash)
        use = ReleaseUse(document.release, document.plan_hash, is_current)
        releases.append(use)
        for image in document.images:
            uses.setdefault((image.repository, image.digest), []).append(use)
    return releases, uses, (log.skipped if log is not None else [])


def preview_lifecycle(
    context: PipelineContext,
    account: str,
    *,
    keep_releases: int = DEFAULT_KEEP_RELEASES,
    now: datetime | None = None,
) -> LifecyclePreview:
    """What the lifecycle policies of ``account``'s image repositories would expire now,
    each expiring image with the releases that still use it. Read only."""
    if not 0 <= keep_releases <= MAX_KEEP_RELEASES:
        raise LifecyclePolicyError(f"keep releases must be 0 to {MAX_KEEP_RELEASES}, not {keep_releases}")
    session = context.session(account)
    require_account(session, purpose=f"read the lifecycle policies of account {account!r}")
    account_id = session.account.account_id
    releases, uses, skipped = releases_in_use(context, account, keep_releases)
    preview = LifecyclePreview(account, account_id, keep_releases, releases, log_skipped=skipped)
    moment = now or datetime.now(UTC)
    client = session.client("ecr")
    for repository in context.pipeline.images:
        found = _preview_repository(client, account, account_id, repository, moment)
        found.expiring = [
            ExpiringImage(repository, e.expiry, tuple(uses.get((repository, e.expiry.image.digest), ())))
            for e in found.expiring
        ]
        preview.repositories.append(found)
    return preview


def _preview_repository(
    client: Any, account: str, account_id: str, repository: str, now: datetime
) -> RepositoryPreview:
    found = RepositoryPreview(repository)
    where = f"the lifecycle policy of {repository} in {account!r}"
    try:
        text = lifecycle_policy_text(client, account_id, repository)
    except botocore.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) == "RepositoryNotFoundException":
            found.note = "no such repository in this account"
            return found
        raise aws_error(exc, f"reading {where}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_error(exc, f"reading {where}") from None
    if text is None:
        found.note = "no lifecycle policy: nothing expires"
        return found
    found.has_policy = True
    try:
        policy = parse_policy(text, where=where)
    except LifecyclePolicyError as exc:
        found.problem = exc.message
        return found
    try:
        images = _images(client, account_id, repository)
    except _TooMany as exc:
        found.problem = str(exc)
        return found
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"listing the images of {repository} in {account!r}") from None
    found.images = len(images)
    found.expiring = [ExpiringImage(repository, e) for e in evaluate(policy, images, now)]
    return found


class _TooMany(Exception):
    pass


def _images(client: Any, account_id: str, repository: str) -> list[Image]:
    """Every active image of the repository, paged, at most MAX_IMAGES; a detail that is
    not as ECR documents it (no digest, no push time, absurd sizes) is not guessed at."""
    images: dict[str, Image] = {}
    token: str | None = None
    for _ in range(MAX_IMAGES // PAGE_SIZE + 1):
        params: dict[str, Any] = {
            "registryId": account_id,
            "repositoryName": repository,
            "maxResults": PAGE_SIZE,
        }
        if token:
            params["nextToken"] = token
        page = client.describe_images(**params)
        for detail in page.get("imageDetails", []):
            image = _image(detail)
            if image is None:
                continue
            # One image per digest, whatever the listing repeats: every tag it was listed
            # with, and the earliest push time (the evaluator counts images, not entries).
            seen = images.get(image.digest)
            if seen is not None:
                tags = seen.tags + tuple(t for t in image.tags if t not in seen.tags)
                image = Image(image.digest, tags, min(seen.pushed_at, image.pushed_at))
            images[image.digest] = image
        if len(images) > MAX_IMAGES:
            break
        token = page.get("nextToken")
        if not token:
            return list(images.values())
    raise _TooMany(f"{repository} lists more than {MAX_IMAGES} images (ECR's quota): not evaluated")


def _image(detail: Any) -> Image | None:
    if not isinstance(detail, dict):
        return None
    if detail.get("imageStatus", "ACTIVE") != "ACTIVE":  # archived images: not modelled
        return None
    digest, pushed = detail.get("imageDigest"), detail.get("imagePushedAt")
    tags = detail.get("imageTags") or []
    if not isinstance(digest, str) or not 0 < len(digest) <= _MAX_DIGEST or not isinstance(pushed, datetime):
        return None
    if not isinstance(tags, list) or len(tags) > MAX_TAGS_PER_IMAGE:
        return None
    clean = tuple(t for t in tags if isinstance(t, str) and 0 < len(t) <= _MAX_TAG)
    return Image(digest, clean, pushed if pushed.tzinfo else pushed.replace(tzinfo=UTC))


__all__ = [
    "DEFAULT_KEEP_RELEASES",
    "MAX_KEEP_RELEASES",
    "ExpiringImage",
    "LifecyclePreview",
    "ReleaseUse",
    "RepositoryPreview",
    "preview_lifecycle",
    "releases_in_use",
]
