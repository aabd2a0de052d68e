"""`cloudops init ACCOUNT`."""

from __future__ import annotations

import click

from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, stderr
from cloudops.pipeline.init import init_account


@click.command()
@click.argument("account")
@pipeline_option
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@handles_errors
def init(account: str, pipeline_file: str | None, dry_run: bool, as_json: bool) -> None:
    """Create ACCOUNT's own ECR repositories (tag immutability and scan on push on) and its
    bucket (versioned, encrypted, public access blocked). Idempotent: a second run changes
    nothing and says so. Uses only ACCOUNT's credentials, checked by the account guard."""
    context = build_context(pipeline_file)
    report = init_account(context, account, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        return
    verb = "would" if dry_run else "did"
    stderr.print(f"[bold]{account}[/] ({report.account_id}){' [dim](dry run)[/]' if dry_run else ''}")
    for repo, change in report.repositories.items():
        mark = "=" if change == "unchanged" else "+"
        said = change if not dry_run or change == "unchanged" else f"would be {change}"
        stderr.print(f"  {mark} ECR repository {repo}: {said}")
    steps = ", ".join(report.bucket_steps) or "nothing to do"
    stderr.print(f"  {'=' if report.bucket_change == 'unchanged' else '+'} bucket {report.bucket}: {steps}")
    if not report.changed:
        stderr.print(f"[green]account {account} is already initialized: nothing changed[/]")
    else:
        stderr.print(f"[green]{verb} initialize account {account}[/]")
