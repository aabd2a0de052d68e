"""``cloudops rollback`` (issue 14): point an account back at an earlier release, read from
that account's own release log (release_current.py), never from a file or another account.

The earlier release is planned like any release (release_plan.py), with every image
pinned to the digest the account ran it with and its package version, from the stage
before the account: tags never move, so what the account still holds is "present" and
only what is missing (a repository cleaned up since) is promoted again. The plan's route
says ``purpose: rollback``, so an approval of the release is not an approval of a
rollback to it. It passes the same gates (not rejected, approved where the stage needs
it), is executed by the same path, and moves ``current.json`` back; its history record
is a ``rollback`` record with the plan hash.

Choosing the target (pure, :func:`choose_target`): ``--release NAME``, the newest log
entry of that name that is not the current plan; else the newest entry naming another
release than the current one. A package version older than the current one is warned
about: database change sets are forward-only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import botocore.exceptions

from cloudops.aws.guard import require_account
from cloudops.aws.s3_json import read_json_objects
from cloudops.aws.sessions import aws_error
from cloudops.copy.engine import CopyProgress
from cloudops.errors import InputError, RefusedError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.plan import PromotionPlan
from cloudops.pipeline.stages import promotion_route
from cloudops.release import Release, ReleaseImage, ReleasePackage, ReleaseResult
from cloudops.release_current import LOG_PREFIX, CurrentRelease, ReleaseStore, release_lock
from cloudops.release_current import store_for as release_store_for
from cloudops.release_gates import require_gates
from cloudops.release_plan import execute_plan, plan_release
from cloudops.versions import version_key

MAX_LOG_KEYS = 10_000
"""Release log keys listed at most (ten list pages); the newest are kept."""
MAX_LOG_READ = 50
"""Log objects read at most, newest first, to find the target."""


@dataclass(frozen=True)
class ReleaseLog:
    """An account's release log as read: valid entries newest first, and why other
    objects were skipped (never their content)."""

    entries: list[CurrentRelease]
    skipped: list[str] = field(default_factory=list)


def read_log(store: ReleaseStore) -> ReleaseLog:
    """The newest MAX_LOG_READ entries of the account's release log, validated: an entry
    that is not a release of this account is skipped and named."""
    bucket = store.bucket.name
    try:
        listed = read_json_objects(
            store.bucket.client,
            bucket,
            LOG_PREFIX,
            CurrentRelease,
            max_keys=MAX_LOG_KEYS,
            read_at_most=MAX_LOG_READ,
        )  # log keys start with their UTC time: the last ones are the newest
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"reading the release log in s3://{bucket}/{LOG_PREFIX}") from None
    entries: list[CurrentRelease] = []
    skipped: list[str] = []
    for item in listed:
        if item.found.value is None:
            skipped.append(f"{item.name}: {item.found.problem}")
        elif item.found.value.account_id != store.account_id:
            skipped.append(f"{item.name}: names another account")
        else:
            entries.append(item.found.value)
    return ReleaseLog(entries, skipped)


def choose_target(current: CurrentRelease, log: Sequence[CurrentRelease], name: str | None) -> CurrentRelease:
    """The release to roll back to (pure): the newest log entry named ``name`` that is not
    the current plan, else the newest naming another release than the current one."""
    if name is not None:
        if name == current.release:
            raise InputError(
                f"release {name} is the current release of {current.account!r}: nothing to roll back to",
                hint="name an earlier release of the account (`cloudops status` shows the current one)",
            )
        match = next((e for e in log if e.release == name and e.plan_hash != current.plan_hash), None)
    else:
        match = next((e for e in log if e.release != current.release), None)
    if match is None:
        earlier = sorted({e.release for e in log} - {current.release})
        raise InputError(
            f"no earlier release {'named ' + repr(name) + ' ' if name else ''}in the release log of "
            f"{current.account!r} (current: {current.release})",
            hint=f"releases in its log: {', '.join(earlier)}"
            if earlier
            else "no other release was recorded there",
        )
    return match


def release_of(entry: CurrentRelease) -> Release:
    """A release file's content for a log entry: every image pinned to its digest."""
    return Release(
        release=entry.release,
        images=[ReleaseImage(repository=i.repository, tag=i.tag, digest=i.digest) for i in entry.images],
        package=ReleasePackage(version=entry.package.version) if entry.package else None,
    )


@dataclass(frozen=True)
class RollbackPlan:
    plan: PromotionPlan
    arn: str
    current: CurrentRelease
    target: CurrentRelease
    warnings: list[str]


def plan_rollback(
    context: PipelineContext, to: str, *, release: str | None = None, source: str | None = None
) -> RollbackPlan:
    """Plan rolling ``to`` back (read only): the target from its own release log."""
    require_account(context.session(to), purpose=f"roll back account {to!r}")
    store = release_store_for(context, to)
    current = store.read()
    if current is None:
        raise InputError(
            f"account {to!r} has no current release recorded: nothing to roll back from",
            hint="rollback works from releases applied by cloudops (releases/current.json)",
        )
    log = read_log(store)
    target = choose_target(current, log.entries, release)
    plan, arn = plan_release(context, to, release_of(target), source, purpose="rollback")
    if (
        plan.package is not None
        and target.package is not None
        and (plan.package.source_sha256 != target.package.sha256)
    ):
        raise RefusedError(
            f"package {target.package.version} in {plan.route.source!r} is not the one "
            f"{to!r} ran with release {target.release} (sha256 {target.package.sha256[:16]}…)",
            hint="versions never change: this needs a look before any rollback",
        )
    warnings = [f"release log entry skipped: {why}" for why in log.skipped]
    if current.package and target.package:
        old, new = target.package.version, current.package.version
        if version_key(old) < version_key(new):
            warnings.append(
                f"package {old} is older than the current {new}: database change sets are "
                "forward-only, the database stays as the newer package left it"
            )
    return RollbackPlan(plan, arn, current, target, warnings)


def rollback(
    context: PipelineContext,
    to: str,
    *,
    release: str | None = None,
    source: str | None = None,
    progress: CopyProgress | None = None,
) -> tuple[RollbackPlan, ReleaseResult]:
    """Plan the rollback, pass the gates, execute it (release_plan.execute_plan)."""
    started = time.monotonic()
    promotion_route(context.pipeline, to, source)  # stage rules before the lock is written
    with release_lock(context, to):
        return _rollback_locked(context, to, release, source, started, progress)


def _rollback_locked(
    context: PipelineContext,
    to: str,
    release: str | None,
    source: str | None,
    started: float,
    progress: CopyProgress | None,
) -> tuple[RollbackPlan, ReleaseResult]:
    planned = plan_rollback(context, to, release=release, source=source)
    if not planned.plan.ok:
        raise RefusedError(
            f"rolling {to!r} back to release {planned.target.release} refuses what it would do, "
            "nothing was written: " + "; ".join(planned.plan.refusals),
            hint="fix what it refuses (the earlier release must still be at the source), then run again",
        )
    require_gates(context, planned.plan, planned.arn)
    order = [(i.repository, i.tag) for i in planned.target.images]
    result = execute_plan(context, planned.plan, planned.arn, started=started, progress=progress, order=order)
    return planned, result


__all__ = [
    "ReleaseLog",
    "RollbackPlan",
    "choose_target",
    "plan_rollback",
    "read_log",
    "release_of",
    "rollback",
]
