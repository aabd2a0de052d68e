"""`cloudops sandbox up|down|env` (the demo: cli/commands/demo.py)."""

from __future__ import annotations

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
