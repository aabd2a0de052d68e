"""A release record carries the hash of the plan it executed (issue 14); records written
before plans existed, and image/package records, carry none and still parse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudops.pipeline.records import (
    HISTORY_PREFIX,
    PromotionRecord,
    ReadRecord,
    UnreadableRecord,
    parse_record,
)

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
PLAN_HASH = "sha256:" + "ab" * 32


def _body(**changes: Any) -> dict[str, Any]:
    """A release record as cloudops 0.1 wrote it before plans (no plan_hash field)."""
    record = {
        "id": "20261102T093000000000Z-0123456789ab",
        "kind": "release",
        "when": "2026-11-02T09:30:00+00:00",
        "who": "arn:aws:sts::222222222222:assumed-role/cloudops/x (jenkins)",
        "source_account": "build",
        "source_account_id": "111111111111",
        "destination_account": "qa",
        "destination_account_id": "222222222222",
        "version": "2026.11",
        "result": "promoted",
    }
    record.update(changes)
    return record


def _parse(record: dict[str, Any]) -> ReadRecord | UnreadableRecord:
    key = HISTORY_PREFIX + "2026/11/20261102T093000000000Z-0123456789ab.json"
    return parse_record(json.dumps(record).encode(), "qa", "222222222222", key, NOW, now=NOW)


def test_a_record_written_before_plans_parses_with_no_plan_hash() -> None:
    read = _parse(_body())
    assert isinstance(read, ReadRecord) and read.trusted
    assert read.record.plan_hash is None


def test_a_release_record_keeps_its_plan_hash() -> None:
    read = _parse(_body(plan_hash=PLAN_HASH))
    assert isinstance(read, ReadRecord) and read.record.plan_hash == PLAN_HASH
    assert read.as_dict()["plan_hash"] == PLAN_HASH  # `history --json` shows it
    made = PromotionRecord.new(
        **{k: v for k, v in _body(plan_hash=PLAN_HASH).items() if k not in ("id", "when")}
    )
    assert made.model_dump(mode="json")["plan_hash"] == PLAN_HASH


@pytest.mark.parametrize(
    "plan_hash",
    [
        "sha256:" + "AB" * 32,  # upper case
        "sha256:" + "ab" * 31,  # short
        "sha512:" + "ab" * 32,
        "ab" * 32,  # bare hex (package sums are; plan hashes are not)
        PLAN_HASH + "\n",
        "sha256:" + "ab" * 31 + "\x1b[",
        7,
    ],
)
def test_a_plan_hash_that_is_not_a_sha256_digest_makes_the_record_unreadable(plan_hash: object) -> None:
    read = _parse(_body(plan_hash=plan_hash))
    assert isinstance(read, UnreadableRecord)
    assert "plan_hash" in read.reason and "\x1b" not in read.reason  # never its value
