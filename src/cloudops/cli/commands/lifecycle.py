"""`cloudops lifecycle preview`: what an account's ECR lifecycle policies would expire, and
whether a release the account runs (or keeps for rollback) still uses it."""

from __future__ import annotations

import sys
from datetime import UTC

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.lifecycle_preview import (
    DEFAULT_KEEP_RELEASES,
    MAX_KEEP_RELEASES,
    LifecyclePreview,
    RepositoryPreview,
    preview_lifecycle,
)
from cloudops.report.model import short_digest


@click.group()
def lifecycle() -> None:
    """ECR lifecycle policies, checked against the releases an account runs."""


@lifecycle.command()
@click.option("--account", "account", required=True, metavar="A", help="The account (stage) to look at.")
@click.option(
    "--keep-releases",
    type=click.IntRange(min=0, max=MAX_KEEP_RELEASES),
    default=DEFAULT_KEEP_RELEASES,
    show_default=True,
    metavar="N",
    help="Releases of the account's release log, newest first, kept for rollback (besides the current one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the preview as JSON on stdout.")
@pipeline_option
@handles_errors
def preview(account: str, keep_releases: int, as_json: bool, pipeline_file: str | None) -> None:
    """Per image repository of the pipeline: the lifecycle policy in the account's ECR,
    evaluated as ECR documents it, and each image it would expire with the rule that
    expires it. An image the current release or one of the last N releases uses is
    marked IN USE. Only read calls are made. Exit 4 when something in use would expire
    or a policy cannot be evaluated."""
    context = build_context(pipeline_file)
    found = preview_lifecycle(context, account, keep_releases=keep_releases)
    if as_json:
        emit_json(found.as_dict())
    else:
        print_preview(found)
    if not found.ok:
        sys.exit(exit_codes.FINDINGS)


def print_preview(found: LifecyclePreview) -> None:
    from rich.table import Table

    kept = ", ".join(safe_text(r.label) for r in found.releases) or "none recorded"
    stderr.print(
        f"[bold]{safe_text(found.account)}[/] [dim]({safe_text(found.account_id)})[/]: releases kept: {kept}"
    )
    for why in found.log_skipped:
        stderr.print(f"[yellow]release log entry skipped:[/] {safe_text(why)}")
    for repository in found.repositories:
        if not repository.expiring:
            stderr.print(f"{safe_text(repository.repository)}: {_nothing(repository)}")
            continue
        table = Table(
            title=f"{safe_text(repository.repository)}: {len(repository.expiring)} of "
            f"{repository.images} images would expire",
            title_justify="left",
        )
        for column in ("digest", "tags", "pushed", "rule", "use"):
            table.add_column(column)
        for item in repository.expiring:
            image = item.expiry.image
            use = (
                "\n".join(f"[bold red]IN USE by release {safe_text(u.label)}[/]" for u in item.in_use_by)
                if item.in_use
                else "[dim]not in a kept release[/]"
            )
            table.add_row(
                safe_text(short_digest(image.digest)),
                safe_text(", ".join(image.tags[:5]) + (" ..." if len(image.tags) > 5 else ""))
                or "[dim]untagged[/]",
                image.pushed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                safe_text(item.expiry.rule_label),
                use,
            )
        stderr.print(table)
    in_use = found.in_use
    if in_use:
        stderr.print(
            f"[bold red]{len(in_use)} image(s) in use would expire[/]: change the rule "
            "(raise imageCountMoreThan, or narrow its tagPrefixList/tagPatternList) before ECR runs it"
        )
    for repository in found.problems:
        stderr.print(
            f"[magenta]{safe_text(repository.repository)} not evaluated:[/] {safe_text(repository.problem)}"
        )
    if found.ok:
        stderr.print("[green]nothing in use would expire[/]")


def _nothing(repository: RepositoryPreview) -> str:
    if repository.problem:
        return "[magenta]NOT EVALUATED[/] (see below)"
    if repository.note:
        return f"[dim]{safe_text(repository.note)}[/]"
    return f"[green]nothing would expire[/] [dim]({repository.images} images)[/]"
