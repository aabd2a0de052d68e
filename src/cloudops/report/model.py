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

When pipeline.yaml has ``verify: {keys: [...]}``, every tag an image cell shows also
carries a signature state (Signature), checked against those keys in that account's own
registry, and the cell the worst of them (SIGNATURE_STATES, worst first):

    invalid      signatures refer to it, and none verifies under the pipeline's keys
    unsigned     no cosign signature refers to it
    unchecked    its registry could not be read (``reason`` says why)
    signed       a signature over exactly this digest verifies under one of the keys
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Mark = Literal["unreachable", "drift", "missing", "behind", "same", "source", "unknown"]
RowKind = Literal["image", "package"]

MARKS: tuple[Mark, ...] = ("unreachable", "drift", "missing", "behind", "same", "source", "unknown")
PACKAGE_ROW = "deployment package"

SignatureState = Literal["invalid", "unsigned", "unchecked", "signed"]
SIGNATURE_STATES: tuple[SignatureState, ...] = ("invalid", "unsigned", "unchecked", "signed")
"""Worst first: a cell shows the worst state of the tags it shows."""


@dataclass(frozen=True, slots=True)
class Signature:
    """What the pipeline's keys say of one digest in one account's registry."""

    state: SignatureState
    reason: str
    """"signed by <key>", or what was missing or wrong (text from a registry: hostile)."""
    key: str | None = None
    """The key (its file) that verified it, when signed."""

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "key": self.key}


@dataclass(frozen=True, slots=True)
class Artifact:
    """One tag of an image (or one version of the package) and the content it names."""

    tag: str
    digest: str
    """sha256:<hex> of the manifest (image) or of the zip (package)."""
    current: bool = False
    """Package only: the version the account's current.json points at."""
    signature: Signature | None = None
    """Image only, when pipeline.yaml has verify keys: its signature state here."""

    @property
    def short_digest(self) -> str:
        return short_digest(self.digest)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tag": self.tag, "digest": self.digest}
        if self.current:
            out["current"] = True
        if self.signature is not None:
            out["signature"] = self.signature.as_dict()
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
    signature: SignatureState | None = None
    """Image cells, when pipeline.yaml has verify keys: the worst state of the tags shown
    (None: not checked, or nothing shown)."""

    def as_dict(self, *, list_limit: int = 50) -> dict[str, Any]:
        out: dict[str, Any] = {
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
        if self.signature is not None:
            out["signature"] = self.signature
        return out


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
    signature_keys: tuple[str, ...] = ()
    """The verify keys the shown image tags were checked against (none: not checked)."""

    def counts(self) -> dict[Mark, int]:
        found: dict[Mark, int] = dict.fromkeys(MARKS, 0)
        for row in self.rows:
            for cell in row.cells:
                found[cell.mark] += 1
        return found

    def signature_counts(self) -> dict[SignatureState, int]:
        """Shown image tags per signature state."""
        found: dict[SignatureState, int] = dict.fromkeys(SIGNATURE_STATES, 0)
        for row in self.rows:
            for cell in row.cells:
                for artifact in cell.newest:
                    if artifact.signature is not None:
                        found[artifact.signature.state] += 1
        return found

    @property
    def has_drift(self) -> bool:
        return any(c.mark == "drift" or c.drift for r in self.rows for c in r.cells)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
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
        if self.signature_keys:
            out["signatures"] = {"keys": list(self.signature_keys), "summary": self.signature_counts()}
        return out
