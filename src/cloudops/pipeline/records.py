"""One promotion record, as written and as read back: the record model and the pure
checks every history object passes before it is believed (no I/O; the reading is
pipeline/history.py's, the daily index pipeline/history_daily.py's).

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
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

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

HISTORY_PREFIX = "cloudops/history/"
"""Where the promotion log lives in each account's bucket (one object per record). The
layout of the log is defined here, in the pure layer that defines the records: aws/s3.py
(a lower layer, which never imports this one) stores whatever keys it is handed."""
DAILY_PREFIX = "cloudops/history-daily/"
"""Daily objects cloudops writes itself (pipeline/history_daily.py): an index of one UTC
day's record objects, so that reading history is one GET per day, not one per record."""

RecordResult = Literal[
    "promoted",
    "already-promoted",
    "refused",
    "failed",
    "planned",
    "approved",
    "rejected",
    "rolled-back",
    "updated",
    "reset",
]
RecordKind = Literal["image", "package", "release", "plan", "approval", "rejection", "rollback", "database"]

MAX_RECORD_BYTES = 64 * 1024
"""A record cloudops writes is well under 4 KiB; a history object larger than this is
refused unread (only the first MAX_RECORD_BYTES + 1 bytes are ever fetched)."""
MAX_BYTES = 2**53
"""8 PiB: more than any image or package, and still exact as a JSON number."""
MAX_SECONDS = 7 * 24 * 3600.0
CLOCK_SKEW = timedelta(minutes=5)
"""A record (or key) dated later than now + CLOCK_SKEW is "dated in the future"."""
MAX_ERROR_CHARS = 4000

_Text = Annotated[str, StringConstraints(max_length=512)]
AccountName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]

_KEY = re.compile(
    re.escape(HISTORY_PREFIX)
    + r"(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/"
    + r"(?P<id>(?P<stamp>[0-9]{8}T[0-9]{6})(?P<micro>[0-9]{6})?Z-[0-9a-z]{1,32})\.json"
)


def iso_time_with_zone(value: str) -> str:
    """``value`` when it is an ISO-8601 time with a zone (a record's or a plan's time), else
    ValueError: a time without a zone cannot be ordered against the others."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise ValueError("an ISO-8601 time without a zone")
    return value


class PromotionRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    kind: RecordKind = "image"
    when: Annotated[str, StringConstraints(max_length=40)]
    who: _Text
    source_account: AccountName
    source_account_id: AccountId
    destination_account: AccountName
    destination_account_id: AccountId
    repository: Annotated[str, StringConstraints(max_length=256)] | None = None
    tag: Annotated[str, StringConstraints(max_length=128)] | None = None
    source_digest: Digest | None = None
    version: Annotated[str, StringConstraints(max_length=128)] | None = None
    bytes: Annotated[StrictInt, Field(ge=0, le=MAX_BYTES)] = 0
    seconds: Annotated[float, Field(ge=0, le=MAX_SECONDS)] = 0.0
    result: RecordResult
    error: Annotated[str, StringConstraints(max_length=MAX_ERROR_CHARS)] | None = None
    jenkins_build: Annotated[str, StringConstraints(max_length=1024)] | None = None
    plan_hash: Digest | None = None
    """The hash of the plan a release, plan, approval or rollback record is about
    (pipeline/plan.py); None in other records and in records written before plans existed."""
    reason: _Text | None = None
    """Why a release was rejected; the note an approver gave (e.g. the Jenkins user who
    answered the input step)."""
    tool_version: Annotated[str, StringConstraints(max_length=64)] = __version__

    @field_validator("when")
    @classmethod
    def _iso_time_with_zone(cls, value: str) -> str:
        return iso_time_with_zone(value)

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
