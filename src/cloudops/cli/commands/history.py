"""`cloudops history`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import click
from rich.markup import escape
from rich.table import Table

from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, human_bytes, stderr
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.history import filter_records, parse_since, read_history


@click.command()
@click.option("--account", "accounts", multiple=True, metavar="A", help="Only this account (repeatable).")
@click.option(
    "--repository", "repositories", multiple=True, metavar="R", help="Only images of R (repeatable)."
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only from WHEN on: an ISO date/time (UTC unless given) or 30m, 12h, 7d, 2w.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON on stdout.")
@pipeline_option
@handles_errors
def history(
    accounts: tuple[str, ...],
    repositories: tuple[str, ...],
    since: str | None,
    as_json: bool,
    pipeline_file: str | None,
) -> None:
    """Promotion records of every account (or --account), oldest first, read from each
    account's own bucket. Failed and refused promotions are shown too, with the reason."""
    context = build_context(pipeline_file)
    for name in accounts:
        context.pipeline.account(name)
    start = parse_since(since) if since else None
    if as_json:
        records, problems = read_history(context, list(accounts) or None)
        records = filter_records(records, repositories=repositories, since=start)
        emit_json({"records": [r.model_dump(mode="json") for r in records], "unreadable": problems})
        return
    print_history(context, list(accounts), repositories=repositories, since=start)


def print_history(
    context: PipelineContext,
    accounts: list[str],
    *,
    repositories: Sequence[str] = (),
    since: datetime | None = None,
) -> None:
    records, problems = read_history(context, accounts or None)
    records = filter_records(records, repositories=repositories, since=since)
    table = Table(title="promotion history", show_lines=False)
    for column in ("when", "what", "from", "to", "digest", "bytes", "result", "why"):
        table.add_column(column)
    for r in records:
        what = f"{r.repository}:{r.tag}" if r.kind == "image" else f"{r.kind} {r.version or ''}"
        style = {"promoted": "green", "already-promoted": "dim", "refused": "yellow", "failed": "red"}[
            r.result
        ]
        table.add_row(
            r.when.replace("+00:00", "Z"),
            what,
            r.source_account,
            r.destination_account,
            (r.source_digest or "")[7:19],
            human_bytes(r.bytes),
            f"[{style}]{r.result}[/]",
            escape(r.error or ""),
        )
    stderr.print(table)
    for name, why in problems.items():
        stderr.print(f"[yellow]could not read {name}:[/] {why}")
