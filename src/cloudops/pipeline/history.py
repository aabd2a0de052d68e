"""Promotion records: who promoted what, from where, to where, with what result. Each is
appended to the destination account's own bucket (aws/s3.py: one object per record,
never overwritten) and read back by `cloudops history`."""

from __future__ import annotations

import getpass
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cloudops import __version__
from cloudops.aws.guard import require_account
from cloudops.aws.s3 import AccountBucket
from cloudops.errors import CloudopsError, InputError
from cloudops.pipeline.context import PipelineContext

RecordResult = Literal["promoted", "already-promoted", "refused", "failed"]


class PromotionRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    kind: Literal["image", "package", "release"] = "image"
    when: str
    who: str
    source_account: str
    source_account_id: str
    destination_account: str
    destination_account_id: str
    repository: str | None = None
    tag: str | None = None
    source_digest: str | None = None
    version: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    result: RecordResult
    error: str | None = None
    jenkins_build: str | None = None
    tool_version: str = __version__

    @classmethod
    def new(cls, **fields: Any) -> PromotionRecord:
        now = datetime.now(UTC)
        return cls(
            id=f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}",
            when=now.isoformat(timespec="seconds"),
            jenkins_build=os.environ.get("BUILD_URL") or os.environ.get("BUILD_TAG"),
            **fields,
        )

    @property
    def key(self) -> str:
        return f"{self.id[:4]}/{self.id[4:6]}/{self.id}.json"


def who_am_i(arn: str) -> str:
    """The caller's ARN, and the local user where that says more (never a key)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{arn} ({user})"


def append(context: PipelineContext, record: PromotionRecord) -> None:
    bucket = AccountBucket(
        context.session(record.destination_account), context.pipeline.bucket(record.destination_account)
    )
    bucket.append_record(record.key, record.model_dump(mode="json"))


def read_history(
    context: PipelineContext, accounts: list[str] | None = None
) -> tuple[list[PromotionRecord], dict[str, str]]:
    """Every record of the given accounts (default all), oldest first, and for each
    account that could not be read, why. Each account is read behind the account guard:
    credentials that act in another account would show that account's log under this
    name."""
    names = accounts or list(context.pipeline.stages)
    problems: dict[str, str] = {}

    def read(name: str) -> list[PromotionRecord]:
        try:
            session = context.session(name)
            require_account(session, purpose=f"read the promotion history of account {name!r}")
            bucket = AccountBucket(session, context.pipeline.bucket(name))
            return [PromotionRecord.model_validate(r) for r in bucket.read_records() if _valid(r)]
        except CloudopsError as error:
            problems[name] = str(error)
            return []

    with ThreadPoolExecutor(max_workers=min(8, len(names) or 1)) as pool:
        found = [r for chunk in pool.map(read, names) for r in chunk]
    return sorted(found, key=lambda r: r.id), problems


def _valid(raw: dict[str, Any]) -> bool:
    try:
        PromotionRecord.model_validate(raw)
    except ValueError:
        return False
    return True


# -- filters (`cloudops history --repository R --since WHEN`) -----------------------------

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date or time (2024-05-01, 2024-05-01T12:00, with or without a zone; UTC
    when none) or a span back from now (30m, 12h, 7d, 2w)."""
    value = text.strip()
    match = _RELATIVE.match(value)
    if match:
        span = timedelta(**{_UNITS[match[2]]: int(match[1])})
        return (now or datetime.now(UTC)) - span
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--since {text!r} is neither an ISO date nor a span",
            hint="use e.g. 2024-05-01, 2024-05-01T12:00Z, 12h, 7d or 2w",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def filter_records(
    records: Iterable[PromotionRecord],
    *,
    repositories: Sequence[str] = (),
    since: datetime | None = None,
) -> list[PromotionRecord]:
    """Records of these image repositories (any, when none given) promoted at or after
    ``since``. Every result is kept: failed and refused promotions are history too."""
    kept = []
    for record in records:
        if repositories and record.repository not in repositories:
            continue
        if since is not None and _when(record) < since:
            continue
        kept.append(record)
    return kept


def _when(record: PromotionRecord) -> datetime:
    try:
        when = datetime.fromisoformat(record.when)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # only our code writes records: count as oldest
    return when if when.tzinfo else when.replace(tzinfo=UTC)
