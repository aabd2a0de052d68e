"""`cloudops plan` and `cloudops apply`: a release's promotion as data, then exactly that."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import (
    build_context,
    from_option,
    pipeline_option,
    plan_file_options,
    release_option,
    source_credentials_option,
    to_option,
)
from cloudops.cli.output import emit_json, handles_errors, human_bytes, print_table, safe_text, stderr
from cloudops.cli.results import show_release

if TYPE_CHECKING:  # the command table imports this module for --help: nothing heavy here
    from cloudops.pipeline.plan import PromotionPlan


@click.command("plan")
@to_option
@release_option
@from_option
@plan_file_options("Write the plan there, for `cloudops apply` (refused if it exists, unless --force).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout (the --out document)."
)
@pipeline_option
@source_credentials_option
@handles_errors
def plan(
    to: str,
    release_file: Path,
    source: str | None,
    out: Path | None,
    force: bool,
    as_json: bool,
    pipeline_file: str | None,
    source_credentials_env: str | None,
) -> None:
    """Plan promoting the release file into --to: what each image and the package would
    do (already there / copy / refused), the checks made, the bytes to move and the plan's
    hash. Reads both accounts; writes nothing to them but, with --out, one history record
    of the plan in the destination's promotion log. A release rejected in either account
    is refused (exit 3). Says whether the destination requires an approval.

    Exit 0 when the plan can be applied, 3 when it refuses something (a tag that would
    move, an image or package missing at the source); the plan is written to --out either
    way, so it can be shown, but `cloudops apply` refuses it."""
    from cloudops.release_gates import require_not_rejected
    from cloudops.release_plan import make_plan, record_plan, refuse_existing, write_plan

    if out is not None:
        refuse_existing(out, force=force)  # before any account is asked anything
    context = build_context(
        pipeline_file, promote_to=to, source=source, source_env_prefix=source_credentials_env
    )
    made = make_plan(context, to, release_file, source)
    require_not_rejected(context, made)  # a rejected release is not planned (exit 3)
    if out is not None:
        write_plan(made, out, force=force)
        record_plan(context, made)
    if as_json:
        emit_json(made.to_json())
    show_plan(made, out)
    from cloudops.cli.commands.db import show_database_preview

    show_database_preview(context, made)
    approval = context.pipeline.approval(to)
    if approval.required and made.ok:
        who = " or ".join(approval.approvers) or f"an identity of account {to!r}"
        stderr.print(
            f"[bold]{safe_text(to)} requires an approval[/] of this plan by {safe_text(who)}: "
            f"`cloudops approve {safe_text(out or 'PLAN.json')}` before `cloudops apply`"
        )
    if not made.ok:
        raise SystemExit(exit_codes.REFUSED)


def show_plan(made: PromotionPlan, out: Path | None) -> None:
    """The table, the checks, the hash and the bytes; then each refusal: on stderr, every
    value through safe_text."""
    from cloudops.pipeline.plan import PLAN_COLUMNS, plan_rows

    print_table(str(made.route), PLAN_COLUMNS, plan_rows(made))
    for check in made.checks:
        stderr.print(f"  [dim]checked:[/] {safe_text(check)}")
    stderr.print(
        f"plan {safe_text(made.plan_hash)}: {human_bytes(made.bytes_to_move)} to move"
        f" [dim](planned {safe_text(made.planned_at)} by {safe_text(made.planned_by)})[/]"
    )
    for refusal in made.refusals:
        stderr.print(f"[bold yellow]refused:[/] {safe_text(refusal)}")
    if out is not None:
        applies = "apply it with" if made.ok else "it refuses what is above; `cloudops apply` will refuse it:"
        stderr.print(f"written to {safe_text(out)}; {applies} `cloudops apply {safe_text(out)}`")


@click.command("apply")
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@pipeline_option
@source_credentials_option
@handles_errors
def apply(
    plan_file: Path, as_json: bool, pipeline_file: str | None, source_credentials_env: str | None
) -> None:
    """Execute exactly the plan in PLAN.json (made by `cloudops plan --out`).

    The facts are gathered again first: if anything changed since the plan was made (a
    source tag now names another digest, the destination holds something else, the
    package changed), or the plan refuses something, nothing is written and the exit code
    is 3 (make a new plan). Otherwise every image is copied by the digest the plan names,
    the package version is copied and made current, and one release record carrying the
    plan hash is written. A plan file that is not one cloudops wrote, or was edited
    since, is refused with exit 2. A part that fails: exit 1 (run again to complete)."""
    from cloudops.cli.progress import CopyProgressDisplay
    from cloudops.release_plan import apply_plan, read_plan

    loaded = read_plan(plan_file)
    to = loaded.route.destination
    context = build_context(
        pipeline_file, promote_to=to, source=loaded.route.source, source_env_prefix=source_credentials_env
    )
    with CopyProgressDisplay(f"apply {loaded.plan_hash[:19]} -> {to}", quiet=as_json) as progress:
        result = apply_plan(context, loaded, progress=progress)
    if as_json:
        emit_json(result.as_dict())
    code = show_release(result)
    if code:
        raise SystemExit(code)
