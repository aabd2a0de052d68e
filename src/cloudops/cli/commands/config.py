"""`cloudops config check` and `cloudops config diff A B`."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from cloudops.cli import exit_codes
from cloudops.cli.context import pipeline_option
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.config import ConfigFinding, check_config, diff_accounts
from cloudops.pipeline.model import load_pipeline

SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "dim"}


@click.group()
def config() -> None:
    """Each account's own config (<config_root>/<account>/AWS/Config/*.env). Config is never
    promoted: no cloudops command copies it between accounts."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout.")
@pipeline_option
@handles_errors
def config_check(as_json: bool, pipeline_file: str | None) -> None:
    """Parse every account's .env files and report, with file and line: missing folders
    or files, lines that cannot be parsed, values naming another account (its id,
    registry, bucket or hosts), secrets shared between accounts, and files shared by link
    or copied. Secret values are never printed, passwords inside URLs included (--json
    too). Exit 4 when there are findings."""
    report = check_config(load_pipeline(pipeline_file))
    if as_json:
        emit_json(report.as_dict())
    else:
        stderr.print(
            f"config check of {len(report.accounts)} accounts in {safe_text(str(report.config_dir))}: "
            f"{report.files_parsed} .env files parsed"
        )
        print_config_findings(report.findings)
    if not report.ok:
        sys.exit(exit_codes.FINDINGS)


def print_config_findings(findings: list[ConfigFinding]) -> None:
    for finding in findings:
        style = SEVERITY_STYLE[finding.severity]
        stderr.print(
            f"[{style}]{finding.severity:7}[/] [bold]{safe_text(finding.account or '-')}[/] "
            f"{safe_text(finding.where)}: {safe_text(finding.message)}"
        )
        stderr.print(f"         [dim]fix:[/] {safe_text(finding.fix)}")
    if findings:
        errors = sum(1 for f in findings if f.severity == "error")
        stderr.print(f"[bold red]{len(findings)} findings[/] ({errors} errors)")
    else:
        stderr.print("[green]config is separate: every account has its own, and names only its own[/]")


@config.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON on stdout.")
@pipeline_option
@handles_errors
def config_diff(a: str, b: str, as_json: bool, pipeline_file: str | None) -> None:
    """Keys of account A's config that differ in account B, are missing from B, or extra in
    B, file by file. Secret values are masked (secret keys whole; a password inside a URL
    in any key, the host kept readable), --json too; a secret that is the SAME in both is
    shown too (it must not be). Differences are expected: the exit code is 0."""
    result = diff_accounts(load_pipeline(pipeline_file), a, b)
    if as_json:
        emit_json(result.as_dict())
        return
    for file in result.files:
        where = {"both": "", "only-a": f" (only in {a})", "only-b": f" (only in {b})"}[file.presence]
        table = Table(title=safe_text(f"{file.file}{where}"), title_justify="left")
        for column in ("key", "", a, b):
            table.add_column(safe_text(column))
        marks = {
            "differs": "≠",
            "missing": f"only {safe_text(a)}",
            "extra": f"only {safe_text(b)}",
            "same": "= (secret!)",
        }
        for key in file.changed:
            values = (safe_text(key.a or ""), safe_text(key.b or ""))
            table.add_row(safe_text(key.key), marks[key.status], *values)
        same = sum(1 for k in file.keys if k.status == "same")
        if file.changed:
            stderr.print(table)
        stderr.print(f"  {safe_text(file.file)}: {len(file.changed)} keys to look at, {same} the same")
        for problem in file.problems:
            stderr.print(f"  [yellow]{safe_text(problem)}[/]")
