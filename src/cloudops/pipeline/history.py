"""Promotion history: who promoted what, from where, to where, with what result. Each
record (pipeline/records.py) is appended to the destination account's own bucket
(aws/s3.py: one object per record, never overwritten) and read back by `cloudops
history`, `status` and its HTML page, validated, attributed to the bucket it came from
and ordered by its key's date (records.py says why). Reading is concurrent and mostly
one GET per day (pipeline/history_daily.py).
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cloudops.aws.guard import require_account
from cloudops.aws.s3 import AccountBucket, StoredRecord
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.history_daily import READ_WORKERS, DailyReader, compact
from cloudops.pipeline.records import (
    CLOCK_SKEW,
    HISTORY_PREFIX,
    MAX_RECORD_BYTES,
    PromotionRecord,
    ReadRecord,
    UnreadableRecord,
    key_date,
    parse_record,
)

DEFAULT_LIMIT = 10_000
"""Records read per account, newest keys first; older ones are counted as dropped."""
MAX_UNREADABLE_LISTED = 1_000
"""Unreadable objects listed one by one per account (in memory, in --json); the rest are
counted (``Dropped.unreadable``): a flood of junk keys cannot fill memory or the output.
Objects under record keys are listed before keys that are not record keys at all."""
NOT_A_RECORD_KEY = "not a promotion record key"

log = logging.getLogger(__name__)


@dataclass
class Dropped:
    """Records of one account not read at all, by why."""

    older: int = 0
    """Beyond the newest ``limit`` keys."""
    future: int = 0
    """Keys dated in the future: they would otherwise sort above every real record."""
    unreadable: int = 0
    """Unreadable objects past the first MAX_UNREADABLE_LISTED, counted, not listed."""

    @property
    def total(self) -> int:
        return self.older + self.future + self.unreadable

    def as_dict(self) -> dict[str, int]:
        out = {"older_than_limit": self.older, "dated_in_the_future": self.future}
        if self.unreadable:  # only then: the shape stays what it was without a flood
            out["unreadable_not_listed"] = self.unreadable
        return out


@dataclass
class HistoryRead:
    """Everything read from the accounts' buckets. ``records`` are believable records
    (read from the bucket of the account they name); records with findings are in
    ``suspect``, attributed to the bucket they came from."""

    records: list[ReadRecord] = field(default_factory=list)
    suspect: list[ReadRecord] = field(default_factory=list)
    unreadable_records: list[UnreadableRecord] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    """Accounts whose history could not be read at all, and why."""
    dropped: dict[str, Dropped] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    """Accounts a guard rail refused to read (credentials of another account, a bucket
    another account owns): also in ``unreadable``, and `history` exits 3 for them."""

    def refusal(self) -> RefusedError | None:
        """The guard's refusal of the accounts in ``refused``, for the caller to raise
        after it has shown what it could read."""
        if not self.refused:
            return None
        names = ", ".join(sorted(self.refused))
        return RefusedError(
            f"refused to read the promotion history of {names}: see 'could not read' above",
            hint="fix the account's credentials or its bucket in pipeline.yaml",
        )

    @property
    def has_findings(self) -> bool:
        return bool(
            self.suspect
            or self.unreadable_records
            or any(d.future or d.unreadable for d in self.dropped.values())
        )

    def of(self, account: str) -> list[ReadRecord]:
        return [r for r in self.records if r.account == account]

    def suspect_of(self, account: str) -> list[ReadRecord]:
        return [r for r in self.suspect if r.account == account]

    def unreadable_of(self, account: str) -> list[UnreadableRecord]:
        return [u for u in self.unreadable_records if u.account == account]

    def findings(self) -> list[dict[str, Any]]:
        return [f for r in self.suspect for f in r.finding_dicts()]

    def extras(self) -> dict[str, Any]:
        """The JSON additions beside ``records`` and ``unreadable`` (docs/status.md)."""
        return {
            "findings": self.findings(),
            "unreadable_records": [u.as_dict() for u in self.unreadable_records],
            "dropped": {name: d.as_dict() for name, d in self.dropped.items() if d.total},
        }


def who_am_i(arn: str) -> str:
    """The caller's ARN, and the local user where that says more (never a key)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{arn} ({user})"


def append(context: PipelineContext, record: PromotionRecord) -> None:
    """Write the record, then the daily objects of past days that lack one (:func:`compact`).
    Compaction is an index only: whatever goes wrong with it never fails the promotion
    (it is logged, and the next append tries again)."""
    bucket = AccountBucket(
        context.session(record.destination_account), context.pipeline.bucket(record.destination_account)
    )
    bucket.append_record(HISTORY_PREFIX + record.key, record.model_dump(mode="json"))
    try:
        compact(bucket)
    except Exception as error:  # never fail a promotion over its index
        log.warning(
            "promotion history of %r not compacted (the record is written; the next promotion retries): %s",
            record.destination_account,
            error,
        )


def read_history(
    context: PipelineContext,
    accounts: list[str] | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> HistoryRead:
    """The records of the given accounts (default all), oldest first by key. Each account
    is read behind the account guard (credentials that act in another account would show
    that account's log under this name), and each record is attributed to the account
    whose bucket held it."""
    names = accounts or list(context.pipeline.stages)
    moment = now or datetime.now(UTC)
    result = HistoryRead()

    def read(name: str) -> _AccountRead:
        try:
            session = context.session(name)
            require_account(session, purpose=f"read the promotion history of account {name!r}")
            bucket = AccountBucket(session, context.pipeline.bucket(name))
            account_id = context.pipeline.account(name).account_id
            return read_account(bucket, name, account_id, limit=limit, now=moment)
        except CloudopsError as error:
            return _AccountRead(name, error=str(error), refused=error.kind == "refused")

    with ThreadPoolExecutor(max_workers=min(8, len(names) or 1)) as pool:
        for found in pool.map(read, names):
            if found.error is not None:
                result.unreadable[found.name] = found.error
                if found.refused:
                    result.refused.append(found.name)
                continue
            result.records.extend(r for r in found.records if r.trusted)
            result.suspect.extend(r for r in found.records if not r.trusted)
            result.unreadable_records.extend(found.unreadable)
            result.dropped[found.name] = found.dropped
    result.records.sort(key=_order)
    result.suspect.sort(key=_order)
    return result


def _order(record: ReadRecord) -> tuple[datetime, str, str]:
    return (record.written, record.key, record.account)


@dataclass
class _AccountRead:
    name: str
    records: list[ReadRecord] = field(default_factory=list)
    unreadable: list[UnreadableRecord] = field(default_factory=list)
    dropped: Dropped = field(default_factory=Dropped)
    error: str | None = None
    refused: bool = False


def read_account(
    bucket: AccountBucket,
    name: str,
    account_id: str,
    *,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
    workers: int = READ_WORKERS,
    daily: bool = True,
) -> _AccountRead:
    """One account's log: list the keys, order them by their own date, take the newest
    ``limit``; read those from the daily objects of their days (``daily``: one GET per
    day) and the rest one GET per record, ``workers`` at once (each at most
    MAX_RECORD_BYTES + 1 bytes); validate and attribute each."""
    moment = now or datetime.now(UTC)
    found = _AccountRead(name)
    listing = bucket.list_records(prefix=HISTORY_PREFIX)
    listed: list[tuple[datetime, StoredRecord]] = []
    for stored in listing:
        written = key_date(stored.key)
        if written is None:
            found.unreadable.append(UnreadableRecord(name, stored.key, NOT_A_RECORD_KEY, stored.size))
            if len(found.unreadable) >= 2 * MAX_UNREADABLE_LISTED:
                _cap_unreadable(found)  # bounded memory however many junk keys are listed
        elif written > moment + CLOCK_SKEW:
            found.dropped.future += 1
        elif stored.size > MAX_RECORD_BYTES:
            found.unreadable.append(
                UnreadableRecord(
                    name,
                    stored.key,
                    f"{stored.size} bytes, larger than the {MAX_RECORD_BYTES}-byte bound",
                    stored.size,
                )
            )
        else:
            listed.append((written, stored))
    listed.sort(key=lambda item: (item[0], item[1].key), reverse=True)
    if limit >= 0 and len(listed) > limit:
        found.dropped.older = len(listed) - limit
        listed = listed[:limit]

    outcomes: dict[str, ReadRecord | UnreadableRecord] = {}
    if daily and listed:
        days = DailyReader(
            bucket,
            name,
            account_id,
            existing={s.key for s in listing},
            wanted={s.key: (written, s) for written, s in listed},
            now=moment,
        )
        outcomes, problems = days.read(workers)
        found.unreadable.extend(problems)

    def parse(item: tuple[datetime, StoredRecord]) -> ReadRecord | UnreadableRecord:
        written, stored = item
        try:
            body = bucket.read_record(stored.key, MAX_RECORD_BYTES)
        except CloudopsError as error:  # gone since it was listed, or denied: this record only
            return UnreadableRecord(name, stored.key, str(error), stored.size)
        return parse_record(body, name, account_id, stored.key, written, now=moment)

    rest = [item for item in listed if item[1].key not in outcomes]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(rest)))) as pool:
        for item, outcome in zip(rest, pool.map(parse, rest), strict=True):
            outcomes[item[1].key] = outcome
    for _, stored in reversed(listed):  # oldest first
        outcome = outcomes[stored.key]
        if isinstance(outcome, ReadRecord):
            found.records.append(outcome)
        else:
            found.unreadable.append(outcome)
    _cap_unreadable(found)
    return found


def _cap_unreadable(found: _AccountRead) -> None:
    """Sort the account's unreadable objects (record keys first, then by key and line) and
    keep the first MAX_UNREADABLE_LISTED, counting the rest as dropped."""
    keep = MAX_UNREADABLE_LISTED
    found.unreadable.sort(key=lambda u: (u.reason == NOT_A_RECORD_KEY, u.key, u.line or 0))
    if len(found.unreadable) > keep:
        found.dropped.unreadable += len(found.unreadable) - keep
        del found.unreadable[keep:]


# -- filters (`cloudops history --repository R --since WHEN`) -----------------------------

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date or time (2024-05-01, 2024-05-01T12:00, with or without a zone; UTC
    when none) or a span back from now (30m, 12h, 7d, 2w)."""
    value = text.strip()
    match = _RELATIVE.fullmatch(value)
    if match:
        try:
            if len(match[1]) > 12:  # past any span timedelta holds (999,999,999 days)
                raise OverflowError
            span = timedelta(**{_UNITS[match[2]]: int(match[1])})
            return (now or datetime.now(UTC)) - span
        except OverflowError:
            raise InputError(
                f"--since {text[:40]!r} reaches back before the year 1",
                hint="use a span of at most a few thousand years, e.g. 7d or 2w, or an ISO date",
            ) from None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--since {text!r} is neither an ISO date nor a span",
            hint="use e.g. 2024-05-01, 2024-05-01T12:00Z, 12h, 7d or 2w",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


_R = TypeVar("_R", PromotionRecord, ReadRecord)


def filter_records(
    records: Iterable[_R],
    *,
    repositories: Sequence[str] = (),
    since: datetime | None = None,
) -> list[_R]:
    """Records of these image repositories (any, when none given) promoted at or after
    ``since`` (by the key's date for records read from a bucket). Every result is kept:
    failed and refused promotions are history too."""
    kept = []
    for item in records:
        record = item.record if isinstance(item, ReadRecord) else item
        if repositories and record.repository not in repositories:
            continue
        if since is not None and _when(item) < since:
            continue
        kept.append(item)
    return kept


def _when(item: PromotionRecord | ReadRecord) -> datetime:
    if isinstance(item, ReadRecord):
        return item.written
    try:
        return item.moment
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
