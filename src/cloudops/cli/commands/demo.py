"""`cloudops demo`: the main job on the embedded sandbox, end to end. Every step is a
library call the real commands make too; this module only tells the story."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cloudops.cli.commands.sandbox import sandbox_root
from cloudops.cli.output import handles_errors, safe_text, stderr

if TYPE_CHECKING:
    from cloudops.pipeline.context import PipelineContext
    from cloudops.pipeline.plan import PromotionPlan
    from cloudops.release import ReleaseResult
    from cloudops.sandbox.world import SandboxState

REJECT_REASON = "demo: checkout fails in prod after the upgrade"


def next_version(tag: str) -> str:
    """The demo's second release: the next minor version of ``tag`` (8.5.0 -> 8.6.0)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", tag)
    return f"{match[1]}.{int(match[2]) + 1}.0" if match else f"{tag}-next"


@click.command()
@click.option("--tag", default="8.5.0", show_default=True, help="Version of the first release.")
@click.option(
    "--scale",
    type=click.FloatRange(0.01, 64),
    default=1.0,
    show_default=True,
    help="Size multiplier of the synthetic layers (1 = a few MiB each).",
)
@click.option(
    "--break",
    "break_setup",
    is_flag=True,
    help="Before the final audit, break the setup once in each way the audit checks, to show "
    "its findings (a later plain `demo` repairs it). Exit 4.",
)
@handles_errors
def demo(tag: str, scale: float, break_setup: bool) -> None:
    """Bring the sandbox up, initialize every account, publish release TAG (images and the
    deployment package) into the build account, sign its images there with the sandbox's
    cosign key, and promote it build -> qa -> preprod -> prod by digest, the signatures
    with it (preprod and prod take only signed images), prod only after a plan was
    approved by its approver role. Show an unsigned image refused at preprod. Then publish
    the next release, promote it the same way, find it broken in prod: roll prod back to
    TAG and reject the new release there. Ends with the history, the status (each
    account's current release) and the best-practice audit, clean unless --break. The
    sandbox keeps running afterwards."""
    from cloudops.pipeline.context import PipelineContext
    from cloudops.pipeline.model import load_pipeline
    from cloudops.sandbox import world

    stderr.rule("[bold]cloudops demo: the embedded sandbox")
    state = world.up(sandbox_root())
    os.environ.update(world.env_exports(state))
    context = PipelineContext(load_pipeline(state.pipeline))
    stderr.print(f"sandbox: AWS API {state.moto_url}; registries {', '.join(state.registries.values())}")

    _initialize(context)
    _provision_databases(state, context)
    key, password = world.enable_signatures(state)
    context = PipelineContext(load_pipeline(state.pipeline))  # now with its verify: section
    stderr.print(
        f"  signatures: {', '.join(world.SIGNED_STAGES)} accept only images signed by "
        f"{key.with_suffix('.pub')} (pipeline.yaml verify:)"
    )
    second = next_version(tag)
    failed = False
    release_files = {}
    for step, version in ((2, tag), (4, second)):
        stderr.rule(
            f"{step}. publish release {version} (images and deployment package) into the build account, "
            "sign its images there"
        )
        release_files[version] = _publish(context, state.root, version, scale)
        _sign(context, release_files[version], key, password)
        _update_database(context, context.pipeline.build_account)
        stderr.rule(
            f"{step + 1}. promote release {version} through every stage (the last one after an approval)"
        )
        failed |= not _promote_everywhere(context, release_files[version], version)

    stderr.rule("6. an unsigned image is refused where signatures are required")
    failed |= not _unsigned_refused(context, f"{tag}-unsigned", scale)

    last = context.pipeline.stages[-1]
    stderr.rule(f"7. {second} is broken in {last}: roll {last} back to {tag}, reject {second} there")
    failed |= not _roll_back_and_reject(context, last, release_files[second])

    _history_status_audit(context, last, break_setup, failed)


def _initialize(context: PipelineContext) -> None:
    from cloudops.pipeline.init import init_account
    from cloudops.sandbox import config_seed, violations

    stderr.rule("1. initialize every account (its own ECR repositories and bucket)")
    for name in context.pipeline.stages:
        report = init_account(context, name)
        stderr.print(
            f"  {name:8} {report.account_id}: "
            f"{'initialized' if report.changed else 'already initialized, nothing changed'}"
        )
    violations.repair(context)  # what an earlier `demo --break` broke
    config_seed.seed(context)  # each account's own config; the source repositories in one account
    stderr.print(f"  config: each account's own author.env and live.env in {context.pipeline.config_dir}")


def _publish(context: PipelineContext, root: Path, version: str, scale: float) -> Path:
    """Images and the package of ``version`` in the build account; the release file."""
    from cloudops.package import publish_package
    from cloudops.registry import RegistrySession
    from cloudops.sandbox.seed import build_package, publish_image

    pipeline = context.pipeline
    build = pipeline.build_account

    async def publish() -> dict[str, str]:
        async with RegistrySession(context.keychain(build), context.transport_settings()) as pool:
            writer = pool.writer(context.checked_registry_host(build))
            digests = await asyncio.gather(
                *(publish_image(writer, r, version, scale=scale) for r in pipeline.images)
            )
            return dict(zip(pipeline.images, digests, strict=True))

    digests = asyncio.run(publish())
    stderr.print("  " + ", ".join(f"{r}:{version} {d[7:19]}" for r, d in digests.items()))
    package_file = root / f"ext-deployment-package-{version}.zip"
    build_package(package_file, version, size=max(1, int(4 * 1024 * 1024 * scale)))
    published = publish_package(context, package_file, version)
    stderr.print(f"  package {version}: {published.status} (sha256 {published.sha256[:16]}…)")
    release_file = root / f"release-{version}.yaml"
    release_file.write_text(
        f'release: "{version}"\nimages:\n'
        + "".join(f'  - {{repository: {r}, tag: "{version}"}}\n' for r in pipeline.images)
        + f'package: {{version: "{version}"}}\n'
    )
    return release_file


def _sign(context: PipelineContext, release_file: Path, key: Path, password: bytes) -> None:
    """`cloudops sign RELEASE_FILE --key cosign.key`, in the build account."""
    from cloudops.pipeline.sign_images import Target, sign_images
    from cloudops.release import load_release
    from cloudops.signing.keys import load_private_key

    images = [Target(i.repository, i.tag) for i in load_release(release_file).images]
    for signed in sign_images(context, images, load_private_key(key, password)):
        stderr.print(
            f"  {signed.target.name} {signed.digest[7:19]}: {signed.status} (cosign, OCI 1.1 referrer)"
        )


def _unsigned_refused(context: PipelineContext, tag: str, scale: float) -> bool:
    """Publish an image without signing it, promote it into the first stage that requires
    signatures: refused (exit 3), nothing written there."""
    from cloudops.pipeline.promote import ImageSpec, promote_images
    from cloudops.registry import RegistrySession
    from cloudops.sandbox.seed import publish_image

    pipeline = context.pipeline
    build, repository = pipeline.build_account, pipeline.images[0]
    gated = next(s for s in pipeline.stages if pipeline.requires_signature(s))

    async def publish() -> str:
        async with RegistrySession(context.keychain(build), context.transport_settings()) as pool:
            return await publish_image(
                pool.writer(context.checked_registry_host(build)), repository, tag, scale=scale
            )

    digest = asyncio.run(publish())
    stderr.print(f"  {repository}:{tag} {digest[7:19]} published in {build}, not signed")
    for stage in pipeline.stages[1 : pipeline.stages.index(gated) + 1]:
        [result] = promote_images(context, stage, [ImageSpec(repository, tag)])
        if stage != gated:
            stderr.print(f"  {stage:8} {result.status} (no signature required)")
            continue
        if result.status == "refused":
            stderr.print(f"  {stage:8} [green]refused[/] (exit 3): {safe_text(str(result.error))}")
            return True
        stderr.print(f"  [red]✗ the unsigned image was {result.status} into {stage}, not refused[/]")
    return False


def _promote_everywhere(context: PipelineContext, release_file: Path, version: str) -> bool:
    """Every stage in order: `promote release` where no approval is needed; plan, approve
    (as the stage's approver role) and apply where one is. False when a stage failed."""
    from cloudops.cli.commands.db import show_database_preview
    from cloudops.cli.progress import CopyProgressDisplay
    from cloudops.release import load_release
    from cloudops.release_current import store_for
    from cloudops.release_gates import read_rejection
    from cloudops.release_plan import apply_plan, plan_release, promote_release, record_plan

    pipeline = context.pipeline
    for stage in pipeline.stages[1:]:
        rejection = read_rejection(store_for(context, stage), version)
        if rejection is not None:  # an earlier demo rejected it: rejections stay
            stderr.print(f"  {stage:8} [yellow]not promoted[/]: {safe_text(rejection.describe())}")
            return True
        with CopyProgressDisplay(f"{pipeline.previous_stage(stage)} -> {stage}", quiet=True) as progress:
            if not pipeline.approval(stage).required:
                result = promote_release(context, stage, release_file, progress=progress)
            else:
                plan, _ = plan_release(context, stage, load_release(release_file))
                record_plan(context, plan)
                stderr.print(
                    f"  {stage:8} plan {plan.plan_hash[7:19]}: {len(plan.images)} images, package, "
                    f"{plan.bytes_to_move / 1024 / 1024:.1f} MiB to move; {stage} requires an approval"
                )
                show_database_preview(context, plan)  # `cloudops plan` shows it too
                _approve(context, plan)
                result = apply_plan(context, plan, progress=progress)
        if not _report(stage, result):
            return False
        _update_database(context, stage)
    return True


def _provision_databases(state: SandboxState, context: PipelineContext) -> None:
    """Each account's database and user in the sandbox's MariaDB, as its config names them."""
    from cloudops.sandbox import world
    from cloudops.sandbox.databases import provision_accounts
    from cloudops.sandbox.mariadb import running_mariadb

    server = running_mariadb(state.root)
    if server is None:
        stderr.print("  [yellow]databases: the sandbox's MariaDB is not running[/]")
        return
    done = provision_accounts(server, context.pipeline.config_dir, world.DB_ADDRESSES)
    where = ", ".join(f"{a} {world.DB_ADDRESSES[a]}" for a in done)
    stderr.print(
        f"  databases: one per account in MariaDB ({where}), each user allowed from its own address only"
    )


def _update_database(context: PipelineContext, account: str) -> None:
    """`cloudops db update --account ACCOUNT`: the package now current there, run by its
    Data Population Tool against the account's own database."""
    from cloudops.db_population import update_database

    done = update_database(context, account)
    applied = len(done.applied)
    stderr.print(
        f"  {account:8} database {safe_text(done.database)}: package {safe_text(done.version)}, "
        f"{applied} change set{'' if applied == 1 else 's'} applied ({done.seconds:.1f}s)"
        + (f": {', '.join(safe_text(a) for a in done.applied)}" if applied else ", already up to date")
    )


def _approve(context: PipelineContext, plan: PromotionPlan) -> None:
    """`cloudops approve PLAN.json --role-arn <the stage's approver role>`."""
    from cloudops.pipeline.context import PipelineContext
    from cloudops.release_gates import approve_plan, approver_overrides
    from cloudops.sandbox import world

    stage = plan.route.destination
    overrides = approver_overrides(context, stage, role_arn=world.APPROVER_ROLE, env_prefix=None)
    approver = PipelineContext(context.pipeline, credential_overrides=overrides, retry=context.retry)
    done = approve_plan(approver, plan, note="demo:release-manager")
    stderr.print(
        f"  {stage:8} [green]approved[/] by {safe_text(done.approval.approver)} (demo:release-manager)"
    )


def _report(stage: str, result: ReleaseResult) -> bool:
    moved = sum(r.bytes_uploaded for r in result.images)
    moved += result.package.bytes_uploaded if result.package else 0
    done = sum(1 for r in result.images if r.ok)
    package_status = result.package.status if result.package else "none"
    current = f", current release {result.current.release}" if result.current else ""
    stderr.print(
        f"  {stage:8} images {done}/{len(result.images)} promoted or already there, "
        f"package {package_status}, {moved / 1024 / 1024:.1f} MiB moved{current}: "
        + ("[green]complete[/]" if result.ok else "[red]FAILED[/]")
    )
    for r in result.images:
        if not r.ok:
            stderr.print(f"  [red]✗ {r.repository}:{r.tag}: {safe_text(str(r.error))}[/]")
    if result.package is not None and result.package.error is not None:
        stderr.print(f"  [red]✗ package: {safe_text(str(result.package.error))}[/]")
    if result.current_error is not None:
        stderr.print(f"  [red]✗ {safe_text(str(result.current_error))}[/]")
    return result.ok


def _roll_back_and_reject(context: PipelineContext, stage: str, broken_file: Path) -> bool:
    """Roll ``stage`` back to the release before the broken one (plan, approve, apply),
    reject the broken release there, and show that promoting it again is refused."""
    from cloudops.errors import RefusedError
    from cloudops.release import load_release
    from cloudops.release_current import read_current
    from cloudops.release_gates import reject_release
    from cloudops.release_plan import apply_plan, promote_release, record_plan
    from cloudops.release_rollback import plan_rollback

    broken = load_release(broken_file).release
    current = read_current(context, stage)
    if current is not None and current.release == broken:
        planned = plan_rollback(context, stage)
        record_plan(context, planned.plan)
        for warning in planned.warnings:
            stderr.print(f"  [yellow]warning:[/] {safe_text(warning)}")
        stderr.print(
            f"  {stage:8} rollback plan {planned.plan.plan_hash[7:19]}: from {current.release} "
            f"back to {planned.target.release} (from {stage}'s own release log; tags never move)"
        )
        _approve(context, planned.plan)
        if not _report(stage, apply_plan(context, planned.plan)):
            return False
    else:
        running = current.release if current else "nothing"
        stderr.print(f"  {stage:8} runs {running}: nothing to roll back")
    rejected = reject_release(context, stage, broken, REJECT_REASON)
    before = " (rejected by an earlier demo)" if rejected.already else ""
    stderr.print(f"  {stage:8} [yellow]rejected[/] {broken}{before}: {safe_text(rejected.rejection.reason)}")
    try:
        promote_release(context, stage, broken_file)
    except RefusedError as error:
        stderr.print(
            f"  {stage:8} promoting {broken} again: [green]refused[/] (exit 3): {safe_text(error.message)}"
        )
        return True
    stderr.print(f"  [red]✗ promoting {broken} into {stage} again was not refused[/]")
    return False


def _history_status_audit(context: PipelineContext, last: str, break_setup: bool, failed: bool) -> None:
    from cloudops.audit import run_audit
    from cloudops.cli.commands.audit import print_audit
    from cloudops.cli.commands.history import print_history
    from cloudops.cli.commands.status import print_matrix
    from cloudops.pipeline.context import PipelineContext
    from cloudops.report.collect import read_status
    from cloudops.sandbox import violations

    stderr.rule(f"8. {last}'s history: plans, approvals, promotions, the rollback, the rejection")
    print_history(context, [last])
    stderr.rule("9. status: what is where, and each account's current release")
    report = read_status(context, with_history=False)
    print_matrix(report.matrix, report.current)
    stderr.rule(
        "10. best-practice audit" + (", after breaking each practice once (--break)" if break_setup else "")
    )
    pipeline = context.pipeline
    overrides = violations.swapped_credentials(pipeline) if break_setup else {}
    for broken in violations.introduce(context) if break_setup else []:
        stderr.print(f"  [yellow]broke[/] {broken}")
    audited = run_audit(PipelineContext(pipeline, credential_overrides=overrides))
    print_audit(audited)
    stderr.rule()
    stderr.print(
        'The sandbox is still running. Use it: eval "$(cloudops sandbox env)"  '
        f"Stop it: cloudops sandbox down  (state in {sandbox_root()})"
    )
    if failed:
        raise SystemExit(1)
    if not audited.ok:
        raise SystemExit(4)  # exit_codes.FINDINGS
