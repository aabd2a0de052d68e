"""Promotion history read back from the accounts' buckets is hostile input (issue 12, 3
and 4), on the sandbox's moto server: records forged into one account's bucket, invalid
and oversized objects, a flood of future-dated records, and fields that try to drive the
terminal. Records are planted straight into a bucket with boto3, as anyone allowed to
write that bucket could."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cloudops.aws.s3 import AccountBucket
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.records import HISTORY_PREFIX, MAX_RECORD_BYTES, PromotionRecord
from tests.support.run import cloudops

DIGEST = "sha256:" + "ab" * 32


def _bucket(context: PipelineContext, account: str) -> AccountBucket:
    return AccountBucket(context.session(account), context.pipeline.bucket(account))


def _record(
    context: PipelineContext, to: str, *, when: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    """A valid record promoting into ``to`` (its fields as stored), written at ``when``."""
    moment = when or datetime.now(UTC)
    suffix = fields.pop("suffix", "0123456789ab")
    values: dict[str, Any] = {
        "id": f"{moment:%Y%m%dT%H%M%S%fZ}-{suffix}",
        "kind": "image",
        "when": moment.isoformat(timespec="seconds"),
        "who": "arn:aws:sts::111111111111:assumed-role/cloudops/jenkins (jenkins)",
        "source_account": "build",
        "source_account_id": context.pipeline.account("build").account_id,
        "destination_account": to,
        "destination_account_id": context.pipeline.account(to).account_id,
        "repository": "ep/cortex",
        "tag": "8.5.0",
        "source_digest": DIGEST,
        "bytes": 1234,
        "seconds": 1.5,
        "result": "promoted",
    }
    values.update(fields)
    return values


def _key(record: dict[str, Any]) -> str:
    rid = str(record["id"])
    return f"{HISTORY_PREFIX}{rid[:4]}/{rid[4:6]}/{rid}.json"


def _plant(context: PipelineContext, account: str, key: str, body: bytes | str | dict[str, Any]) -> str:
    """Write an object straight into an account's bucket, past cloudops."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    data = data.encode() if isinstance(data, str) else data
    bucket = _bucket(context, account)
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=data)
    return key


def _real(context: PipelineContext, to: str, tag: str) -> PromotionRecord:
    """A record as cloudops itself writes it."""
    record = PromotionRecord.new(
        kind="image",
        who="arn:aws:sts::111111111111:assumed-role/cloudops/jenkins (jenkins)",
        source_account="build",
        source_account_id=context.pipeline.account("build").account_id,
        destination_account=to,
        destination_account_id=context.pipeline.account(to).account_id,
        repository="ep/cortex",
        tag=tag,
        source_digest=DIGEST,
        bytes=1000,
        seconds=2.0,
        result="promoted",
    )
    history.append(context, record)
    return record


def _json(*args: str) -> dict[str, Any]:
    result = cloudops(*args, "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _timeline(page: str, account: str) -> str:
    """The timeline block of one account in the HTML page (up to the next block)."""
    pieces = page.split('<div class="timeline" data-account="')
    return next(p for p in pieces[1:] if p.startswith(f'{account}"'))


# -- 3. history cannot be forged from another account's bucket ------------------------------


def test_a_record_in_qa_claiming_prod_is_qas_with_a_finding(ctx: PipelineContext, tmp_path: Path) -> None:
    real_prod = _real(ctx, "prod", "8.5.0")
    real_qa = _real(ctx, "qa", "8.5.0")
    forged = _record(ctx, "prod", tag="9.9.9-forged", suffix="f0f0f0f0f0f0")
    forged_key = _plant(ctx, "qa", _key(forged), forged)
    # The right name, another account's id: no less forged.
    by_id = _record(ctx, "qa", tag="9.9.9-by-id", suffix="f1f1f1f1f1f1")
    by_id["destination_account_id"] = ctx.pipeline.account("prod").account_id
    by_id_key = _plant(ctx, "qa", _key(by_id), by_id)

    document = _json("history")
    records = document["records"]
    assert {(r["account"], r["tag"]) for r in records} == {("prod", "8.5.0"), ("qa", "8.5.0")}
    assert {r["id"] for r in records} == {real_prod.id, real_qa.id}
    assert all(r["account"] == r["destination_account"] for r in records)
    findings = {(f["account"], f["key"], f["finding"]) for f in document["findings"]}
    assert findings == {
        ("qa", forged_key, "record claims another account"),
        ("qa", by_id_key, "record claims another account"),
    }
    assert document["unreadable"] == {} and document["unreadable_records"] == []

    prod_only = _json("history", "--account", "prod")
    assert [r["id"] for r in prod_only["records"]] == [real_prod.id] and prod_only["findings"] == []

    human = cloudops("history")
    assert human.returncode == 0, human.stderr
    assert "finding in qa's bucket: record claims another account" in human.stderr
    assert forged_key in human.stderr and "9.9.9-forged" not in human.stderr.split("finding in")[0]

    page = tmp_path / "status.html"
    status = cloudops("status", "--json", "--html", str(page))
    assert status.returncode == 0, status.stderr  # findings alone do not fail plain status
    summary = json.loads(status.stdout)["history"]
    assert summary["records"]["prod"] == 1 and summary["records"]["qa"] == 1
    assert {(f["account"], f["key"]) for f in summary["findings"]} == {("qa", forged_key), ("qa", by_id_key)}
    text = page.read_text()
    assert forged_key not in _timeline(text, "prod") and "9.9.9-forged" not in _timeline(text, "prod")
    assert f'data-key="{HISTORY_PREFIX}{real_prod.key}"' in _timeline(text, "prod")
    qa = _timeline(text, "qa")
    assert f'<li class="finding" data-key="{forged_key}"><b>record claims another account</b>' in qa

    strict = cloudops("status", "--strict")
    assert strict.returncode == 4, strict.stderr
    assert "qa history: 2 records claim another account" in strict.stderr


def test_invalid_and_oversized_records_are_listed_unreadable(ctx: PipelineContext, tmp_path: Path) -> None:
    real = _real(ctx, "qa", "8.5.0")
    base = datetime.now(UTC) - timedelta(minutes=30)
    bad: dict[str, dict[str, Any]] = {
        "huge bytes": _record(ctx, "qa", when=base, bytes=10**400, suffix="000000000001"),
        "float bytes": _record(ctx, "qa", when=base, bytes=1.5, suffix="000000000002"),
        "negative seconds": _record(ctx, "qa", when=base, seconds=-1, suffix="000000000003"),
        "bad time": _record(ctx, "qa", when=base, suffix="000000000004") | {"when": "yesterday"},
        "time without zone": _record(ctx, "qa", when=base, suffix="000000000005")
        | {"when": "2024-05-01T12:00:00"},
        "unknown result": _record(ctx, "qa", when=base, result="pwned", suffix="000000000006"),
        "bad digest": _record(ctx, "qa", when=base, source_digest="sha256:xyz", suffix="000000000007"),
        "long tag": _record(ctx, "qa", when=base, tag="t" * 5000, suffix="000000000008"),
        "missing fields": {"id": f"{base:%Y%m%dT%H%M%S%fZ}-000000000009", "result": "promoted"},
    }
    keys = {name: _plant(ctx, "qa", _key(body), body) for name, body in bad.items()}
    rid = f"{base:%Y%m%dT%H%M%S%fZ}"
    keys["not json"] = _plant(
        ctx, "qa", f"{HISTORY_PREFIX}{rid[:4]}/{rid[4:6]}/{rid}-00000000000a.json", b"{not json"
    )
    keys["a list"] = _plant(
        ctx, "qa", f"{HISTORY_PREFIX}{rid[:4]}/{rid[4:6]}/{rid}-00000000000b.json", b"[1, 2]"
    )
    keys["not a record key"] = _plant(ctx, "qa", f"{HISTORY_PREFIX}evil.json", _record(ctx, "qa"))
    big = _record(ctx, "qa", when=base, suffix="00000000000c")
    big["error"] = "x" * (1024 * 1024)
    keys["1 MiB"] = _plant(ctx, "qa", _key(big), big)

    document = _json("history")
    assert [r["id"] for r in document["records"]] == [real.id]
    unreadable = {u["key"]: u for u in document["unreadable_records"]}
    assert set(unreadable) == set(keys.values()), set(keys.values()) ^ set(unreadable)
    assert all(u["account"] == "qa" for u in unreadable.values())
    assert "bytes" in unreadable[keys["huge bytes"]]["reason"]
    assert "when: Value error, not an ISO-8601 time" in unreadable[keys["bad time"]]["reason"]
    assert "result" in unreadable[keys["unknown result"]]["reason"]
    assert unreadable[keys["not json"]]["reason"] == "not JSON"
    oversized = unreadable[keys["1 MiB"]]
    assert (
        oversized["size"] > 1024 * 1024
        and f"larger than the {MAX_RECORD_BYTES}-byte bound" in oversized["reason"]
    )

    human = cloudops("history")
    assert human.returncode == 0 and "Traceback" not in human.stderr, human.stderr
    for key in keys.values():
        assert f"unreadable record in qa: {key}" in human.stderr, key
    assert "x" * 100 not in human.stderr  # the big one's content is never shown

    page = tmp_path / "status.html"
    status = cloudops("status", "--json", "--html", str(page))
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert len(json.loads(status.stdout)["history"]["unreadable_records"]) == len(keys)
    assert f'<li class="unreadable" data-key="{keys["huge bytes"]}">' in page.read_text()
    assert cloudops("status", "--strict").returncode == 4


def test_an_object_that_grew_past_the_bound_is_never_read_whole(ctx: PipelineContext) -> None:
    bucket = _bucket(ctx, "qa")
    key = _plant(ctx, "qa", f"{HISTORY_PREFIX}2024/05/big.json", b"x" * (3 * MAX_RECORD_BYTES))
    assert len(bucket.read_record(key, MAX_RECORD_BYTES)) == MAX_RECORD_BYTES + 1
    assert [(s.key, s.size) for s in bucket.list_records(prefix=HISTORY_PREFIX)] == [
        (key, 3 * MAX_RECORD_BYTES)
    ]


def test_a_flood_of_future_dated_records_cannot_hide_the_real_ones(
    ctx: PipelineContext, tmp_path: Path
) -> None:
    reals = [_real(ctx, "qa", f"8.{n}.0") for n in range(3)]
    future = datetime(2099, 1, 1, tzinfo=UTC)
    flood = [_record(ctx, "qa", when=future + timedelta(seconds=n), suffix=f"{n:012x}") for n in range(500)]
    # Dated now by their key, but claiming a future time: read, and flagged.
    soon = datetime.now(UTC) + timedelta(days=365)
    claims = [
        _record(ctx, "qa", suffix=f"c{n:011x}") | {"when": (soon + timedelta(seconds=n)).isoformat()}
        for n in range(30)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda r: _plant(ctx, "qa", _key(r), r), flood + claims))

    document = _json("history")
    assert [r["id"] for r in document["records"]] == [r.id for r in reals]
    assert document["dropped"] == {"qa": {"older_than_limit": 0, "dated_in_the_future": 500}}
    flagged = [f for f in document["findings"] if f["finding"] == "dated in the future"]
    assert len(flagged) == 30 and {f["account"] for f in flagged} == {"qa"}

    human = cloudops("history")
    assert human.returncode == 0, human.stderr
    assert "qa: 500 records dated in the future by their key were dropped, not read" in human.stderr
    assert all(f"8.{n}.0" in human.stderr for n in range(3))

    limited = _json("history", "--limit", "2")
    assert len(limited["records"]) + len(limited["findings"]) == 2
    assert limited["dropped"]["qa"] == {"older_than_limit": 31, "dated_in_the_future": 500}

    page = tmp_path / "status.html"
    assert cloudops("status", "--html", str(page)).returncode == 0
    qa = _timeline(page.read_text(), "qa")
    for real in reals:
        assert f'data-key="{HISTORY_PREFIX}{real.key}"' in qa
    assert "500 records dated in the future by their key were dropped, not read" in qa


# -- 4. nothing read from an account can drive the terminal ------------------------------------

EVIL = "\x1b]8;;http://evil\x07click\x1b]8;;\x07 \x1b[2J [link=http://evil]x[/link] [bold]b[/] \r\u202e"


def test_record_fields_cannot_drive_the_terminal(ctx: PipelineContext, tmp_path: Path) -> None:
    own = _record(ctx, "qa", repository=f"ep/{EVIL}", tag=f"1.0{EVIL}", error=EVIL, who=EVIL, result="failed")
    _plant(ctx, "qa", _key(own), own)
    forged = _record(ctx, "prod", tag=EVIL, suffix="f0f0f0f0f0f0")
    _plant(ctx, "qa", _key(forged), forged)
    invalid = _record(ctx, "qa", suffix="000000000001", source_digest=EVIL)
    _plant(ctx, "qa", _key(invalid), invalid)

    for args in (("history",), ("status", "--strict")):
        plain = cloudops(*args)
        assert plain.returncode in (0, 4) and "Traceback" not in plain.stderr, plain.stderr
        output = plain.stdout + plain.stderr
        assert not set(output) & {"\x1b", "\x07", "\r", "\u202e"}, args
        if args == ("history",):
            assert "\\x1b]8;;http://evil\\x07click" in output and "[link=http://evil]x[/link]" in output

        # A terminal, as rich sees one: colours are rich's own escapes, and nothing else is.
        forced = cloudops(*args, env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "400"})
        assert forced.returncode in (0, 4), forced.stderr
        output = forced.stdout + forced.stderr
        assert "\x1b[" in output  # it did draw as on a terminal
        assert "\x1b]" not in output and "\x07" not in output and "\r" not in output, args
        assert "\x1b[2J" not in output and "\u202e" not in output
        escapes = set(re.findall(r"\x1b\[[0-9;]*[A-Za-z]", output))
        assert all(e.endswith("m") for e in escapes), escapes  # colours only: no clearing, no cursor moves

    page = tmp_path / "status.html"
    assert cloudops("status", "--html", str(page)).returncode == 0
    text = page.read_text()
    assert not set(text) & {"\x1b", "\x07", "\r", "\u202e"}
    assert "[link=http://evil]x[/link]" in text and "\\x1b]8;;http://evil" in text


def test_a_flood_of_junk_keys_is_listed_up_to_a_cap_and_counted(
    ctx: PipelineContext, monkeypatch: Any
) -> None:
    """Unreadable objects are listed up to MAX_UNREADABLE_LISTED per account (record keys
    first, so junk keys cannot push an invalid record out), the rest counted as dropped."""
    monkeypatch.setattr(history, "MAX_UNREADABLE_LISTED", 10)
    real = _real(ctx, "qa", "8.5.0")
    invalid = _record(ctx, "qa", suffix="0000000000ff") | {"bytes": -1}
    invalid_key = _plant(ctx, "qa", _key(invalid), invalid)
    junk = [f"{HISTORY_PREFIX}junk-{n:03d}" for n in range(30)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: _plant(ctx, "qa", k, b"junk"), junk))

    found = history.read_history(ctx, ["qa"])
    assert [r.record.id for r in found.records] == [real.id]
    listed = [u.key for u in found.unreadable_records]
    assert listed == [invalid_key, *junk[:9]]
    assert found.dropped["qa"].unreadable == 21 and found.has_findings
    assert found.extras()["dropped"] == {
        "qa": {"older_than_limit": 0, "dated_in_the_future": 0, "unreadable_not_listed": 21}
    }


def test_a_record_that_grew_after_it_was_listed_is_refused_by_what_was_read(
    ctx: PipelineContext, monkeypatch: Any
) -> None:
    """Listed small, rewritten before the GET: a valid record followed by 192 KiB of
    spaces (whose first 64 KiB + 1 bytes still parse as that record). read_account reads at
    most the bound + 1 byte and lists it unreadable for its size, never as a record."""
    bucket = _bucket(ctx, "qa")
    record = _record(ctx, "qa", when=datetime.now(UTC) - timedelta(hours=1))
    key = _plant(ctx, "qa", _key(record), record)
    grown = json.dumps(record).encode() + b" " * (3 * MAX_RECORD_BYTES)
    listed_sizes: list[int] = []
    read_sizes: list[int] = []
    real_list, real_read = bucket.list_records, bucket.read_record

    def list_then_grow(*, prefix: str, start_after: str = "") -> Any:
        found = real_list(prefix=prefix, start_after=start_after)
        if prefix == HISTORY_PREFIX:
            listed_sizes.extend(s.size for s in found if s.key == key)
            bucket.client.put_object(Bucket=bucket.name, Key=key, Body=grown)
        return found

    def counted_read(name: str, max_bytes: int) -> bytes:
        body = real_read(name, max_bytes)
        read_sizes.append(len(body))
        return body

    monkeypatch.setattr(bucket, "list_records", list_then_grow)
    monkeypatch.setattr(bucket, "read_record", counted_read)
    found = history.read_account(bucket, "qa", ctx.pipeline.account("qa").account_id)
    assert listed_sizes and listed_sizes[0] < MAX_RECORD_BYTES  # what the listing's check saw
    assert found.records == []
    assert [u.as_dict() for u in found.unreadable] == [
        {
            "account": "qa",
            "key": key,
            "reason": f"larger than the {MAX_RECORD_BYTES}-byte bound",
            "size": MAX_RECORD_BYTES + 1,
        }
    ]
    assert read_sizes == [MAX_RECORD_BYTES + 1]  # never read whole
