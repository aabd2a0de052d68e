"""Daily history objects (issue 12, 3: reading history scales), on the sandbox's moto
server: cloudops compacts each past day into one object when it appends a record, the
reader takes records from them, and a daily object is as hostile as any record: it can
neither invent, change nor hide a record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudops.aws.s3 import AccountBucket
from cloudops.aws.sessions import AwsError
from cloudops.pipeline import history, history_daily
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.records import (
    DAILY_PREFIX,
    HISTORY_PREFIX,
    MAX_RECORD_BYTES,
    PromotionRecord,
    UnreadableRecord,
)
from tests.support.run import cloudops

DIGEST = "sha256:" + "cd" * 32
ACCOUNT = "qa"


def _bucket(context: PipelineContext, account: str = ACCOUNT) -> AccountBucket:
    return AccountBucket(context.session(account), context.pipeline.bucket(account))


def _record(
    context: PipelineContext, moment: datetime, n: int, to: str = ACCOUNT, **fields: Any
) -> PromotionRecord:
    values: dict[str, Any] = {
        "id": f"{moment:%Y%m%dT%H%M%S%fZ}-{n:012x}",
        "when": moment.isoformat(timespec="seconds"),
        "who": "arn:aws:sts::222222222222:assumed-role/cloudops/jenkins (jenkins)",
        "source_account": "build",
        "source_account_id": context.pipeline.account("build").account_id,
        "destination_account": to,
        "destination_account_id": context.pipeline.account(to).account_id,
        "repository": "ep/cortex",
        "tag": f"8.{n}.0",
        "source_digest": DIGEST,
        "bytes": 1000 + n,
        "seconds": 1.25,
        "result": "promoted",
    }
    values.update(fields)
    return PromotionRecord(**values)


def _write(context: PipelineContext, record: PromotionRecord, account: str = ACCOUNT) -> str:
    """A record written as cloudops writes it (no compaction: that is append()'s)."""
    _bucket(context, account).append_record(HISTORY_PREFIX + record.key, record.model_dump(mode="json"))
    return HISTORY_PREFIX + record.key


def _plant(context: PipelineContext, key: str, body: bytes) -> str:
    """An object written straight into qa's bucket, past cloudops."""
    bucket = _bucket(context)
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=body)
    return key


def _promote(context: PipelineContext, tag: str) -> PromotionRecord:
    """A promotion's record, appended as the promotion path appends it (with compaction)."""
    record = PromotionRecord.new(
        who="arn:aws:sts::222222222222:assumed-role/cloudops/jenkins (jenkins)",
        source_account="build",
        source_account_id=context.pipeline.account("build").account_id,
        destination_account=ACCOUNT,
        destination_account_id=context.pipeline.account(ACCOUNT).account_id,
        repository="ep/cortex",
        tag=tag,
        source_digest=DIGEST,
        result="promoted",
    )
    history.append(context, record)
    return record


def _dailies(context: PipelineContext) -> dict[str, bytes]:
    bucket = _bucket(context)
    return {
        s.key: bucket.read_record(s.key, history_daily.MAX_DAILY_BYTES)
        for s in bucket.list_records(prefix=DAILY_PREFIX)
    }


def _day(moment: datetime) -> str:
    return f"{DAILY_PREFIX}{moment:%Y/%m/%d}.jsonl"


class _Gets:
    """Counts the GETs made on one bucket's client."""

    def __init__(self, bucket: AccountBucket):
        self.keys: list[str] = []
        bucket.client.meta.events.register("before-parameter-build.s3.GetObject", self._count)

    def _count(self, params: dict[str, Any], **_: Any) -> None:
        self.keys.append(str(params["Key"]))


def _read(context: PipelineContext, *, daily: bool, limit: int = 10_000) -> tuple[dict[str, Any], _Gets]:
    bucket = _bucket(context)
    gets = _Gets(bucket)
    found = history.read_account(
        bucket, ACCOUNT, context.pipeline.account(ACCOUNT).account_id, limit=limit, daily=daily
    )
    shape = {
        "records": [(r.as_dict(), r.findings, r.written) for r in found.records],
        "unreadable": [u.as_dict() for u in found.unreadable],
        "dropped": found.dropped.as_dict(),
    }
    return shape, gets


@pytest.fixture
def past(ctx: PipelineContext) -> Iterator[tuple[PipelineContext, datetime, datetime]]:
    """Two past days of qa's records (3 and 2 days ago), none compacted yet."""
    # Noon of past days: records a few minutes later stay on the same day whenever the
    # test runs (at 23:57, "3 days ago + 5 minutes" would be another day).
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    first, second = noon - timedelta(days=3), noon - timedelta(days=2)
    for n in range(6):
        _write(ctx, _record(ctx, first + timedelta(seconds=n), n))
    for n in range(6, 10):
        _write(ctx, _record(ctx, second + timedelta(seconds=n), n))
    yield ctx, first, second


def test_appending_compacts_past_days_and_never_today(
    past: tuple[PipelineContext, datetime, datetime],
) -> None:
    ctx, first, second = past
    assert _dailies(ctx) == {}
    today = _promote(ctx, "9.0.0")
    dailies = _dailies(ctx)
    assert set(dailies) == {_day(first), _day(second)}  # not today's day
    lines = [json.loads(line) for line in dailies[_day(first)].splitlines()]
    bucket = _bucket(ctx)
    first_keys = sorted(
        s.key
        for s in bucket.list_records(prefix=HISTORY_PREFIX)
        if s.key.startswith(f"{HISTORY_PREFIX}{first:%Y/%m/%Y%m%d}")
    )
    assert [line["key"] for line in lines] == first_keys and len(first_keys) == 6
    for line in lines:  # each line is the record object, byte for byte
        assert line["body"].encode() == bucket.read_record(line["key"], MAX_RECORD_BYTES)

    # Daily objects are written once: a later append neither rewrites them nor compacts today.
    versions = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=DAILY_PREFIX)["Versions"]
    _promote(ctx, "9.0.1")
    assert _dailies(ctx) == dailies
    again = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=DAILY_PREFIX)["Versions"]
    assert len(again) == len(versions) == 2
    assert all(HISTORY_PREFIX + today.key not in body.decode() for body in _dailies(ctx).values())


def test_compaction_is_bounded_and_works_off_a_backlog(ctx: PipelineContext) -> None:
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)  # see `past`
    days = [noon - timedelta(days=d) for d in (6, 5, 4, 3)]
    for number, day in enumerate(days):
        for n in range(3):
            _write(ctx, _record(ctx, day + timedelta(seconds=n), 10 * number + n))
    bucket = _bucket(ctx)
    # Oldest first, whole days: 3 records, and a second day would make 6 > 5.
    assert history_daily.compact(bucket, budget=5) == [_day(days[0])]
    assert set(_dailies(ctx)) == {_day(days[0])}
    assert history_daily.compact(bucket, budget=6) == [_day(days[1]), _day(days[2])]
    assert history_daily.compact(bucket, budget=6) == [_day(days[3])]
    assert history_daily.compact(bucket, budget=6) == []


def test_a_failing_compaction_never_fails_the_promotion(
    past: tuple[PipelineContext, datetime, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _, _ = past

    def denied(self: AccountBucket, key: str, body: bytes) -> bool:
        raise AwsError(f"writing the daily history object {key} failed: AccessDenied")

    monkeypatch.setattr(AccountBucket, "put_daily", denied)
    record = _promote(ctx, "9.1.0")  # does not raise
    assert _dailies(ctx) == {}
    assert HISTORY_PREFIX + record.key in {s.key for s in _bucket(ctx).list_records(prefix=HISTORY_PREFIX)}
    monkeypatch.undo()
    _promote(ctx, "9.1.1")  # the next append retries
    assert len(_dailies(ctx)) == 2


def test_daily_objects_give_exactly_the_records_read_one_by_one(
    past: tuple[PipelineContext, datetime, datetime],
) -> None:
    ctx, first, second = past
    # What a bucket may hold besides good records, on compacted days: a record claiming
    # prod, an invalid one, one that is not JSON, one too large.
    _write(ctx, _record(ctx, first + timedelta(minutes=5), 90, to="prod"))
    invalid = _record(ctx, first + timedelta(minutes=6), 91).model_dump(mode="json") | {"bytes": 10**400}
    _plant(
        ctx, HISTORY_PREFIX + _record(ctx, first + timedelta(minutes=6), 91).key, json.dumps(invalid).encode()
    )
    _plant(ctx, HISTORY_PREFIX + _record(ctx, second + timedelta(minutes=7), 92).key, b"{not json")
    big = _record(ctx, second + timedelta(minutes=8), 93, error="x" * 4000).key
    _plant(ctx, HISTORY_PREFIX + big, b" " * (MAX_RECORD_BYTES + 1))
    without, _ = _read(ctx, daily=False)
    today = _promote(ctx, "9.2.0")  # compacts both past days
    assert set(_dailies(ctx)) == {_day(first), _day(second)}
    plain, plain_gets = _read(ctx, daily=False)
    fast, fast_gets = _read(ctx, daily=True)
    assert fast == plain
    assert len(plain["records"]) == len(without["records"]) + 1 and len(plain["records"]) == 12
    assert {u["reason"] for u in plain["unreadable"]} >= {"not JSON"}
    # Two daily objects and today's one record, instead of one GET per record.
    assert sorted(fast_gets.keys) == sorted([_day(first), _day(second), HISTORY_PREFIX + today.key])
    assert len(plain_gets.keys) == 14

    for limit in (0, 3, 8):
        assert _read(ctx, daily=True, limit=limit)[0] == _read(ctx, daily=False, limit=limit)[0]

    document = cloudops("history", "--account", ACCOUNT, "--json")
    assert document.returncode == 0, document.stderr
    assert [r["key"] for r in json.loads(document.stdout)["records"]] == [
        r[0]["key"] for r in plain["records"] if not r[1]
    ]


def test_a_record_added_to_a_compacted_day_is_still_read(
    past: tuple[PipelineContext, datetime, datetime],
) -> None:
    ctx, first, _ = past
    _promote(ctx, "9.3.0")
    assert _day(first) in _dailies(ctx)
    late = _write(ctx, _record(ctx, first + timedelta(hours=1), 77))
    _promote(ctx, "9.3.1")
    assert late not in _dailies(ctx)[_day(first)].decode()  # daily objects are never rewritten
    found, gets = _read(ctx, daily=True)
    assert late in [r[0]["key"] for r in found["records"]]
    assert late in gets.keys
    assert found == _read(ctx, daily=False)[0]


def _line(key: str, body: bytes | str) -> bytes:
    text = body.decode() if isinstance(body, bytes) else body
    return json.dumps({"key": key, "body": text}).encode()


def test_forged_daily_lines_never_become_records(past: tuple[PipelineContext, datetime, datetime]) -> None:
    ctx, first, _ = past
    bucket = _bucket(ctx)
    keys = sorted(
        s.key
        for s in bucket.list_records(prefix=HISTORY_PREFIX)
        if s.key.startswith(f"{HISTORY_PREFIX}{first:%Y/%m/%Y%m%d}")
    )
    other_day = sorted(s.key for s in bucket.list_records(prefix=HISTORY_PREFIX) if s.key not in keys)[0]
    real = bucket.read_record(keys[0], MAX_RECORD_BYTES)
    invented = _record(ctx, first + timedelta(minutes=30), 66, tag="6.6.6-invented")
    altered = json.loads(bucket.read_record(keys[1], MAX_RECORD_BYTES)) | {"tag": "6.6.6-altered"}
    invalid = json.loads(bucket.read_record(keys[2], MAX_RECORD_BYTES)) | {"bytes": 10**400}
    lines = [
        _line(keys[0], real),  # 1: a true copy: used
        _line(
            HISTORY_PREFIX + invented.key, json.dumps(invented.model_dump(mode="json"))
        ),  # 2: no such object
        _line(keys[1], json.dumps(altered)),  # 3: not the object under that key
        _line(keys[2], json.dumps(invalid)),  # 4: an invalid record, not the object either
        _line(other_day, bucket.read_record(other_day, MAX_RECORD_BYTES)),  # 5: another day's key
        b"{not json",  # 6
        json.dumps({"key": keys[3]}).encode(),  # 7: no body
        _line(f"{HISTORY_PREFIX}evil.json", real),  # 8: not a record key
        _line(keys[0], real),  # 9: the same record twice
        b'{"key": "' + b"k" * (history_daily.MAX_LINE_BYTES + 10) + b'"}',  # 10: longer than a line may be
    ]
    daily = _plant(ctx, _day(first), b"\n".join(lines) + b"\n")

    found, gets = _read(ctx, daily=True)
    plain, _ = _read(ctx, daily=False)
    assert found["records"] == plain["records"]
    tags = {r[0]["tag"] for r in found["records"]}
    assert not tags & {"6.6.6-invented", "6.6.6-altered"}
    assert HISTORY_PREFIX + invented.key not in {r[0]["key"] for r in found["records"]}
    assert (
        keys[1] in gets.keys and keys[2] in gets.keys and keys[0] not in gets.keys
    )  # read from the bucket instead
    problems = {(u["line"], u["reason"]) for u in found["unreadable"] if u["key"] == daily}
    assert problems == {
        (2, "a line for a record that is not in the bucket"),
        (3, "a line whose body is not the record object (read from the bucket instead)"),
        (4, "a line whose body is not the record object (read from the bucket instead)"),
        (5, "a line whose key is of another day"),
        (6, "a line that is not JSON"),
        (7, 'a line that is not {"key": ..., "body": ...}'),
        (8, "a line whose key is not a promotion record key"),
        (9, "a second line for the same record"),
        (10, f"a line longer than the {history_daily.MAX_LINE_BYTES}-byte bound"),
    }
    assert [u for u in found["unreadable"] if u["key"] != daily] == plain["unreadable"] == []

    human = cloudops("history", "--account", ACCOUNT)
    assert human.returncode == 0, human.stderr
    assert f"unreadable record in qa: {daily}" in human.stderr and "6.6.6" not in human.stderr


def test_an_oversized_daily_object_is_ignored_with_a_finding(
    past: tuple[PipelineContext, datetime, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, first, second = past
    _promote(ctx, "9.4.0")
    sizes = {s.key: s.size for s in _bucket(ctx).list_records(prefix=DAILY_PREFIX)}
    plain, _ = _read(ctx, daily=False)
    bound = sizes[_day(first)] - 1  # the first day's object is over it, the second's is not
    assert sizes[_day(second)] <= bound
    monkeypatch.setattr(history_daily, "MAX_DAILY_BYTES", bound)
    found, gets = _read(ctx, daily=True)
    assert found["records"] == plain["records"]
    assert _day(first) not in gets.keys and _day(second) in gets.keys  # refused by its listed size, unread
    assert [u for u in found["unreadable"]] == [
        {
            "account": ACCOUNT,
            "key": _day(first),
            "reason": f"daily object of {sizes[_day(first)]} bytes, larger than the {bound}-byte bound: "
            "ignored, its day read record by record",
            "size": sizes[_day(first)],
        }
    ]


def test_daily_lines_are_parsed_as_they_stream_with_bounds() -> None:
    def chunks(*parts: bytes) -> Iterator[bytes]:
        yield from parts

    lines = history_daily._lines(chunks(b"ab\ncd", b"e\n", b"x" * 10, b"y\nlast"), max_total=100, max_line=5)
    assert list(lines) == [b"ab", b"cde", None, b"last"]
    with pytest.raises(history_daily._TooLarge):
        list(history_daily._lines(chunks(b"a\n" * 10, b"b\n" * 10), max_total=30, max_line=5))
    assert UnreadableRecord("qa", "k", "why", 3, 7).as_dict()["line"] == 7


def _versions(context: PipelineContext, prefix: str) -> list[dict[str, Any]]:
    bucket = _bucket(context)
    listed = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=prefix)
    return list(listed.get("Versions", []))


def test_a_record_is_never_written_over_another(ctx: PipelineContext) -> None:
    """The log is append-only: a record under a key that exists is refused by S3
    (If-None-Match), and the record there stays, byte for byte, the only version."""
    moment = datetime.now(UTC) - timedelta(hours=1)
    key = _write(ctx, _record(ctx, moment, 1))
    bucket = _bucket(ctx)
    original = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
    forged = _record(ctx, moment, 1, tag="6.6.6-rewritten", result="refused")
    assert HISTORY_PREFIX + forged.key == key
    with pytest.raises(AwsError, match="writing the promotion record"):
        bucket.append_record(key, forged.model_dump(mode="json"))
    assert bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read() == original
    assert len(_versions(ctx, key)) == 1


def test_compaction_never_writes_over_a_daily_object(
    past: tuple[PipelineContext, datetime, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run writes a day's object between this compaction's LIST and its PUT: the
    PUT is refused (If-None-Match), and the object that was there stays."""
    ctx, first, second = past
    planted = {_day(first): b'{"key":"planted-first"}\n', _day(second): b'{"key":"planted-second"}\n'}
    real_body = history_daily._daily_body

    def racing(bucket: AccountBucket, stored: Any, workers: int) -> bytes:
        for key, body in planted.items():
            if not _versions(ctx, key):
                _plant(ctx, key, body)
        return real_body(bucket, stored, workers)

    monkeypatch.setattr(history_daily, "_daily_body", racing)
    bucket = _bucket(ctx)
    assert history_daily.compact(bucket, budget=None) == []  # nothing written: both were there
    assert _dailies(ctx) == planted
    assert len(_versions(ctx, DAILY_PREFIX)) == 2
    assert bucket.put_daily(_day(first), b"other bytes\n") is False  # the same, called directly
    assert _dailies(ctx) == planted and len(_versions(ctx, DAILY_PREFIX)) == 2
