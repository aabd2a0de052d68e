"""`cloudops audit`."""

from __future__ import annotations

import sys

import click

from cloudops.audit import RULES, AuditReport, run_audit
from cloudops.cli import exit_codes
from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr

_STATUS = {"passed": "[green]✓ passed[/]", "failed": "[red]✗ failed[/]", "skipped": "[dim]- skipped[/]"}
_SEVERITY = {"error": "red", "warning": "yellow", "info": "cyan"}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON on stdout.")
@pipeline_option
@handles_errors
def audit(as_json: bool, pipeline_file: str | None) -> None:
    """Check the live accounts against the best practices: every environment on its own
    account with credentials acting there, one copy of each source repository, no ECR
    policy letting another account push, every downstream image and deployment package
    coming from the build account, config unique to each account (as `config check`), and,
    with verify.required_for in pipeline.yaml, every image in those stages validly signed.
    Each account is read with its own credentials; an unreachable one is a finding.
    Exit 4 when there are errors or warnings (info, such as a stage not yet promoted to,
    does not count)."""
    report = run_audit(build_context(pipeline_file))
    if as_json:
        emit_json(report.as_dict())
    else:
        print_audit(report)
    if not report.ok:
        sys.exit(exit_codes.FINDINGS)


def print_audit(report: AuditReport) -> None:
    for result in report.rules:
        note = f" [dim]({safe_text(result.note)})[/]" if result.note else ""
        stderr.print(f"{_STATUS[result.status]:>10} {safe_text(RULES[result.rule])}{note}")
    if report.findings:
        stderr.print()
    for finding in report.findings:
        style = _SEVERITY[finding.severity]
        where = f" [dim]{safe_text(finding.where)}[/]" if finding.where else ""
        stderr.print(
            f"[{style}]{finding.severity:7}[/] [bold]{safe_text(finding.account or '-')}[/] "
            f"[dim]{safe_text(finding.rule)}[/]{where}: {safe_text(finding.what)}"
        )
        stderr.print(f"         [dim]fix:[/] {safe_text(finding.fix)}")
    counted = [f for f in report.findings if f.counts]
    if counted:
        stderr.print(f"[bold red]{len(counted)} findings[/]: the setup departs from the best practices")
    else:
        stderr.print("[bold green]audit clean[/]: the setup follows the best practices")
