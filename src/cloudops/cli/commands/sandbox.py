"""`cloudops sandbox up|down|env` and `cloudops demo`."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

import click

from cloudops.cli.output import emit_json, handles_errors, stderr


def sandbox_root() -> Path:
    return Path(os.environ.get("CLOUDOPS_SANDBOX") or ".sandbox").resolve()


@click.group()
def sandbox() -> None:
    """The embedded local world: moto (every AWS account) and one ECR-like registry per
    account. Its state lives in $CLOUDOPS_SANDBOX (default ./.sandbox)."""


@sandbox.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print the sandbox's addresses as JSON.")
@handles_errors
def sandbox_up(as_json: bool) -> None:
    """Start the sandbox (or reuse the running one) and write its pipeline.yaml and each
    account's config (files that exist are kept)."""
    from cloudops.pipeline.model import load_pipeline
    from cloudops.sandbox import world
    from cloudops.sandbox.config_seed import write_config

    state = world.up(sandbox_root())
    write_config(load_pipeline(state.pipeline), overwrite=False)  # each account's own config
    if as_json:
        emit_json(
            {
                "root": str(state.root),
                "moto": state.moto_url,
                "registries": state.registries,
                "pipeline": str(state.pipeline),
            }
        )
        return
    stderr.print(f"sandbox up in {state.root}: AWS API {state.moto_url}")
    for name, host in state.registries.items():
        stderr.print(f"  {name:8} registry {host}")
    stderr.print(
        f"pipeline: {state.pipeline}\n"
        'use it:   eval "$(cloudops sandbox env)"\n'
        "stop it:  cloudops sandbox down"
    )


@sandbox.command("down")
@handles_errors
def sandbox_down() -> None:
    """Stop exactly what `sandbox up` started."""
    from cloudops.sandbox import world

    stopped = world.down(sandbox_root())
    stderr.print(f"stopped: {', '.join(stopped)}" if stopped else "no sandbox was running")


@sandbox.command("env")
@handles_errors
def sandbox_env() -> None:
    """Print `export` lines that point cloudops and the AWS CLI at the sandbox."""
    from cloudops.sandbox import world

    state = world.load(sandbox_root())
    if state is None:
        raise click.ClickException("no sandbox is running here: run `cloudops sandbox up` first")
    for key, value in world.env_exports(state).items():
        click.echo(f"export {key}={shlex.quote(value)}")


@click.command()
@click.option("--tag", default="8.5.0", show_default=True, help="Version tag of the synthetic images.")
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
    """Bring the sandbox up, publish synthetic Elastic Path images into the build account,
    initialize every account, promote build -> qa -> preprod -> prod by digest, and print
    the history. The sandbox keeps running afterwards. Ends with the best-practice audit,
    clean unless --break."""
    from cloudops.cli.commands.history import print_history
    from cloudops.cli.progress import CopyProgressDisplay
    from cloudops.package import publish_package
    from cloudops.pipeline.context import PipelineContext
    from cloudops.pipeline.init import init_account
    from cloudops.pipeline.model import load_pipeline
    from cloudops.registry import RegistrySession
    from cloudops.release_plan import promote_release
    from cloudops.sandbox import world
    from cloudops.sandbox.seed import build_package, publish_image

    stderr.rule("[bold]cloudops demo: the embedded sandbox")
    state = world.up(sandbox_root())
    os.environ.update(world.env_exports(state))
    context = PipelineContext(load_pipeline(state.pipeline))
    pipeline = context.pipeline
    stderr.print(f"sandbox: AWS API {state.moto_url}; registries {', '.join(state.registries.values())}")

    stderr.rule("1. initialize every account (its own ECR repositories and bucket)")
    for name in pipeline.stages:
        report = init_account(context, name)
        stderr.print(
            f"  {name:8} {report.account_id}: "
            f"{'initialized' if report.changed else 'already initialized, nothing changed'}"
        )
    from cloudops.sandbox import config_seed, violations

    violations.repair(context)  # what an earlier `demo --break` broke
    config_seed.seed(context)  # each account's own config; the source repositories in one account
    stderr.print(f"  config: each account's own author.env and live.env in {pipeline.config_dir}")

    stderr.rule(f"2. publish {len(pipeline.images)} images :{tag} into the build account")
    build = pipeline.build_account

    async def publish() -> dict[str, str]:
        async with RegistrySession(context.keychain(build), context.transport_settings()) as pool:
            writer = pool.writer(context.checked_registry_host(build))
            digests = await asyncio.gather(
                *(publish_image(writer, r, tag, scale=scale) for r in pipeline.images)
            )
            return dict(zip(pipeline.images, digests, strict=True))

    for repo, digest in asyncio.run(publish()).items():
        stderr.print(f"  {repo}:{tag} {digest[:19]}")

    stderr.rule(f"3. publish deployment package {tag} into the build account")
    package_file = state.root / f"ext-deployment-package-{tag}.zip"
    build_package(package_file, tag, size=max(1, int(4 * 1024 * 1024 * scale)))
    published = publish_package(context, package_file, tag)
    stderr.print(f"  package {tag}: {published.status} (sha256 {published.sha256[:16]}…)")
    release_file = state.root / f"release-{tag}.yaml"
    release_file.write_text(
        f'release: "{tag}"\nimages:\n'
        + "".join(f'  - {{repository: {r}, tag: "{tag}"}}\n' for r in pipeline.images)
        + f'package: {{version: "{tag}"}}\n'
    )

    stderr.rule("4. promote the release (images by digest + package) through every stage")
    failed = False
    for stage in pipeline.stages[1:]:
        with CopyProgressDisplay(f"{pipeline.previous_stage(stage)} -> {stage}", quiet=True) as progress:
            release = promote_release(context, stage, release_file, progress=progress)
        moved = sum(r.bytes_uploaded for r in release.images)
        moved += release.package.bytes_uploaded if release.package else 0
        done = sum(1 for r in release.images if r.ok)
        package_status = release.package.status if release.package else "none"
        stderr.print(
            f"  {stage:8} images {done}/{len(release.images)} promoted or already there, "
            f"package {package_status}, {moved / 1024 / 1024:.1f} MiB moved: "
            + ("[green]complete[/]" if release.ok else "[red]FAILED[/]")
        )
        for r in release.images:
            if not r.ok:
                stderr.print(f"  [red]✗ {r.repository}:{r.tag}: {r.error}[/]")
        if release.package is not None and release.package.error is not None:
            stderr.print(f"  [red]✗ package: {release.package.error}[/]")
        failed = failed or not release.ok

    stderr.rule("5. promotion history (from each account's own bucket)")
    print_history(context, [])

    from cloudops.audit import run_audit
    from cloudops.cli.commands.audit import print_audit

    stderr.rule(
        "6. best-practice audit" + (", after breaking each practice once (--break)" if break_setup else "")
    )
    overrides = violations.swapped_credentials(pipeline) if break_setup else {}
    for broken in violations.introduce(context) if break_setup else []:
        stderr.print(f"  [yellow]broke[/] {broken}")
    audited = run_audit(PipelineContext(pipeline, credential_overrides=overrides))
    print_audit(audited)
    stderr.rule()
    stderr.print(
        f'The sandbox is still running. Use it: eval "$(cloudops sandbox env)"  '
        f"Stop it: cloudops sandbox down  (state in {state.root})"
    )
    if failed:
        raise SystemExit(1)
    if not audited.ok:
        raise SystemExit(4)  # exit_codes.FINDINGS
