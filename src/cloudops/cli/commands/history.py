"""`cloudops history`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import click
from rich.table import Table

from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, human_bytes, safe_text, stderr
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.history import (
    DEFAULT_LIMIT,
    HistoryRead,
    filter_records,
    parse_since,
    read_history,
)
from cloudops.pipeline.records import ReadRecord

LISTED = 20
"""Suspect and unreadable records listed one by one per account; the rest are counted."""

RESULT_STYLE = {
    "promoted": "green",
    "already-promoted": "dim",
    "refused": "yellow",
    "failed": "red",
    "planned": "dim",
    "approved": "green",
    "rejected": "yellow",
    "rolled-back": "green",
    "updated": "green",
    "reset": "yellow",
}


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
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    metavar="N",
    help="Read the newest N records of each account (by the date of their key); older ones are counted.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON on stdout.")
@pipeline_option
@handles_errors
def history(
    accounts: tuple[str, ...],
    repositories: tuple[str, ...],
    since: str | None,
    limit: int,
    as_json: bool,
    pipeline_file: str | None,
) -> None:
    """Promotion records of every account (or --account), oldest first, read from each
    account's own bucket. Failed and refused promotions are shown too, with the reason.
    A record is shown as the account whose bucket held it: one that claims another
    account, or a time in the future, is listed apart as a finding; one that is not a
    valid record is listed as unreadable, with its key."""
    context = build_context(pipeline_file)
    for name in accounts:
        context.pipeline.account(name)
    start = parse_since(since) if since else None
    found = read_history(context, list(accounts) or None, limit=limit)
    found.records = filter_records(found.records, repositories=repositories, since=start)
    found.suspect = filter_records(found.suspect, repositories=repositories, since=start)
    if as_json:
        emit_json(
            {
                "records": [r.as_dict() for r in found.records],
                "unreadable": found.unreadable,
                **found.extras(),
            }
        )
    else:
        show_history(found)
    refusal = found.refusal()
    if refusal is not None:
        raise refusal


def print_history(
    context: PipelineContext,
    accounts: list[str],
    *,
    repositories: Sequence[str] = (),
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> None:
    found = read_history(context, accounts or None, limit=limit)
    found.records = filter_records(found.records, repositories=repositories, since=since)
    found.suspect = filter_records(found.suspect, repositories=repositories, since=since)
    show_history(found)


def what_of(read: ReadRecord) -> str:
    r = read.record
    return f"{r.repository}:{r.tag}" if r.kind == "image" else f"{r.kind} {r.version or ''}".strip()


def show_history(found: HistoryRead) -> None:
    """The table of believable records, then what is wrong: every piece of it text read
    from a bucket, so every piece goes through safe_text."""
    table = Table(title="promotion history", show_lines=False)
    for column in ("when", "what", "from", "to", "digest", "bytes", "result", "why"):
        table.add_column(column)
    for read in found.records:
        r = read.record
        table.add_row(
            safe_text(r.when.replace("+00:00", "Z")),
            safe_text(what_of(read)),
            safe_text(r.source_account),
            safe_text(read.account),
            safe_text((r.source_digest or r.plan_hash or "")[7:19]),
            human_bytes(r.bytes),
            f"[{RESULT_STYLE.get(r.result, 'default')}]{r.result}[/]",
            safe_text(r.error or r.reason or ""),
        )
    stderr.print(table)
    show_findings(found)


def show_findings(found: HistoryRead, *, listed: int = LISTED) -> None:
    """Suspect records (as the account whose bucket held them), unreadable records with
    their keys, records not read; each account's list bounded, the rest counted."""
    for account in sorted({r.account for r in found.suspect}):
        suspect = found.suspect_of(account)
        for read in suspect[:listed]:
            r = read.record
            claims = (
                f"claims {r.destination_account} ({r.destination_account_id}), {what_of(read)} {r.result}"
            )
            stderr.print(
                f"[bold red]finding in {safe_text(account)}'s bucket:[/] "
                f"{safe_text(', '.join(read.findings))}: {safe_text(read.key)} "
                f"[dim]({safe_text(claims)}, dated {safe_text(r.when)})[/]"
            )
        if len(suspect) > listed:
            stderr.print(
                f"[bold red]and {len(suspect) - listed} more findings in {safe_text(account)}'s bucket[/]"
            )
    for account in sorted({u.account for u in found.unreadable_records}):
        unreadable = found.unreadable_of(account)
        for item in unreadable[:listed]:
            stderr.print(
                f"[yellow]unreadable record in {safe_text(account)}:[/] "
                f"{safe_text(item.key)}: {safe_text(item.reason)}"
            )
        if len(unreadable) > listed:
            stderr.print(
                f"[yellow]and {len(unreadable) - listed} more unreadable records in {safe_text(account)}[/]"
            )
    for account, dropped in found.dropped.items():
        if dropped.unreadable:
            stderr.print(
                f"[yellow]{safe_text(account)}: {dropped.unreadable} more unreadable objects "
                "counted, not listed[/]"
            )
        if dropped.future:
            stderr.print(
                f"[bold red]{safe_text(account)}: {dropped.future} records dated in the future by their key "
                "were dropped, not read[/] (a clock far off, or records planted to sort above the real ones)"
            )
        if dropped.older:
            stderr.print(
                f"[dim]{safe_text(account)}: {dropped.older} older records dropped, not read "
                "(beyond --limit, newest first by key)[/]"
            )
    for name, why in found.unreadable.items():
        stderr.print(f"[yellow]could not read {safe_text(name)}:[/] {safe_text(why)}")
