"""What a release must pass before it is applied into a stage (issue 14): approvals of its
exact plan, and no rejection of the release on its way.

Both live in the bucket of the account they are about, beside its release log:

    releases/approvals/<plan hash hex>/<UTC time>-<random>.json   one per approval, append-only
    releases/rejected/<sha256 of the release name, 32 hex>.json   one per rejected release

* ``cloudops approve PLAN.json`` (:func:`approve_plan`) records an approval of *that plan
  hash* by the identity the approver's credentials act as (STS), after the account guard
  proved they act in the destination account and the stage's ``approvers`` patterns
  admit it. ``apply``, ``promote release`` and ``rollback`` (:func:`require_gates`) refuse
  (exit 3, naming what is missing) a plan into a stage that requires an approval and has
  none that is valid now (the patterns are checked again at apply: the pipeline may have
  changed), or whose only approver is who applies it (unless ``allow_self_approval``).
* ``cloudops reject RELEASE --account A --reason TEXT`` (:func:`reject_release`) marks
  the release in A: it is refused as long as A is the source or the destination of a
  plan, so it cannot leave A nor be applied there again.

Everything read back is hostile input (whoever may write a bucket may write these): read
bounded, validated, the account and plan hash checked; an approval that is not valid is
not counted and is named; a rejection marker that cannot be read refuses the release
(it fails closed: someone meant to stop it).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import botocore.exceptions
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator

from cloudops.aws.account import AccountCredentials
from cloudops.aws.guard import require_account
from cloudops.aws.s3_json import read_json_object, read_json_objects
from cloudops.aws.sessions import aws_error, object_missing
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import Approval
from cloudops.pipeline.plan import AccountName, PromotionPlan, inert_text
from cloudops.pipeline.records import AccountId, Digest, PromotionRecord, iso_time_with_zone
from cloudops.release_current import RELEASES_PREFIX, ReleaseStore
from cloudops.release_current import store_for as release_store_for

FORMAT: Final = 1
APPROVALS_PREFIX: Final = RELEASES_PREFIX + "approvals/"
REJECTED_PREFIX: Final = RELEASES_PREFIX + "rejected/"
MAX_APPROVALS: Final = 100
"""Approvals of one plan read at most (a list call's page); more are not looked at."""
MAX_REASON: Final = 1000

_Release = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(inert_text)]
_Who = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(inert_text)]
_Note = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON), AfterValidator(inert_text)]
_Time = Annotated[str, StringConstraints(max_length=40), AfterValidator(iso_time_with_zone)]
_STS_ARN = re.compile(r"arn:aws[a-z-]*:(?:sts|iam)::[0-9]{12}:[\x21-\x7e]{1,900}")


def _arn(value: str) -> str:
    if not _STS_ARN.fullmatch(value):
        raise ValueError("not an STS or IAM ARN")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApprovalRecord(_Strict):
    """One approval object."""

    format: Literal[1]
    plan_hash: Digest
    release: _Release
    purpose: Literal["release", "rollback", "db-reset"]
    account: AccountName
    account_id: AccountId
    approver: Annotated[str, AfterValidator(_arn)]
    """The STS caller ARN of the approver's credentials (checked by the account guard)."""
    note: _Note | None = None
    """Who approved as the approving system knows them, e.g. ``jenkins:alice``."""
    when: _Time
    jenkins_build: _Who | None = None

    def describe(self) -> str:
        by = f" ({self.note})" if self.note else ""
        return f"{self.approver}{by} at {self.when}"


class Rejection(_Strict):
    """A release rejected in an account."""

    format: Literal[1]
    release: _Release
    account: AccountName
    account_id: AccountId
    reason: _Note
    who: _Who
    when: _Time
    jenkins_build: _Who | None = None

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return value.strip() or "(no reason)"

    def describe(self) -> str:
        where = f"in {self.account} by {self.who} at {self.when}"
        return f"release {self.release} was rejected {where}: {self.reason}"


def principal(arn: str) -> str:
    """The identity behind an STS caller ARN: an assumed role's ARN without its session
    name (each run of the same role gets another session name), any other ARN as it is."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        return ":".join(parts[:5]) + ":" + "/".join(parts[5].split("/")[:2])
    return arn


def rejection_key(release: str) -> str:
    """The marker's key: a hash of the name, so no release name can shape a key."""
    return f"{REJECTED_PREFIX}{hashlib.sha256(release.encode()).hexdigest()[:32]}.json"


def approvals_prefix(plan_hash: str) -> str:
    return f"{APPROVALS_PREFIX}{plan_hash.removeprefix('sha256:')}/"


def _jenkins_build() -> str | None:
    return os.environ.get("BUILD_URL") or os.environ.get("BUILD_TAG") or None


def _now() -> datetime:
    return datetime.now(UTC)


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundApprovals:
    """The approvals of one plan found in the destination's bucket: the valid ones, and
    why each other object was not counted (never its content)."""

    valid: list[ApprovalRecord]
    not_counted: list[str]


def read_approvals(store: ReleaseStore, plan: PromotionPlan) -> FoundApprovals:
    prefix = approvals_prefix(plan.plan_hash)
    try:
        listed = read_json_objects(
            store.bucket.client,
            store.bucket.name,
            prefix,
            ApprovalRecord,
            max_keys=MAX_APPROVALS,
            read_at_most=MAX_APPROVALS,
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"reading the approvals in s3://{store.bucket.name}/{prefix}") from None
    valid: list[ApprovalRecord] = []
    not_counted: list[str] = []
    for item in listed:
        approval = item.found.value
        if approval is None:
            not_counted.append(f"{item.name}: {item.found.problem}")
        elif approval.plan_hash != plan.plan_hash or approval.account_id != store.account_id:
            not_counted.append(f"{item.name}: approves another plan or account")
        elif approval.approver.split(":")[4] != store.account_id:
            not_counted.append(f"{item.name}: made by an identity of another account")
        elif approval.purpose != plan.route.purpose or approval.release != plan.route.release:
            not_counted.append(f"{item.name}: approves another release")
        else:
            valid.append(approval)
    return FoundApprovals(valid, not_counted)


def read_rejection(store: ReleaseStore, release: str) -> Rejection | None:
    """The account's rejection of ``release``, or None. A marker that is there but cannot
    be read as one of this release in this account refuses (fails closed)."""
    key = rejection_key(release)
    where = f"s3://{store.bucket.name}/{key}"
    try:
        found = read_json_object(store.bucket.client, store.bucket.name, key, Rejection)
    except botocore.exceptions.ClientError as exc:
        if object_missing(exc):
            return None
        raise aws_error(exc, f"reading {where}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_error(exc, f"reading {where}") from None
    value = found.value
    if value is None or value.release != release or value.account_id != store.account_id:
        why = found.problem or "it names another release or account"
        raise RefusedError(
            f"release {release} has a rejection marker in {store.account!r} that cannot be read ({why}): "
            "treated as rejected",
            hint=f"look at {where}; delete it only if nobody meant to reject the release",
        )
    return value


MAX_REJECTIONS: Final = 100
"""Rejection markers an account's listing shows at most (status)."""


def list_rejections(store: ReleaseStore) -> tuple[list[Rejection], list[str]]:
    """Every release rejected in the account (at most MAX_REJECTIONS, newest first), and
    why other objects under the prefix are not shown as rejections (never their content)."""
    client, bucket = store.bucket.client, store.bucket.name
    try:
        listed = read_json_objects(
            client, bucket, REJECTED_PREFIX, Rejection, max_keys=MAX_REJECTIONS, read_at_most=MAX_REJECTIONS
        )
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"reading the rejections in s3://{bucket}/{REJECTED_PREFIX}") from None
    found: list[Rejection] = []
    problems: list[str] = []
    for item in listed:
        value = item.found.value
        if value is None:
            problems.append(f"{item.name}: {item.found.problem}")
        elif value.account_id != store.account_id or item.found.key != rejection_key(value.release):
            problems.append(f"{item.name}: names another account or release than its key")
        else:
            found.append(value)
    return sorted(found, key=lambda r: r.when, reverse=True), problems


# -- the gates ---------------------------------------------------------------------------


def require_not_rejected(context: PipelineContext, plan: PromotionPlan) -> list[str]:
    """Refuse (exit 3) a plan whose release was rejected in its source or its
    destination account; the checks made, for the report."""
    route = plan.route
    checks = []
    for account in dict.fromkeys((route.source, route.destination)):
        found = read_rejection(release_store_for(context, account), route.release)
        if found is not None:
            where = "from" if account == route.source else "into"
            raise RefusedError(
                f"refusing to promote release {route.release} {where} {account!r}: {found.describe()}",
                hint="a rejected release is not promoted again: publish a new release",
            )
        checks.append(f"release {route.release} not rejected in {account}")
    return checks


def require_approval(context: PipelineContext, plan: PromotionPlan, applier_arn: str) -> list[str]:
    """Refuse (exit 3) a plan into a stage that requires an approval without one that
    counts: by an identity the stage's approvers admit now, of this exact plan, and not
    only by who applies it (unless the pipeline allows that). The checks made."""
    dst = plan.route.destination
    rule = context.pipeline.approval(dst)
    if not rule.required and plan.route.purpose != "db-reset":  # a reset always needs one
        return [f"no approval required for {dst}"]
    found = read_approvals(release_store_for(context, dst), plan)
    admitted = [a for a in found.valid if rule.admits(a.approver)]
    not_admitted = [a.approver for a in found.valid if not rule.admits(a.approver)]
    short = plan.plan_hash[:19] + "…"
    if not admitted:
        seen = ""
        if not_admitted:
            seen += f"; approved only by identities that are not approvers now: {', '.join(not_admitted)}"
        if found.not_counted:
            seen += f"; not counted: {', '.join(found.not_counted)}"
        raise RefusedError(
            f"{dst} requires an approval of plan {short} by {_who_may(rule, dst)}: none recorded{seen}",
            hint="write the plan to a file (`cloudops plan --out PLAN.json`, or `cloudops "
            "rollback --out PLAN.json`), an approver runs `cloudops approve PLAN.json`, then "
            "`cloudops apply PLAN.json`",
        )
    applier = principal(applier_arn)
    others = [a for a in admitted if principal(a.approver) != applier]
    if not others and not rule.allow_self_approval:
        raise RefusedError(
            f"the only approver of plan {short} is {applier}, who is applying it: "
            f"{dst} needs another approver",
            hint="another approver runs `cloudops approve PLAN.json` (or the pipeline allows "
            "self-approval: approvals.<stage>.allow_self_approval)",
        )
    return [f"approved for {dst}: {a.describe()}" for a in (others or admitted)]


def _who_may(rule: Approval, account: str) -> str:
    return " or ".join(rule.approvers) if rule.approvers else f"an identity of account {account!r}"


def require_gates(context: PipelineContext, plan: PromotionPlan, applier_arn: str) -> list[str]:
    """Every gate a plan passes before anything is written (the checks made)."""
    return require_not_rejected(context, plan) + require_approval(context, plan, applier_arn)


# -- writing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalResult:
    approval: ApprovalRecord
    key: str
    required: bool

    def as_dict(self) -> dict[str, object]:
        return {**self.approval.model_dump(mode="json"), "key": self.key, "required": self.required}


def approve_plan(context: PipelineContext, plan: PromotionPlan, *, note: str | None = None) -> ApprovalResult:
    """Record an approval of ``plan`` in its destination's bucket, by the identity the
    destination's credentials (the context's: the approver's, with any override) act
    as. Refused (exit 3) when that identity is not an approver of the stage or the
    release is rejected there; the plan is not applied."""
    dst = plan.route.destination
    if note is not None:
        note = _one_line(note, "--note")
    arn = require_account(context.session(dst), purpose=f"approve plan {plan.plan_hash[:19]}… into {dst!r}")
    rule = context.pipeline.approval(dst)
    if not rule.admits(arn):
        raise RefusedError(
            f"{arn} is not an approver of {dst}: approvers are {_who_may(rule, dst)}",
            hint="approve with an approver's credentials (--role-arn or --credentials-env)",
        )
    store = release_store_for(context, dst)
    found = read_rejection(store, plan.route.release)
    if found is not None:
        raise RefusedError(f"refusing to approve: {found.describe()}", hint="publish a new release")
    now = _now()
    approval = ApprovalRecord(
        format=FORMAT,
        plan_hash=plan.plan_hash,
        release=plan.route.release,
        purpose=plan.route.purpose,
        account=dst,
        account_id=plan.route.destination_id,
        approver=arn,
        note=note,
        when=now.isoformat(timespec="seconds"),
        jenkins_build=_jenkins_build(),
    )
    key = f"{approvals_prefix(plan.plan_hash)}{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}.json"
    store.bucket.put_json(key, approval.model_dump(mode="json"), what="recording the approval", only_new=True)
    history.append(
        context,
        PromotionRecord.new(
            kind="approval",
            who=history.who_am_i(arn),
            source_account=plan.route.source,
            source_account_id=plan.route.source_id,
            destination_account=dst,
            destination_account_id=plan.route.destination_id,
            version=plan.route.release,
            result="approved",
            plan_hash=plan.plan_hash,
            reason=approval.note[:512] if approval.note else None,  # a record's bound
        ),
    )
    return ApprovalResult(approval, key, rule.required)


@dataclass(frozen=True)
class RejectionResult:
    rejection: Rejection
    already: bool
    """True when the release was rejected there before (the first rejection stays)."""

    def as_dict(self) -> dict[str, object]:
        return {**self.rejection.model_dump(mode="json"), "already_rejected": self.already}


def reject_release(context: PipelineContext, account: str, release: str, reason: str) -> RejectionResult:
    """Mark ``release`` rejected in ``account``'s bucket (never over an earlier
    rejection) and record it in its history."""
    try:
        name = _release_name(release)
    except ValueError:
        raise InputError("a release name is 1 to 128 characters, without control characters") from None
    reason = _one_line(reason, "--reason")
    pipeline = context.pipeline
    arn = require_account(context.session(account), purpose=f"reject release {name} in {account!r}")
    store = release_store_for(context, account)
    earlier = read_rejection(store, name)
    if earlier is not None:
        return RejectionResult(earlier, already=True)
    now = _now()
    rejection = Rejection(
        format=FORMAT,
        release=name,
        account=account,
        account_id=pipeline.account(account).account_id,
        reason=reason,
        who=history.who_am_i(arn),
        when=now.isoformat(timespec="seconds"),
        jenkins_build=_jenkins_build(),
    )
    try:
        store.bucket.put_json(
            rejection_key(name),
            rejection.model_dump(mode="json"),
            what="recording the rejection",
            only_new=True,
        )
    except CloudopsError:
        again = read_rejection(store, name)  # another run rejected it meanwhile
        if again is None:
            raise
        return RejectionResult(again, already=True)
    history.append(
        context,
        PromotionRecord.new(
            kind="rejection",
            who=rejection.who,
            source_account=account,
            source_account_id=rejection.account_id,
            destination_account=account,
            destination_account_id=rejection.account_id,
            version=name,
            result="rejected",
            reason=rejection.reason[:512],
        ),
    )
    return RejectionResult(rejection, already=False)


def approver_overrides(
    context: PipelineContext, account: str, *, role_arn: str | None, env_prefix: str | None
) -> dict[str, AccountCredentials]:
    """Credentials for ``account`` acting as an approver: the account's own base
    credentials with another role assumed (``role_arn``), or other keys (``env_prefix``),
    used as they are unless ``role_arn`` is given too."""
    if role_arn is None and env_prefix is None:
        return {}
    own = context.pipeline.account(account).credentials
    update: dict[str, object] = {"jenkins_credentials_id": None}
    if env_prefix is not None:
        # The approver's own keys: the account's role (the deploying identity) is not
        # assumed from them, or the approval would be made as that role.
        update.update(env_prefix=env_prefix, profile=None, role_arn=None, external_id=None)
    if role_arn is not None:
        update.update(role_arn=role_arn, external_id=None)
    try:
        return {account: AccountCredentials.model_validate({**own.model_dump(), **update})}
    except ValueError as exc:
        raise InputError(f"approver credentials: {exc}".splitlines()[0]) from None


def _one_line(value: str, option: str) -> str:
    value = value.strip()
    try:
        if not 1 <= len(value) <= MAX_REASON:
            raise ValueError("length")
        return inert_text(value)
    except ValueError:
        raise InputError(
            f"{option} must be one line of 1 to {MAX_REASON} characters, without control characters"
        ) from None


def _release_name(value: str) -> str:
    if not 1 <= len(value) <= 128:
        raise ValueError("length")
    return inert_text(value)


__all__ = [
    "APPROVALS_PREFIX",
    "REJECTED_PREFIX",
    "ApprovalRecord",
    "ApprovalResult",
    "FoundApprovals",
    "Rejection",
    "RejectionResult",
    "approve_plan",
    "approver_overrides",
    "list_rejections",
    "principal",
    "read_approvals",
    "read_rejection",
    "reject_release",
    "rejection_key",
    "require_approval",
    "require_gates",
    "require_not_rejected",
]
