"""Values of `cloudops status`: what each account was seen to hold (Holding), and the
matrix computed from it (Cell, Row, StatusMatrix). No I/O here.

A row is one ECR repository (or the deployment package); a column is one stage. Each
cell carries a mark, in this order of precedence:

    unreachable  the account (or this repository in it) could not be read: ``reason`` says why
    drift        a tag here names another digest than the same tag upstream: must never
                 happen (tags never move), so it is shown loudest
    missing      nothing here at all
    behind       the stage before holds tags newer than the newest one both share, not
                 promoted here yet (``pending``)
    same         holds the newest content of the stage before
    source       the first stage: nothing before it to compare with
    unknown      no stage before it could be read, so there is nothing to compare with
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Mark = Literal["unreachable", "drift", "missing", "behind", "same", "source", "unknown"]
RowKind = Literal["image", "package"]

MARKS: tuple[Mark, ...] = ("unreachable", "drift", "missing", "behind", "same", "source", "unknown")
PACKAGE_ROW = "deployment package"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One tag of an image (or one version of the package) and the content it names."""

    tag: str
    digest: str
    """sha256:<hex> of the manifest (image) or of the zip (package)."""
    current: bool = False
    """Package only: the version the account's current.json points at."""

    @property
    def short_digest(self) -> str:
        return short_digest(self.digest)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tag": self.tag, "digest": self.digest}
        if self.current:
            out["current"] = True
        return out


def short_digest(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


@dataclass(frozen=True, slots=True)
class Holding:
    """What one account was seen to hold of one row, in any order."""

    artifacts: tuple[Artifact, ...] = ()
    error: str | None = None
    """Why this could not be read (the cell is "unreachable"); artifacts are then empty."""
    note: str | None = None
    """Something true about an empty holding, e.g. "repository does not exist"."""


@dataclass(frozen=True, slots=True)
class AccountStatus:
    name: str
    account_id: str
    region: str
    error: str | None = None
    """Why the account could not be read at all (credentials, guard, endpoint)."""

    @property
    def reachable(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "reachable": self.reachable,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything `status` read: per account, and per row per stage."""

    stages: tuple[str, ...]
    accounts: dict[str, AccountStatus]
    rows: tuple[tuple[RowKind, str, dict[str, Holding]], ...]
    read_at: datetime
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Drift:
    tag: str
    digest: str
    upstream_stage: str
    upstream_digest: str

    def as_dict(self) -> dict[str, str]:
        return {
            "tag": self.tag,
            "digest": self.digest,
            "upstream_stage": self.upstream_stage,
            "upstream_digest": self.upstream_digest,
        }


@dataclass(frozen=True, slots=True)
class Cell:
    stage: str
    mark: Mark
    newest: tuple[Artifact, ...] = ()
    """The newest few tags here, newest first (see matrix.newest_first)."""
    count: int = 0
    compared_with: str | None = None
    pending: tuple[str, ...] = ()
    """Tags of ``compared_with`` newer than the newest tag both hold, not here yet."""
    drift: tuple[Drift, ...] = ()
    not_upstream: tuple[str, ...] = ()
    """Tags here that no readable earlier stage holds (pushed here outside the pipeline,
    or since removed upstream): informative, not a mark."""
    reason: str | None = None
    current: str | None = None
    """Package only: the version current.json points at."""

    def as_dict(self, *, list_limit: int = 50) -> dict[str, Any]:
        return {
            "mark": self.mark,
            "newest": [a.as_dict() for a in self.newest],
            "count": self.count,
            "current": self.current,
            "compared_with": self.compared_with,
            "pending": list(self.pending[:list_limit]),
            "pending_count": len(self.pending),
            "drift": [d.as_dict() for d in self.drift],
            "not_upstream": list(self.not_upstream[:list_limit]),
            "not_upstream_count": len(self.not_upstream),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Row:
    kind: RowKind
    name: str
    cells: tuple[Cell, ...]

    def cell(self, stage: str) -> Cell:
        return next(c for c in self.cells if c.stage == stage)


@dataclass(frozen=True, slots=True)
class StatusMatrix:
    stages: tuple[str, ...]
    accounts: dict[str, AccountStatus]
    rows: tuple[Row, ...]
    read_at: datetime
    seconds: float = 0.0
    ordering: str = "newest first by version sort of the tag (semver-ish; see docs/status.md)"

    def counts(self) -> dict[Mark, int]:
        found: dict[Mark, int] = dict.fromkeys(MARKS, 0)
        for row in self.rows:
            for cell in row.cells:
                found[cell.mark] += 1
        return found

    @property
    def has_drift(self) -> bool:
        return any(c.mark == "drift" or c.drift for r in self.rows for c in r.cells)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read_at": self.read_at.isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "ordering": self.ordering,
            "stages": list(self.stages),
            "accounts": {name: a.as_dict() for name, a in self.accounts.items()},
            "rows": [
                {"kind": r.kind, "name": r.name, "cells": {c.stage: c.as_dict() for c in r.cells}}
                for r in self.rows
            ],
            "summary": {mark: n for mark, n in self.counts().items()},
        }
