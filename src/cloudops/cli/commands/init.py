"""`cloudops init`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.errors import InputError
from cloudops.pipeline.init import InitReport, init_account


@click.command()
@click.argument("account")
@pipeline_option
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option(
    "--emit",
    type=click.Choice(["cloudformation"]),
    help="Touch no account: write the account's setup as a CloudFormation template instead "
    "(repositories with their settings, the bucket, the next stage's read-only pull role).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="With --emit: write the template there (default: stdout).",
)
@handles_errors
def init(
    account: str, pipeline_file: str | None, dry_run: bool, as_json: bool, emit: str | None, out: Path | None
) -> None:
    """Create ACCOUNT's own ECR repositories with pipeline.yaml's repository settings (tag
    immutability, scan on push, encryption, lifecycle and repository policies) and its
    bucket (versioned, encrypted, public access blocked). A setting that drifted is
    corrected and reported (was -> now); encryption, which ECR cannot change, is reported
    with its fix and exits 4. Idempotent: a second run changes nothing and says so. Uses
    only ACCOUNT's credentials, checked by the account guard.

    --emit cloudformation writes the same setup as a template (docs/accounts.md) and asks
    no account anything."""
    if emit is not None:
        _emit(account, pipeline_file, out)
        return
    if out is not None:
        raise click.UsageError("--out goes with --emit")
    context = build_context(pipeline_file)
    report = init_account(context, account, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print(report)
    if not report.complete:
        sys.exit(exit_codes.FINDINGS)


def _emit(account: str, pipeline_file: str | None, out: Path | None) -> None:
    from cloudops.pipeline.account_template import account_template, template_text
    from cloudops.pipeline.model import load_pipeline

    text = template_text(account_template(load_pipeline(pipeline_file), account))
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or type(exc).__name__}") from None
    stderr.print(f"wrote the CloudFormation template of account {safe_text(account)} to {safe_text(out)}")


def _print(report: InitReport) -> None:
    account, dry_run = report.account, report.dry_run
    verb = "would" if dry_run else "did"
    stderr.print(f"[bold]{account}[/] ({report.account_id}){' [dim](dry run)[/]' if dry_run else ''}")
    for repo, change in report.repositories.items():
        mark = "=" if change == "unchanged" else "+"
        said = change if not dry_run or change == "unchanged" else f"would be {change}"
        stderr.print(f"  {mark} ECR repository {safe_text(repo)}: {said}")
        for drift in (d for d in report.changes if d.repository == repo):
            done = "would correct" if dry_run else "corrected"
            stderr.print(
                f"      ~ {drift.setting}: {safe_text(drift.was)} -> {safe_text(drift.now)} [dim]({done})[/]"
            )
        for drift in (d for d in report.uncorrectable if d.repository == repo):
            stderr.print(
                f"      [red]! {drift.setting}: {safe_text(drift.was)}, pipeline.yaml wants "
                f"{safe_text(drift.now)}: init cannot change it[/]"
            )
            stderr.print(f"        [dim]fix:[/] {safe_text(drift.fix)}")
    steps = ", ".join(report.bucket_steps) or "nothing to do"
    stderr.print(f"  {'=' if report.bucket_change == 'unchanged' else '+'} bucket {report.bucket}: {steps}")
    if report.uncorrectable:
        stderr.print(
            f"[bold red]{len(report.uncorrectable)} setting(s) of account {account} differ and cannot be "
            "changed by init[/]: see the fixes above"
        )
    elif not report.changed:
        stderr.print(f"[green]account {account} is already initialized: nothing changed[/]")
    else:
        stderr.print(f"[green]{verb} initialize account {account}[/]")
