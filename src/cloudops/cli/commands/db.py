"""`cloudops db plan | update | reset`: the deployment package's Data Population Tool,
run against one account's own database (docs/database.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr

if TYPE_CHECKING:
    from cloudops.db_population import DbResult
    from cloudops.pipeline.context import PipelineContext
    from cloudops.pipeline.plan import PromotionPlan

account_option = click.option(
    "--account", required=True, metavar="A", help="The account (stage) whose database."
)
version_option = click.option(
    "--version",
    "version",
    metavar="V",
    help="Package version in the account's own bucket (default: its current one).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")


@click.group()
def db() -> None:
    """The Data Population Tool of the deployment package, per account."""


@db.command("plan")
@account_option
@version_option
@json_option
@pipeline_option
@handles_errors
def plan_cmd(account: str, version: str | None, as_json: bool, pipeline_file: str | None) -> None:
    """The change sets `db update` would apply to the account's database (the package's
    change logs against its DATABASECHANGELOG), and applied change sets whose checksum
    differs (refused, as Liquibase refuses them: exit 3). Only reads."""
    from cloudops.db_population import plan_database

    result = plan_database(build_context(pipeline_file), account, version)
    _show(result, as_json)
    if not result.ok:
        sys.exit(exit_codes.REFUSED)


@db.command("update")
@account_option
@version_option
@json_option
@pipeline_option
@handles_errors
def update_cmd(account: str, version: str | None, as_json: bool, pipeline_file: str | None) -> None:
    """Apply the change sets the account's database lacks (`update-db`), with the package
    version current in the account's own bucket, verified by SHA-256. Rerun-safe; two runs
    against one database are serialized; recorded in the account's history."""
    from cloudops.db_population import update_database

    _show(update_database(build_context(pipeline_file), account, version), as_json)


@db.command("reset")
@account_option
@version_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the reset plan there for `cloudops approve` (protected stages); reset nothing.",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The approved reset plan (protected stages).",
)
@json_option
@pipeline_option
@handles_errors
def reset_cmd(
    account: str,
    version: str | None,
    out: Path | None,
    plan_file: Path | None,
    as_json: bool,
    pipeline_file: str | None,
) -> None:
    """Drop every table of the account's database and populate it again (`reset-db`).
    Refused (exit 3) in protected stages (default: preprod and prod, and the last stage)
    unless pipeline.yaml's databases.allow_reset names the stage; there it needs a reset
    plan (--out) approved with `cloudops approve`, then --plan."""
    from cloudops.db_population import reset_database, reset_plan
    from cloudops.release_plan import read_plan, refuse_existing, write_plan

    context = build_context(pipeline_file)
    if out is not None:
        refuse_existing(out, force=False)
        made = reset_plan(context, account, version)
        write_plan(made, out)
        stderr.print(
            f"reset plan {made.plan_hash[7:19]} of {safe_text(account)}'s database written to "
            f"{safe_text(str(out))}: an approver runs `cloudops approve {safe_text(str(out))}`"
        )
        if as_json:
            emit_json(made.to_json())
        return
    plan = read_plan(plan_file) if plan_file is not None else None
    _show(reset_database(context, account, version, plan=plan), as_json)


def _show(result: DbResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
        return
    head = f"{safe_text(result.account)}: {safe_text(result.database)}, package {safe_text(result.version)}"
    if result.command == "plan":
        stderr.print(f"{head}: {result.applied_count} change sets applied, {len(result.pending)} to apply")
        _show_change_sets(result.pending, result.changed)
        return
    verb = "reset, then " if result.command == "reset-db" else ""
    stderr.print(f"{head}: {verb}{len(result.applied)} change sets applied in {result.seconds:.1f}s")
    for name in result.applied:
        stderr.print(f"  + {safe_text(name)}")


def _show_change_sets(pending: Sequence[dict[str, Any]], changed: Sequence[dict[str, Any]]) -> None:
    """Change sets to apply, then applied ones whose checksum changed (refused)."""
    for item in pending:
        stderr.print(f"  + {safe_text(_name(item))}")
    for item in changed:
        stderr.print(f"  [red]✗ {safe_text(_name(item))}: checksum changed since it was applied[/]")


def _name(item: dict[str, Any]) -> str:
    return f"{item.get('filename')}::{item.get('id')}::{item.get('author')}"


def show_database_preview(context: PipelineContext, plan: PromotionPlan) -> None:
    """Next to a release plan's images: the change sets its package would apply to the
    destination's database (read only; the package taken from the source's bucket). A
    database that cannot be asked is said so, without failing the plan."""
    from cloudops.db_population import has_database, plan_database
    from cloudops.errors import CloudopsError

    to = plan.route.destination
    if plan.package is None or not has_database(context, to):
        return
    try:
        found = plan_database(context, to, plan.package.version, package_from=plan.route.source)
    except CloudopsError as error:
        stderr.print(f"[yellow]database of {safe_text(to)} not planned:[/] {safe_text(error.message)}")
        return
    pending = len(found.pending)
    stderr.print(
        f"database {safe_text(found.database)}: package {safe_text(found.version)} would apply "
        f"{pending} change set{'' if pending == 1 else 's'} ({found.applied_count} applied already)"
    )
    _show_change_sets(found.pending, found.changed)
