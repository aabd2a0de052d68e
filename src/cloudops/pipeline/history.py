"""Promotion records: who promoted what, from where, to where, with what result. Each is
appended to the destination account's own bucket (aws/s3.py: one object per record,
never overwritten) and read back by `cloudops history`, `status` and its HTML page.

Whatever is read back from a bucket is hostile input: anyone who can write to one
account's bucket could plant records there. So every record read is

* bounded in size before it is read (``MAX_RECORD_BYTES``; larger objects are refused
  unread, never read whole);
* validated field by field (:class:`PromotionRecord`: lengths, a sane ``bytes``, ISO
  times with a zone, known results, digest shapes); an invalid one is listed as
  unreadable with its key, never raised;
* attributed to the account whose bucket it was read from (:class:`ReadRecord`): a
  record in qa's bucket that claims another destination is qa's, with a finding, and
  never counted as the account it names;
* ordered by its KEY's date (``cloudops/history/YYYY/MM/<id>.json``, the id starting with
  the time it was written), never by the time it claims: records claiming a future time
  are flagged, keys dated in the future are not read, and only the newest ``limit`` keys
  of an account are read (the rest are counted as dropped, never silently).

Reading is concurrent (one S3 client per account, ``READ_WORKERS`` GETs in flight), and
mostly one GET per DAY, not per record: when cloudops appends a record it also writes,
for each past UTC day that has records and none yet, a daily object
(``cloudops/history-daily/YYYY/MM/DD.jsonl``, :func:`compact`): one line per record
object of that day, ``{"key": K, "body": "<the object's bytes>"}``. The daily object is
an index, never the truth, and just as hostile as a record:

* a line is used only for a key of ITS day that the listing shows, and only when its
  body is byte for byte the object S3 lists under that key (size and MD5 ETag): a forged
  or stale line can neither invent a record nor change one; it is listed as unreadable
  (daily key and line number) and the record object is read instead;
* the body is then parsed by :func:`parse_record`, exactly as a GET of the key would be;
* keys of a day that its daily object does not cover (written later) are read one by one;
* daily objects are bounded (``MAX_DAILY_BYTES``: larger ones are ignored with a
  finding, their day read record by record) and parsed line by line as they stream in,
  each line bounded (``MAX_LINE_BYTES``).

Record objects are never deleted (the log stays append-only). See
benchmarks/history_bench.py for the figures.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

from cloudops import __version__
from cloudops.aws.guard import require_account
from cloudops.aws.s3 import DAILY_PREFIX, HISTORY_PREFIX, AccountBucket, StoredRecord
from cloudops.errors import CloudopsError, InputError
from cloudops.pipeline.context import PipelineContext

RecordResult = Literal["promoted", "already-promoted", "refused", "failed"]

MAX_RECORD_BYTES = 64 * 1024
"""A record cloudops writes is well under 4 KiB; a history object larger than this is
refused unread (only the first MAX_RECORD_BYTES + 1 bytes are ever fetched)."""
MAX_BYTES = 2**53
"""8 PiB: more than any image or package, and still exact as a JSON number."""
MAX_SECONDS = 7 * 24 * 3600.0
CLOCK_SKEW = timedelta(minutes=5)
"""A record (or key) dated later than now + CLOCK_SKEW is "dated in the future"."""
DEFAULT_LIMIT = 10_000
"""Records read per account, newest keys first; older ones are counted as dropped."""
READ_WORKERS = 16
"""Concurrent GETs per account, all on one (thread-safe) boto3 client."""
MAX_ERROR_CHARS = 4000
MAX_DAILY_BYTES = 64 * 1024 * 1024
"""A daily object larger than this is ignored (a finding; its day is read record by
record); only MAX_DAILY_BYTES + 1 bytes of one are ever fetched."""
MAX_LINE_BYTES = 2 * MAX_RECORD_BYTES + 1024
"""One line of a daily object: a record object (at most MAX_RECORD_BYTES) as a JSON
string (quotes and backslashes escaped: at most twice as long) and its key."""
COMPACT_AFTER = timedelta(hours=1)
"""A day is compacted once it ended this long ago (never today: records still arrive)."""
COMPACT_BUDGET = 2_000
"""Record objects one append reads, at most, to write daily objects (whole days, oldest
first; at least one day). A backlog is worked off over the next appends."""

log = logging.getLogger(__name__)

_Text = Annotated[str, StringConstraints(max_length=512)]
_AccountName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
_AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
_Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]

_DAILY_KEY = re.compile(
    re.escape(DAILY_PREFIX) + r"(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/(?P<day>[0-9]{2})\.jsonl"
)
_KEY = re.compile(
    re.escape(HISTORY_PREFIX)
    + r"(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/"
    + r"(?P<id>(?P<stamp>[0-9]{8}T[0-9]{6})(?P<micro>[0-9]{6})?Z-[0-9a-z]{1,32})\.json"
)


class PromotionRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    kind: Literal["image", "package", "release"] = "image"
    when: Annotated[str, StringConstraints(max_length=40)]
    who: _Text
    source_account: _AccountName
    source_account_id: _AccountId
    destination_account: _AccountName
    destination_account_id: _AccountId
    repository: Annotated[str, StringConstraints(max_length=256)] | None = None
    tag: Annotated[str, StringConstraints(max_length=128)] | None = None
    source_digest: _Digest | None = None
    version: Annotated[str, StringConstraints(max_length=128)] | None = None
    bytes: Annotated[StrictInt, Field(ge=0, le=MAX_BYTES)] = 0
    seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS)] = 0.0
    result: RecordResult
    error: Annotated[str, StringConstraints(max_length=MAX_ERROR_CHARS)] | None = None
    jenkins_build: Annotated[str, StringConstraints(max_length=1024)] | None = None
    tool_version: Annotated[str, StringConstraints(max_length=64)] = __version__

    @field_validator("when")
    @classmethod
    def _iso_time_with_zone(cls, value: str) -> str:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an ISO-8601 time") from None
        if when.tzinfo is None:
            raise ValueError("an ISO-8601 time without a zone")
        return value

    @classmethod
    def new(cls, **fields: Any) -> PromotionRecord:
        now = datetime.now(UTC)
        error = fields.get("error")
        if isinstance(error, str) and len(error) > MAX_ERROR_CHARS:
            fields["error"] = error[: MAX_ERROR_CHARS - 3] + "..."
        return cls(
            id=f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}",
            when=now.isoformat(timespec="seconds"),
            jenkins_build=os.environ.get("BUILD_URL") or os.environ.get("BUILD_TAG"),
            **fields,
        )

    @property
    def key(self) -> str:
        return f"{self.id[:4]}/{self.id[4:6]}/{self.id}.json"

    @property
    def moment(self) -> datetime:
        """The time the record claims (validated: ISO, with a zone)."""
        return datetime.fromisoformat(self.when)


# -- what reading a bucket gives --------------------------------------------------------

CLAIMS_ANOTHER_ACCOUNT = "record claims another account"
DATED_IN_THE_FUTURE = "dated in the future"


@dataclass(frozen=True)
class ReadRecord:
    """A valid record and where it was read from. ``account`` is the account whose
    bucket held it, whatever the record says; ``findings`` say what is wrong with it
    (empty: the record is that account's own, and believable)."""

    record: PromotionRecord
    account: str
    key: str
    written: datetime
    """The date of the KEY (the time its id starts with): the order records are shown in."""
    findings: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        """The record's own fields (the JSON shape `history --json` always had), plus where
        it was read from."""
        out = self.record.model_dump(mode="json")
        out["account"] = self.account
        out["key"] = self.key
        return out

    def finding_dicts(self) -> list[dict[str, Any]]:
        return [
            {
                "account": self.account,
                "key": self.key,
                "finding": f,
                "record": self.record.model_dump(mode="json"),
            }
            for f in self.findings
        ]


@dataclass(frozen=True)
class UnreadableRecord:
    """A history object that is not a valid record: too large, not JSON, invalid fields,
    a key that is not a record key. Its content is never shown, only why."""

    account: str
    key: str
    reason: str
    size: int | None = None
    line: int | None = None
    """For a line of a daily object (``key`` is the daily object's): its number, from 1."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "account": self.account,
            "key": self.key,
            "reason": self.reason,
            "size": self.size,
        }
        if self.line is not None:
            out["line"] = self.line
        return out


@dataclass
class Dropped:
    """Records of one account not read at all, by why."""

    older: int = 0
    """Beyond the newest ``limit`` keys."""
    future: int = 0
    """Keys dated in the future: they would otherwise sort above every real record."""

    @property
    def total(self) -> int:
        return self.older + self.future

    def as_dict(self) -> dict[str, int]:
        return {"older_than_limit": self.older, "dated_in_the_future": self.future}


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

    @property
    def has_findings(self) -> bool:
        return bool(self.suspect or self.unreadable_records or any(d.future for d in self.dropped.values()))

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
    bucket.append_record(record.key, record.model_dump(mode="json"))
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
            return _AccountRead(name, error=str(error))

    with ThreadPoolExecutor(max_workers=min(8, len(names) or 1)) as pool:
        for found in pool.map(read, names):
            if found.error is not None:
                result.unreadable[found.name] = found.error
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


def key_date(key: str) -> datetime | None:
    """The time a record key's id starts with, or None when the key is not a record
    key (``cloudops/history/YYYY/MM/<YYYYMMDDTHHMMSSffffffZ>-<suffix>.json``)."""
    match = _KEY.fullmatch(key)
    if match is None or match["stamp"][:6] != match["year"] + match["month"]:
        return None
    try:
        written = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return written + timedelta(microseconds=int(match["micro"] or 0))


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
    listing = bucket.list_records()
    listed: list[tuple[datetime, StoredRecord]] = []
    for stored in listing:
        written = key_date(stored.key)
        if written is None:
            found.unreadable.append(
                UnreadableRecord(name, stored.key, "not a promotion record key", stored.size)
            )
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
        days = _DailyReader(
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
    found.unreadable.sort(key=lambda u: (u.key, u.line or 0))
    return found


# -- daily objects: one GET per day instead of one per record ----------------------------


def daily_key(day: date) -> str:
    """The key of a day's daily object under DAILY_PREFIX: ``YYYY/MM/DD.jsonl``."""
    return f"{day:%Y/%m/%d}.jsonl"


def daily_date(key: str) -> date | None:
    """The day a daily object's key names, or None when it is not a daily object key."""
    match = _DAILY_KEY.fullmatch(key)
    if match is None:
        return None
    try:
        return date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None


def _is_copy(body: bytes, stored: StoredRecord) -> bool:
    """``body`` is, byte for byte, the object S3 lists as ``stored`` (its size, and the
    MD5 that S3 lists as the ETag of an object written in one PUT)."""
    if len(body) != stored.size:
        return False
    digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
    return digest == stored.etag.lower()


class _TooLarge(Exception):
    pass


def _lines(chunks: Iterable[bytes], max_total: int, max_line: int) -> Iterator[bytes | None]:
    """The lines of a stream, each at most ``max_line`` bytes (None stands for a longer
    line, skipped unread to its end); raises _TooLarge past ``max_total`` bytes. Never
    holds more than one chunk and one line."""
    total = 0
    pending = bytearray()
    skipping = False
    for chunk in chunks:
        total += len(chunk)
        if total > max_total:
            raise _TooLarge
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not skipping:
                pending += piece
                if len(pending) > max_line:
                    skipping = True
                    pending.clear()
            if end < 0:
                break
            if skipping:
                yield None
            elif pending:
                yield bytes(pending)
            pending.clear()
            skipping = False
            start = end + 1
    if skipping:
        yield None
    elif pending:
        yield bytes(pending)


@dataclass
class _DailyReader:
    """The daily objects of one account for the days of the keys being read."""

    bucket: AccountBucket
    account: str
    account_id: str
    existing: set[str]
    """Every key the listing shows."""
    wanted: dict[str, tuple[datetime, StoredRecord]]
    """The keys being read (the newest ``limit``), with their date and listing."""
    now: datetime

    def read(self, workers: int) -> tuple[dict[str, ReadRecord | UnreadableRecord], list[UnreadableRecord]]:
        days = {written.date() for written, _ in self.wanted.values()}
        try:
            objects = self.bucket.list_records(prefix=DAILY_PREFIX)
        except CloudopsError:  # e.g. no permission on the daily prefix: read record by record
            return {}, []
        problems: list[UnreadableRecord] = []
        todo: list[tuple[date, StoredRecord]] = []
        for stored in objects:
            day = daily_date(stored.key)
            if day is None or day not in days:
                continue
            if stored.size > MAX_DAILY_BYTES:
                problems.append(self._too_large(stored.key, stored.size))
            else:
                todo.append((day, stored))
        outcomes: dict[str, ReadRecord | UnreadableRecord] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            for taken, found in pool.map(self._read_day, todo):
                for key, outcome in taken.items():
                    outcomes.setdefault(key, outcome)  # one daily object per day: keys never clash
                problems.extend(found)
        return outcomes, problems

    def _too_large(self, key: str, size: int) -> UnreadableRecord:
        return UnreadableRecord(
            self.account,
            key,
            f"daily object of {size} bytes, larger than the {MAX_DAILY_BYTES}-byte bound: "
            "ignored, its day read record by record",
            size,
        )

    def _read_day(
        self, item: tuple[date, StoredRecord]
    ) -> tuple[dict[str, ReadRecord | UnreadableRecord], list[UnreadableRecord]]:
        day, stored = item
        taken: dict[str, ReadRecord | UnreadableRecord] = {}
        problems: list[UnreadableRecord] = []
        chunks = self.bucket.stream_history_object(stored.key, MAX_DAILY_BYTES)
        try:
            for number, line in enumerate(_lines(chunks, MAX_DAILY_BYTES, MAX_LINE_BYTES), 1):
                outcome = self._line(day, line, taken)
                if isinstance(outcome, str):
                    size = None if line is None else len(line)
                    problems.append(UnreadableRecord(self.account, stored.key, outcome, size, number))
                elif outcome is not None:
                    taken[outcome[0]] = outcome[1]
        except _TooLarge:  # grew past the bound since it was listed
            return {}, [self._too_large(stored.key, MAX_DAILY_BYTES + 1)]
        except CloudopsError:  # gone or denied since it was listed: its day record by record
            return {}, []
        return taken, problems

    def _line(
        self, day: date, line: bytes | None, taken: dict[str, ReadRecord | UnreadableRecord]
    ) -> str | tuple[str, ReadRecord | UnreadableRecord] | None:
        """One line: the record it holds (by key), why it is unusable, or None for a line
        about a key not being read (older than the limit)."""
        if line is None:
            return f"a line longer than the {MAX_LINE_BYTES}-byte bound"
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):
            return "a line that is not JSON"
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("key"), str)
            or not isinstance(raw.get("body"), str)
        ):
            return 'a line that is not {"key": ..., "body": ...}'
        key: str = raw["key"]
        written = key_date(key)
        if written is None:
            return "a line whose key is not a promotion record key"
        if written.date() != day:
            return "a line whose key is of another day"
        if key not in self.existing:
            return "a line for a record that is not in the bucket"
        wanted = self.wanted.get(key)
        if wanted is None:
            return None
        if key in taken:
            return "a second line for the same record"
        try:
            body = raw["body"].encode()
        except UnicodeEncodeError:
            return "a line whose body is not the record object (read from the bucket instead)"
        if not _is_copy(body, wanted[1]):
            return "a line whose body is not the record object (read from the bucket instead)"
        return key, parse_record(body, self.account, self.account_id, key, wanted[0], now=self.now)


def compact(
    bucket: AccountBucket,
    *,
    now: datetime | None = None,
    budget: int | None = COMPACT_BUDGET,
    workers: int = READ_WORKERS,
) -> list[str]:
    """Write the daily object of each past UTC day (ended COMPACT_AFTER ago) that has
    record keys and no daily object yet, oldest first, until ``budget`` record objects
    were read (None: no bound; always at least one day). Returns the keys written.

    Only days after the newest daily object are looked at (one LIST from there), so an
    append normally lists a day's keys and compacts yesterday, once. A day's object holds
    every record object of that day as listed, byte for byte (see :func:`_is_copy`), up to
    MAX_DAILY_BYTES; keys left out (or written later) are read one by one."""
    moment = now or datetime.now(UTC)
    first_open = (moment - COMPACT_AFTER).date()
    done = {d for s in bucket.list_records(prefix=DAILY_PREFIX) if (d := daily_date(s.key)) is not None}
    past = [d for d in done if d < first_open]
    start_after = ""
    if past:
        after = max(past) + timedelta(days=1)
        start_after = f"{HISTORY_PREFIX}{after:%Y/%m}/{after:%Y%m%d}"
    days: dict[date, list[StoredRecord]] = {}
    for stored in bucket.list_records(start_after=start_after):
        written = key_date(stored.key)
        if written is None or stored.size > MAX_RECORD_BYTES:
            continue
        day = written.date()
        if day < first_open and day not in done:
            days.setdefault(day, []).append(stored)
    written_keys: list[str] = []
    spent = 0
    for day in sorted(days):
        stored_day = sorted(days[day], key=lambda s: s.key)
        if written_keys and budget is not None and spent + len(stored_day) > budget:
            break
        spent += len(stored_day)
        if bucket.put_daily(daily_key(day), _daily_body(bucket, stored_day, workers)):
            written_keys.append(DAILY_PREFIX + daily_key(day))
    return written_keys


def _daily_body(bucket: AccountBucket, stored: list[StoredRecord], workers: int) -> bytes:
    """The lines of one day: each record object read (concurrently) and kept only when it
    is what the listing says (size and ETag), UTF-8, and fits a line."""

    def line(item: StoredRecord) -> bytes | None:
        try:
            body = bucket.read_record(item.key, MAX_RECORD_BYTES)
        except CloudopsError:
            return None
        if not _is_copy(body, item):
            return None
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return None
        encoded = json.dumps(
            {"key": item.key, "body": text}, ensure_ascii=False, separators=(",", ":")
        ).encode()
        return encoded if len(encoded) <= MAX_LINE_BYTES and b"\n" not in encoded else None

    out = bytearray()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(stored)))) as pool:
        for encoded in pool.map(line, stored):
            if encoded is None or len(out) + len(encoded) + 1 > MAX_DAILY_BYTES:
                continue
            out += encoded + b"\n"
    return bytes(out)


def parse_record(
    body: bytes, account: str, account_id: str, key: str, written: datetime, *, now: datetime
) -> ReadRecord | UnreadableRecord:
    """One history object: a valid record attributed to ``account``, or why it is not one."""
    if len(body) > MAX_RECORD_BYTES:
        return UnreadableRecord(account, key, f"larger than the {MAX_RECORD_BYTES}-byte bound", len(body))
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return UnreadableRecord(account, key, "not JSON", len(body))
    if not isinstance(raw, dict):
        return UnreadableRecord(account, key, "not a JSON object", len(body))
    try:
        record = PromotionRecord.model_validate(raw)
    except ValidationError as exc:
        return UnreadableRecord(account, key, _why_invalid(exc), len(body))
    if HISTORY_PREFIX + record.key != key:
        return UnreadableRecord(account, key, "its id is not the one its key names", len(body))
    findings: list[str] = []
    if record.destination_account != account or record.destination_account_id != account_id:
        findings.append(CLAIMS_ANOTHER_ACCOUNT)
    if record.moment > now + CLOCK_SKEW:
        findings.append(DATED_IN_THE_FUTURE)
    return ReadRecord(record, account, key, written, tuple(findings))


def _why_invalid(exc: ValidationError) -> str:
    """Which fields are invalid and how, never their values (they are hostile text)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "record"
        problems.append(f"{where}: {error['msg']}")
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "invalid record: " + "; ".join(problems) + more


# -- filters (`cloudops history --repository R --since WHEN`) -----------------------------

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date or time (2024-05-01, 2024-05-01T12:00, with or without a zone; UTC
    when none) or a span back from now (30m, 12h, 7d, 2w)."""
    value = text.strip()
    match = _RELATIVE.fullmatch(value)
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
