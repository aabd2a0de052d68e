"""`cloudops approve`, `cloudops reject` and `cloudops rollback`: what governs a release
after it is planned (release_gates.py, release_rollback.py; docs/releases.md)."""

from __future__ import annotations

from pathlib import Path

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import (
    build_context,
    from_option,
    pipeline_option,
    plan_file_options,
    source_credentials_option,
)
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr


@click.command("approve")
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--role-arn",
    metavar="ARN",
    help="Approve as this role (assumed from the account's base credentials), e.g. the "
    "stage's approver role. Default: the account's own credentials.",
)
@click.option(
    "--credentials-env",
    "credentials_env",
    metavar="PREFIX",
    help="Approve with static keys from $PREFIX_AWS_ACCESS_KEY_ID, _AWS_SECRET_ACCESS_KEY "
    "(and _AWS_SESSION_TOKEN), e.g. a Jenkins credentials binding.",
)
@click.option(
    "--note",
    metavar="TEXT",
    help="Who approves, as the approving system knows them (e.g. jenkins:alice); recorded "
    "beside the STS identity.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the approval as JSON on stdout.")
@pipeline_option
@handles_errors
def approve(
    plan_file: Path,
    role_arn: str | None,
    credentials_env: str | None,
    note: str | None,
    as_json: bool,
    pipeline_file: str | None,
) -> None:
    """Approve exactly the plan in PLAN.json (made by `cloudops plan --out` or `cloudops
    rollback --out`): recorded in the destination account's bucket under the plan's hash,
    with the STS identity of the credentials used, which must act in that account and
    match the stage's approvers (pipeline.yaml approvals:). Nothing is applied.

    Exit 0 approved; 3 refused (not an approver, the release is rejected there, or the
    credentials act in another account); 2 the plan file is not one cloudops wrote."""
    from cloudops.pipeline.context import PipelineContext
    from cloudops.release_gates import approve_plan, approver_overrides
    from cloudops.release_plan import read_plan

    loaded = read_plan(plan_file)
    base = build_context(pipeline_file)
    dst = loaded.route.destination
    overrides = approver_overrides(base, dst, role_arn=role_arn, env_prefix=credentials_env)
    context = PipelineContext(base.pipeline, credential_overrides=overrides, retry=base.retry)
    done = approve_plan(context, loaded, note=note)
    if as_json:
        emit_json(done.as_dict())
    needed = "" if done.required else f" [dim]({safe_text(dst)} does not require one)[/]"
    stderr.print(
        f"[green]approved[/] plan {safe_text(loaded.plan_hash)} ({safe_text(str(loaded.route))}) "
        f"by {safe_text(done.approval.describe())}{needed}"
    )
    stderr.print(f"  recorded in {safe_text(dst)}'s bucket: {safe_text(done.key)}")


@click.command("reject")
@click.argument("release")
@click.option("--account", "account", required=True, metavar="ACCOUNT", help="The account to reject it in.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (one line; recorded and shown).")
@click.option("--json", "as_json", is_flag=True, help="Print the rejection as JSON on stdout.")
@pipeline_option
@handles_errors
def reject(release: str, account: str, reason: str, as_json: bool, pipeline_file: str | None) -> None:
    """Reject RELEASE (its name, as in the release file) in ACCOUNT: from then on it is
    refused (exit 3) as long as that account is the source or the destination of a plan,
    by `plan`, `approve`, `apply`, `promote release` and `rollback`. Recorded in the
    account's bucket and history; `status` shows it. A release rejected there before stays
    rejected as it was (exit 0)."""
    from cloudops.release_gates import reject_release

    context = build_context(pipeline_file)
    done = reject_release(context, account, release, reason)
    if as_json:
        emit_json(done.as_dict())
    before = "[dim](rejected before; kept as it was)[/] " if done.already else ""
    stderr.print(f"[yellow]rejected[/] {before}{safe_text(done.rejection.describe())}")


@click.command("rollback")
@click.option("--to", "to", required=True, metavar="ACCOUNT", help="The account to roll back.")
@click.option(
    "--release",
    "release",
    metavar="NAME",
    help="The release to go back to (from the account's release log). Default: the newest "
    "one before the current release.",
)
@from_option
@plan_file_options("Only plan: write the rollback plan there (to approve, then `cloudops apply`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result (with --out: the plan) as JSON.")
@pipeline_option
@source_credentials_option
@handles_errors
def rollback(
    to: str,
    release: str | None,
    source: str | None,
    out: Path | None,
    force: bool,
    as_json: bool,
    pipeline_file: str | None,
    source_credentials_env: str | None,
) -> None:
    """Roll ACCOUNT back to an earlier release from its own release log: every image of
    that release by the digest the account ran it with (tags never move: what is still
    there stays, what is missing is promoted again from the stage before), its package
    version made current again, then releases/current.json moved back to it.

    It passes the gates of any release: refused (exit 3) when the release was rejected or
    the stage requires an approval of this rollback's plan; plan it with --out, approve
    that file, then `cloudops apply` it. Warns when the package goes back to an older
    version (database change sets are forward-only). Exit 1 when a part failed."""
    from cloudops.cli.commands.plan import show_plan
    from cloudops.cli.progress import CopyProgressDisplay
    from cloudops.cli.results import show_release
    from cloudops.release_gates import require_not_rejected
    from cloudops.release_plan import record_plan, refuse_existing, write_plan
    from cloudops.release_rollback import plan_rollback
    from cloudops.release_rollback import rollback as roll_back

    if out is not None:
        refuse_existing(out, force=force)
    context = build_context(
        pipeline_file, promote_to=to, source=source, source_env_prefix=source_credentials_env
    )
    if out is not None:
        planned = plan_rollback(context, to, release=release, source=source)
        require_not_rejected(context, planned.plan)  # as `plan` does (exit 3)
        _warn(planned.warnings)
        write_plan(planned.plan, out, force=force)
        record_plan(context, planned.plan)
        if as_json:
            emit_json(planned.plan.to_json())
        show_plan(planned.plan, out)
        if not planned.plan.ok:
            raise SystemExit(exit_codes.REFUSED)
        return
    with CopyProgressDisplay(f"rollback -> {to}", quiet=as_json) as progress:
        planned, result = roll_back(context, to, release=release, source=source, progress=progress)
    _warn(planned.warnings)
    if as_json:
        emit_json(
            {
                **result.as_dict(),
                "rolled_back_from": planned.current.summary(),
                "warnings": planned.warnings,
            }
        )
    stderr.print(
        f"rolling {safe_text(to)} back from release {safe_text(planned.current.release)} "
        f"to {safe_text(planned.target.release)}"
    )
    code = show_release(result)
    if code:
        raise SystemExit(code)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        stderr.print(f"[bold yellow]warning:[/] {safe_text(warning)}")
