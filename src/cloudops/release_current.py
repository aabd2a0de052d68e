"""Which release each account runs (issue 14): ``releases/current.json`` and the
append-only release log in the account's own bucket.

After a release was fully applied and verified (release_plan.execute_plan: every image
promoted or already there, the package promoted or present), :func:`write_current`
writes, in the destination account's bucket:

    releases/log/<UTC timestamp>-<plan hash hex[:12]>.json   append-only (IfNoneMatch="*")
    releases/current.json                                    moved last, then read back

both holding the same :class:`CurrentRelease` document. A release that failed in any
part never gets here, so current.json never names a release whose content is not all
there. Every S3 call goes through the account's AccountBucket client (ExpectedBucketOwner
on each call, the first touch of a bucket checked, aws/s3_owner.py).

current.json is hostile input when read back (whoever may write the bucket may write it):
:func:`read_current` reads it bounded (aws/s3_json.py), validates every field with
bounds (extra fields refused) and checks it names this account; anything else is
:class:`UnreadableCurrentError`, never a crash.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import botocore.exceptions
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cloudops.aws.guard import require_account
from cloudops.aws.s3 import AccountBucket
from cloudops.aws.s3_json import read_json_object
from cloudops.aws.s3_lock import KeyLock
from cloudops.aws.sessions import aws_error, object_missing
from cloudops.errors import CloudopsError, InputError
from cloudops.package_store import store_for as package_store_for
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.plan import (
    MAX_IMAGES,
    AccountName,
    PromotionPlan,
    Repository,
    Sha256,
    Tag,
    Version,
    inert_text,
)
from cloudops.pipeline.records import AccountId, Digest, iso_time_with_zone

FORMAT: Final = 1
RELEASES_PREFIX: Final = "releases/"
CURRENT_KEY: Final = RELEASES_PREFIX + "current.json"
LOG_PREFIX: Final = RELEASES_PREFIX + "log/"
LOCK_KEY: Final = RELEASES_PREFIX + "apply.lock"

_Release = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(inert_text)]
_Who = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(inert_text)]
_Build = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(inert_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CurrentImage(_Strict):
    repository: Repository
    tag: Tag
    digest: Digest


class CurrentPackage(_Strict):
    version: Version
    sha256: Sha256


class CurrentRelease(_Strict):
    """What releases/current.json (and each release log object) holds."""

    format: Literal[1]
    release: _Release
    plan_hash: Digest
    account: AccountName
    account_id: AccountId
    images: Annotated[list[CurrentImage], Field(max_length=MAX_IMAGES)]
    package: CurrentPackage | None
    who: _Who
    when: Annotated[str, StringConstraints(max_length=40)]
    jenkins_build: _Build | None = None

    @field_validator("when")
    @classmethod
    def _iso_time_with_zone(cls, value: str) -> str:
        return iso_time_with_zone(value)

    @property
    def short_hash(self) -> str:
        return self.plan_hash.removeprefix("sha256:")[:12]

    def summary(self) -> dict[str, Any]:
        """What `status --json` shows of it."""
        return {"release": self.release, "plan_hash": self.plan_hash, "when": self.when, "who": self.who}


class UnreadableCurrentError(InputError):
    """An account's releases/current.json that is too large, not JSON, not a current
    release or another account's."""


def current_release_of(plan: PromotionPlan, who: str, now: datetime) -> CurrentRelease:
    """The document for an executed plan (pure): every image by the digest the plan
    promoted it by, the package version and its sha256."""
    images = sorted(
        (
            CurrentImage(repository=i.repository, tag=i.tag, digest=str(i.pinned or i.source))
            for i in plan.images
        ),
        key=lambda i: (i.repository, i.tag),
    )
    package = None
    if plan.package is not None:
        package = CurrentPackage(version=plan.package.version, sha256=str(plan.package.source_sha256))
    return CurrentRelease(
        format=FORMAT,
        release=plan.route.release,
        plan_hash=plan.plan_hash,
        account=plan.route.destination,
        account_id=plan.route.destination_id,
        images=images,
        package=package,
        who=who,
        when=now.astimezone(UTC).isoformat(timespec="seconds"),
        jenkins_build=(os.environ.get("BUILD_URL") or os.environ.get("BUILD_TAG") or None),
    )


def log_key(current: CurrentRelease, now: datetime) -> str:
    stamp = f"{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"
    return f"{LOG_PREFIX}{stamp}-{current.short_hash}.json"


class ReleaseStore:
    """One account's release log and current.json, in its own bucket."""

    def __init__(self, bucket: AccountBucket):
        """``bucket``: the account's bucket, e.g. its PackageStore's (the same client)."""
        self.bucket = bucket
        self.account = bucket.session.name
        self.account_id = bucket.session.account.account_id

    @property
    def where(self) -> str:
        return f"s3://{self.bucket.name}/{CURRENT_KEY}"

    def write(self, current: CurrentRelease, now: datetime) -> str:
        """The log object first (never over another), then current.json, then current.json
        read back and compared: the log key written."""
        document = current.model_dump(mode="json")
        key = log_key(current, now)
        self.bucket.put_json(key, document, what="writing the release log", only_new=True)
        self.bucket.put_json(CURRENT_KEY, document, what="moving the current release")
        found = self.read()
        if found != current:
            raise CloudopsError(
                f"{self.where} does not read back as release {current.release} "
                f"(plan {current.short_hash}) just written",
                hint="another run may have moved it meanwhile: check `cloudops status`, then run again",
            )
        return key

    def read(self) -> CurrentRelease | None:
        """current.json, or None when there is none. UnreadableCurrentError when it is
        not a current release of this account; AWS errors as CloudopsError."""
        try:
            found = read_json_object(
                self.bucket.client,
                self.bucket.name,
                CURRENT_KEY,
                CurrentRelease,
                expected_owner=self.account_id,
            )
        except botocore.exceptions.ClientError as exc:
            if object_missing(exc):
                return None
            raise aws_error(exc, f"reading {self.where}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"reading {self.where}") from None
        hint = "promote a release into the account again to rewrite it"
        if found.value is None:
            raise UnreadableCurrentError(f"{self.where} is unreadable: {found.problem}", hint=hint)
        if found.value.account_id != self.account_id:
            raise UnreadableCurrentError(
                f"{self.where} is unreadable: it names account {found.value.account_id}, "
                f"not {self.account_id}",
                hint=hint,
            )
        return found.value


def store_for(context: PipelineContext, account: str) -> ReleaseStore:
    """The account's release store, on the package store's bucket and client."""
    return ReleaseStore(package_store_for(context, account).bucket)


def release_lock(context: PipelineContext, account: str) -> KeyLock:
    """The lock one release (apply, promote release, rollback) holds on ``account`` from
    its second look at the world to moving current.json: two releases into one account
    never interleave (the second is refused, exit 3; a killed run's lock is taken over,
    aws/s3_lock.py). Taken after the account guard: nothing is written before it."""
    require_account(context.session(account), purpose=f"apply a release into {account!r}")
    bucket = store_for(context, account).bucket
    return KeyLock(bucket.client, bucket.name, LOCK_KEY, what=f"a release into {account!r}")


def write_current(context: PipelineContext, plan: PromotionPlan, arn: str) -> CurrentRelease:
    """Record ``plan`` as the destination's current release (the caller has verified the
    release is complete). Errors are CloudopsError, for the release result."""
    now = datetime.now(UTC)
    current = current_release_of(plan, history.who_am_i(arn), now)
    store_for(context, plan.route.destination).write(current, now)
    return current


def read_current(context: PipelineContext, account: str) -> CurrentRelease | None:
    """The account's current release, or None when none was recorded: read behind the
    account guard, bounded and validated (UnreadableCurrentError otherwise)."""
    require_account(context.session(account), purpose=f"read the current release of account {account!r}")
    return store_for(context, account).read()


__all__ = [
    "CURRENT_KEY",
    "LOG_PREFIX",
    "CurrentImage",
    "CurrentPackage",
    "CurrentRelease",
    "ReleaseStore",
    "UnreadableCurrentError",
    "current_release_of",
    "log_key",
    "read_current",
    "release_lock",
    "write_current",
]
