"""`cloudops status`: which version is in which account, and is anything out of line."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import click
from rich.table import Table

from cloudops.cli import exit_codes
from cloudops.cli.context import pipeline_option
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.errors import InputError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.history import HistoryRead
from cloudops.pipeline.model import load_pipeline
from cloudops.pipeline.records import CLAIMS_ANOTHER_ACCOUNT, DATED_IN_THE_FUTURE
from cloudops.report.collect import CurrentSeen, read_status
from cloudops.report.html import render_html
from cloudops.report.model import Cell, StatusMatrix, short_digest

STYLE = {
    "same": "green",
    "source": "blue",
    "behind": "yellow",
    "drift": "bold white on red",
    "missing": "dim",
    "unknown": "dim",
    "unreachable": "magenta",
}
SIGNATURE_STYLE = {
    "signed": "green",
    "unsigned": "yellow",
    "invalid": "bold white on red",
    "unchecked": "dim",
}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the matrix as JSON on stdout.")
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write one self-contained HTML page: the matrix and each account's promotion history.",
)
@click.option(
    "--read-role",
    metavar="NAME",
    help="Assume arn:aws:iam::<account>:role/NAME in every account instead of pipeline.yaml's "
    "role (a read-only role for dashboards), from the same base credentials.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 4 when any cell shows drift, an account is unreachable, or a promotion history holds "
    "suspect or unreadable records.",
)
@pipeline_option
@handles_errors
def status(
    as_json: bool, html_file: Path | None, read_role: str | None, strict: bool, pipeline_file: str | None
) -> None:
    """One row per repository (and one for the deployment package), one column per stage
    in order. Each cell shows the newest tags with short digests and a mark: SAME as the
    stage before, BEHIND it (newer tags upstream not promoted yet), DRIFT (a tag naming
    another digest than upstream: must never happen), MISSING, or UNREACHABLE with the
    reason. Only read calls are made; unreadable accounts do not stop the others.
    With verify keys in pipeline.yaml, each image tag shown is also marked SIGNED,
    UNSIGNED or INVALID against those keys, read from that account's registry."""
    context = _context(pipeline_file, read_role)
    report = read_status(context, with_history=True)
    matrix = report.matrix
    if html_file is not None:
        page = render_html(
            matrix,
            history=report.history,
            title=f"cloudops status: {context.pipeline.path or 'pipeline'}",
            current=report.current,
        )
        try:
            html_file.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {html_file}: {exc.strerror}") from None
    if as_json:
        document = matrix.as_dict()
        for name, account in document["accounts"].items():
            seen = report.current_of(name)
            account["current_release"] = seen.as_dict()
            account["current_release_error"] = seen.error
            account["rejected_releases"] = seen.rejected_dicts()
            account["rejected_releases_error"] = seen.rejected_error
        document["history"] = report.history_dict()
        emit_json(document)
    else:
        print_matrix(matrix, report.current)
        if report.history is not None:
            print_history_findings(report.history)
    if html_file is not None:
        stderr.print(f"wrote {safe_text(html_file)}")
    out_of_line = matrix.has_drift or any(not a.reachable for a in matrix.accounts.values())
    if strict and (out_of_line or report.has_history_findings):
        sys.exit(exit_codes.FINDINGS)


def _context(pipeline_file: str | None, read_role: str | None) -> PipelineContext:
    pipeline = load_pipeline(pipeline_file)
    overrides = {}
    if read_role:
        if not all(c.isalnum() or c in "+=,.@_-/" for c in read_role):
            raise InputError(f"--read-role {read_role!r} is not an IAM role name")
        for name, account in pipeline.accounts.items():
            overrides[name] = account.credentials.model_copy(
                update={"role_arn": f"arn:aws:iam::{account.account_id}:role/{read_role}"}
            )
    return PipelineContext(pipeline, credential_overrides=overrides)


def print_matrix(matrix: StatusMatrix, current: Mapping[str, CurrentSeen] | None = None) -> None:
    table = Table(title="what is where", show_lines=True)
    table.add_column("repository")
    for stage in matrix.stages:
        table.add_column(f"{safe_text(stage)}\n[dim]{safe_text(matrix.accounts[stage].account_id)}[/]")
    for row in matrix.rows:
        table.add_row(safe_text(row.name), *(_cell_text(c, matrix) for c in row.cells))
    if current is not None:
        table.add_row(
            "[bold]current release[/]",
            *(_current_text(current.get(stage), matrix.accounts[stage].reachable) for stage in matrix.stages),
        )
    stderr.print(table)
    counts = matrix.counts()
    stderr.print(
        ", ".join(f"[{STYLE[m]}]{n} {m}[/]" for m, n in counts.items() if n) + f"  ({matrix.seconds:.1f} s)"
    )
    if matrix.signature_keys:
        signed = matrix.signature_counts()
        stderr.print(
            "signatures: "
            + ", ".join(f"[{SIGNATURE_STYLE[s]}]{n} {s}[/]" for s, n in signed.items() if n)
            + f" [dim](keys: {safe_text(', '.join(matrix.signature_keys))})[/]"
        )
    for stage in matrix.stages:
        account = matrix.accounts[stage]
        if account.error:
            stderr.print(f"[magenta]{safe_text(stage)} unreachable:[/] {safe_text(account.error)}")


def print_history_findings(found: HistoryRead) -> None:
    """One line per account whose promotion history holds something out of line; the
    details are in `cloudops history --account A`."""
    accounts = {r.account for r in found.suspect} | {u.account for u in found.unreadable_records}
    accounts |= {name for name, d in found.dropped.items() if d.future}
    for account in sorted(accounts):
        parts = []
        suspect = found.suspect_of(account)
        claims = sum(CLAIMS_ANOTHER_ACCOUNT in r.findings for r in suspect)
        if claims:
            parts.append(f"{claims} records claim another account")
        future = sum(DATED_IN_THE_FUTURE in r.findings for r in suspect)
        future += found.dropped[account].future if account in found.dropped else 0
        if future:
            parts.append(f"{future} records dated in the future")
        unreadable = found.unreadable_of(account)
        if unreadable:
            parts.append(f"{len(unreadable)} unreadable records")
        stderr.print(
            f"[bold red]{safe_text(account)} history:[/] {', '.join(parts)} "
            f"(see `cloudops history --account {safe_text(account)}`)"
        )


def _cell_text(cell: Cell, matrix: StatusMatrix) -> str:
    lines = [f"[{STYLE[cell.mark]}]{cell.mark.upper()}[/]"]
    if cell.mark == "unreachable" and cell.reason == matrix.accounts[cell.stage].error:
        return lines[0] + "\n[dim](account: see below)[/]"
    for artifact in cell.newest:
        current = " [blue](current)[/]" if artifact.current else ""
        signed = ""
        if artifact.signature is not None:
            state = artifact.signature.state
            signed = f" [{SIGNATURE_STYLE[state]}]{state.upper()}[/]"
        lines.append(f"{safe_text(artifact.tag)} [dim]{safe_text(artifact.short_digest)}[/]{current}{signed}")
    if cell.count > len(cell.newest):
        lines.append(f"[dim]{cell.count} tags[/]")
    for drift in cell.drift[:3]:
        lines.append(
            f"[red]{safe_text(drift.tag)}: {safe_text(short_digest(drift.digest))} here, "
            f"{safe_text(short_digest(drift.upstream_digest))} in {safe_text(drift.upstream_stage)}[/]"
        )
    if cell.pending:
        shown = ", ".join(cell.pending[:3]) + (" ..." if len(cell.pending) > 3 else "")
        waiting = "waiting" if cell.mark == "missing" else "newer"
        lines.append(
            f"[yellow]{len(cell.pending)} {waiting} in {safe_text(cell.compared_with)}: {safe_text(shown)}[/]"
        )
    if cell.reason:
        lines.append(f"[dim]{safe_text(cell.reason)}[/]")
    return "\n".join(lines)


def _current_text(seen: CurrentSeen | None, reachable: bool) -> str:
    """One account's releases/current.json: release, short plan hash, whether it matches."""
    if not reachable:
        return "[dim](account: see below)[/]"
    if seen is None:
        return "[dim]none recorded[/]"
    if seen.value is None and seen.error is None:
        return "\n".join(["[dim]none recorded[/]", *_rejected_lines(seen)])
    if seen.value is None:
        return "\n".join([f"[magenta]UNREADABLE[/]\n[dim]{safe_text(seen.error)}[/]", *_rejected_lines(seen)])
    lines = [f"{safe_text(seen.value.release)} [dim]{safe_text(seen.value.short_hash)}[/]"]
    if seen.matches is True:
        lines.append("[green]matches[/]")
    elif seen.matches is False:
        lines.append("[red]DOES NOT MATCH[/]")
    else:
        lines.append("[dim]match not known[/]")
    lines.extend(f"[dim]{safe_text(d)}[/]" for d in seen.differences[:3])
    if len(seen.differences) > 3:
        lines.append(f"[dim]{len(seen.differences) - 3} more[/]")
    return "\n".join(lines + _rejected_lines(seen))


def _rejected_lines(seen: CurrentSeen) -> list[str]:
    """The releases rejected in the account (release_gates.py), newest first."""
    lines = [f"[yellow]rejected {safe_text(r.release)}[/]" for r in seen.rejected[:3]]
    if len(seen.rejected) > 3:
        lines.append(f"[dim]{len(seen.rejected) - 3} more rejected[/]")
    if seen.rejected_error:
        lines.append(f"[magenta]rejections unreadable:[/] [dim]{safe_text(seen.rejected_error)}[/]")
    return lines
