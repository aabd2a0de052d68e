"""The status matrix, computed from what was read (pure: no I/O, no clock).

"Newest" is a version sort of the tag (semver-ish, version_key). Push times would not
do: in every account but the build account a tag's push time is when it was promoted
there, so they cannot say which content is newer across stages, and a version is what
operators read anyway. Tags that are not versions (a git SHA) sort by name, which
says nothing about age: `cloudops history` has the order in which they were promoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from cloudops.report.model import (
    SIGNATURE_STATES,
    AccountStatus,
    Artifact,
    Cell,
    Drift,
    Holding,
    Mark,
    Observation,
    Row,
    RowKind,
    Signature,
    SignatureState,
    StatusMatrix,
)
from cloudops.versions import version_key

SHOWN = 3
"""Tags shown per cell."""


def newest_first(artifacts: Iterable[Artifact]) -> list[Artifact]:
    return sorted(artifacts, key=lambda a: version_key(a.tag), reverse=True)


def compute_matrix(observation: Observation, *, shown: int = SHOWN) -> StatusMatrix:
    rows = tuple(
        Row(kind, name, _row_cells(observation.stages, observation.accounts, holdings, shown))
        for kind, name, holdings in observation.rows
    )
    return StatusMatrix(
        observation.stages, observation.accounts, rows, observation.read_at, observation.seconds
    )


def _row_cells(
    stages: Sequence[str], accounts: dict[str, AccountStatus], holdings: dict[str, Holding], shown: int
) -> tuple[Cell, ...]:
    ordered: dict[str, list[Artifact]] = {}
    for stage in stages:
        holding = _holding(stage, accounts, holdings)
        if holding.error is None:
            ordered[stage] = newest_first(holding.artifacts)
    by_tag = {stage: {a.tag: a for a in arts} for stage, arts in ordered.items()}

    cells: list[Cell] = []
    for index, stage in enumerate(stages):
        holding = _holding(stage, accounts, holdings)
        if holding.error is not None:
            cells.append(Cell(stage, "unreachable", reason=holding.error))
            continue
        here = ordered[stage]
        earlier = [s for s in reversed(stages[:index]) if s in ordered]  # nearest first
        compared = earlier[0] if earlier else None
        current = next((a.tag for a in here if a.current), None)
        notes = [holding.note] if holding.note else []
        if compared is not None and stages[index - 1] != compared:
            notes.append(f"{stages[index - 1]} unreadable: compared with {compared}")

        drift = tuple(_drift(here, earlier, by_tag))
        pending: tuple[str, ...] = ()
        not_upstream: tuple[str, ...] = ()
        if compared is not None:
            pending = _pending(ordered[compared], by_tag[stage])
            not_upstream = tuple(a.tag for a in here if not any(a.tag in by_tag[s] for s in earlier))

        mark: Mark
        if drift:
            mark = "drift"
        elif not here:
            mark = "missing"
        elif index == 0:
            mark = "source"
        elif compared is None:
            mark = "unknown"
            notes.append("no stage before it could be read")
        elif pending:
            mark = "behind"
        else:
            mark = "same"
        cells.append(
            Cell(
                stage,
                mark,
                newest=tuple(here[:shown]),
                count=len(here),
                compared_with=compared,
                pending=pending,
                drift=drift,
                not_upstream=not_upstream,
                reason="; ".join(notes) or None,
                current=current,
            )
        )
    return tuple(cells)


def _holding(stage: str, accounts: dict[str, AccountStatus], holdings: dict[str, Holding]) -> Holding:
    account = accounts.get(stage)
    if account is not None and account.error is not None:
        return Holding(error=account.error)
    return holdings.get(stage) or Holding(error="not read")


def _pending(upstream: list[Artifact], here: dict[str, Artifact]) -> tuple[str, ...]:
    """Upstream tags (newest first) above the newest tag this stage also holds. Older
    upstream tags this stage never got are not pending: skipping a version is allowed."""
    pending: list[str] = []
    for artifact in upstream:
        if artifact.tag in here:
            break
        pending.append(artifact.tag)
    return tuple(pending)


def _drift(
    here: list[Artifact], earlier: list[str], by_tag: dict[str, dict[str, Artifact]]
) -> Iterable[Drift]:
    """Each tag is held against the nearest readable earlier stage that has it, so a tag
    pushed straight into preprod is caught even when qa never got that tag."""
    for artifact in here:
        for stage in earlier:
            other = by_tag[stage].get(artifact.tag)
            if other is not None:
                if other.digest != artifact.digest:
                    yield Drift(artifact.tag, artifact.digest, stage, other.digest)
                break


SignatureKey = tuple[str, str, str]
"""(stage, repository, digest)."""


def signature_targets(
    stages: Sequence[str],
    rows: Iterable[tuple[RowKind, str, Mapping[str, Holding]]],
    *,
    shown: int = SHOWN,
) -> list[SignatureKey]:
    """The digests whose signatures status checks: those of the image tags each cell
    shows (the newest ``shown``), each once per account."""
    targets: dict[SignatureKey, None] = {}
    for kind, name, holdings in rows:
        if kind != "image":
            continue
        for stage in stages:
            holding = holdings.get(stage)
            if holding is None or holding.error is not None:
                continue
            for artifact in newest_first(holding.artifacts)[:shown]:
                targets[(stage, name, artifact.digest)] = None
    return list(targets)


def with_signatures(
    matrix: StatusMatrix, found: Mapping[SignatureKey, Signature], keys: Sequence[str]
) -> StatusMatrix:
    """The matrix with every shown image tag's signature state, and each image cell the
    worst of them (pure)."""
    rows = []
    for row in matrix.rows:
        if row.kind != "image":
            rows.append(row)
            continue
        cells = []
        for cell in row.cells:
            newest = tuple(
                replace(a, signature=found.get((cell.stage, row.name, a.digest))) for a in cell.newest
            )
            states = [a.signature.state for a in newest if a.signature is not None]
            cells.append(replace(cell, newest=newest, signature=_worst(states)))
        rows.append(replace(row, cells=tuple(cells)))
    return replace(matrix, rows=tuple(rows), signature_keys=tuple(keys))


def _worst(states: Sequence[SignatureState]) -> SignatureState | None:
    return next((s for s in SIGNATURE_STATES if s in states), None)
