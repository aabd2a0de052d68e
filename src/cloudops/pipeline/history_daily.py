"""Daily objects: one GET per DAY of promotion history, not one per record.

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

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cloudops.aws.s3 import AccountBucket, StoredRecord
from cloudops.errors import CloudopsError
from cloudops.pipeline.records import (
    DAILY_PREFIX,
    HISTORY_PREFIX,
    MAX_RECORD_BYTES,
    ReadRecord,
    UnreadableRecord,
    key_date,
    parse_record,
)

READ_WORKERS = 16
"""Concurrent GETs per account, all on one (thread-safe) boto3 client."""
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


_DAILY_KEY = re.compile(
    re.escape(DAILY_PREFIX) + r"(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/(?P<day>[0-9]{2})\.jsonl"
)


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
class DailyReader:
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
    for stored in bucket.list_records(prefix=HISTORY_PREFIX, start_after=start_after):
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
        if bucket.put_daily(DAILY_PREFIX + daily_key(day), _daily_body(bucket, stored_day, workers)):
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
