"""`cloudops status`: which version is in which account, and is anything out of line."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from cloudops.cli import exit_codes
from cloudops.cli.context import pipeline_option
from cloudops.cli.output import emit_json, handles_errors, stderr
from cloudops.errors import InputError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import load_pipeline
from cloudops.report.collect import read_status
from cloudops.report.html import render_html
from cloudops.report.model import Cell, StatusMatrix

STYLE = {
    "same": "green",
    "source": "blue",
    "behind": "yellow",
    "drift": "bold white on red",
    "missing": "dim",
    "unknown": "dim",
    "unreachable": "magenta",
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
@click.option("--strict", is_flag=True, help="Exit 4 when any cell shows drift or an account is unreachable.")
@pipeline_option
@handles_errors
def status(
    as_json: bool, html_file: Path | None, read_role: str | None, strict: bool, pipeline_file: str | None
) -> None:
    """One row per repository (and one for the deployment package), one column per stage
    in order. Each cell shows the newest tags with short digests and a mark: SAME as the
    stage before, BEHIND it (newer tags upstream not promoted yet), DRIFT (a tag naming
    another digest than upstream: must never happen), MISSING, or UNREACHABLE with the
    reason. Only read calls are made; unreadable accounts do not stop the others."""
    context = _context(pipeline_file, read_role)
    report = read_status(context, with_history=html_file is not None)
    matrix = report.matrix
    if html_file is not None:
        history = report.history
        page = render_html(
            matrix,
            history.records if history else [],
            history.unreadable if history else {},
            title=f"cloudops status: {context.pipeline.path or 'pipeline'}",
        )
        try:
            html_file.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {html_file}: {exc.strerror}") from None
    if as_json:
        emit_json(matrix.as_dict())
    else:
        print_matrix(matrix)
    if html_file is not None:
        stderr.print(f"wrote {escape(str(html_file))}")
    if strict and (matrix.has_drift or any(not a.reachable for a in matrix.accounts.values())):
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


def print_matrix(matrix: StatusMatrix) -> None:
    table = Table(title="what is where", show_lines=True)
    table.add_column("repository")
    for stage in matrix.stages:
        table.add_column(f"{stage}\n[dim]{matrix.accounts[stage].account_id}[/]")
    for row in matrix.rows:
        table.add_row(escape(row.name), *(_cell_text(c, matrix) for c in row.cells))
    stderr.print(table)
    counts = matrix.counts()
    stderr.print(
        ", ".join(f"[{STYLE[m]}]{n} {m}[/]" for m, n in counts.items() if n) + f"  ({matrix.seconds:.1f} s)"
    )
    for stage in matrix.stages:
        account = matrix.accounts[stage]
        if account.error:
            stderr.print(f"[magenta]{escape(stage)} unreachable:[/] {escape(account.error)}")


def _cell_text(cell: Cell, matrix: StatusMatrix) -> str:
    lines = [f"[{STYLE[cell.mark]}]{cell.mark.upper()}[/]"]
    if cell.mark == "unreachable" and cell.reason == matrix.accounts[cell.stage].error:
        return lines[0] + "\n[dim](account: see below)[/]"
    for artifact in cell.newest:
        current = " [blue](current)[/]" if artifact.current else ""
        lines.append(f"{escape(artifact.tag)} [dim]{artifact.short_digest}[/]{current}")
    if cell.count > len(cell.newest):
        lines.append(f"[dim]{cell.count} tags[/]")
    for drift in cell.drift[:3]:
        lines.append(
            f"[red]{escape(drift.tag)}: {drift.digest.removeprefix('sha256:')[:12]} here, "
            f"{drift.upstream_digest.removeprefix('sha256:')[:12]} in {escape(drift.upstream_stage)}[/]"
        )
    if cell.pending:
        shown = ", ".join(cell.pending[:3]) + (" ..." if len(cell.pending) > 3 else "")
        waiting = "waiting" if cell.mark == "missing" else "newer"
        lines.append(f"[yellow]{len(cell.pending)} {waiting} in {cell.compared_with}: {escape(shown)}[/]")
    if cell.reason:
        lines.append(f"[dim]{escape(cell.reason)}[/]")
    return "\n".join(lines)
