"""Shared flags of the pipeline commands: which pipeline file, whose credentials."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cloudops.aws.account import AccountCredentials
from cloudops.aws.s3_stream import DEFAULT_PART_SIZE, DEFAULT_THRESHOLD, MiB, TransferSettings
from cloudops.cli.settings import retry_policy
from cloudops.errors import InputError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import load_pipeline

F = TypeVar("F", bound=Callable[..., Any])

pipeline_option = click.option(
    "--pipeline",
    "pipeline_file",
    metavar="FILE",
    help="pipeline.yaml to use (default: $CLOUDOPS_PIPELINE, then ./pipeline.yaml).",
)


to_option = click.option("--to", "to", required=True, metavar="ACCOUNT", help="Destination account (stage).")
release_option = click.option(
    "--release",
    "release_file",
    required=True,
    metavar="FILE",
    type=click.Path(path_type=Path),
    help="Release file: images (tags, optional digests) and a package version.",
)
from_option = click.option(
    "--from", "source", metavar="ACCOUNT", help="Source account (default: the stage before --to)."
)


def plan_file_options(help_text: str) -> Callable[[F], F]:
    """--out PLAN.json and --force, for the commands that write a plan file."""

    def decorate(func: F) -> F:
        func = click.option("--force", is_flag=True, help="Replace the --out file if it exists.")(func)
        return click.option(
            "--out",
            "out",
            metavar="PLAN.json",
            type=click.Path(path_type=Path, dir_okay=False),
            help=help_text,
        )(func)

    return decorate


def source_credentials_option(func: F) -> F:
    return click.option(
        "--source-credentials-env",
        metavar="PREFIX",
        help="Read the SOURCE account's keys from $PREFIX_AWS_ACCESS_KEY_ID, "
        "$PREFIX_AWS_SECRET_ACCESS_KEY and $PREFIX_AWS_SESSION_TOKEN (what a Jenkins AWS "
        "credentials binding injects), instead of pipeline.yaml's credentials. Secrets "
        "never go on the command line.",
    )(func)


def transfer_settings() -> TransferSettings:
    """Multipart threshold and part size in MiB from $CLOUDOPS_MULTIPART_THRESHOLD_MIB and
    $CLOUDOPS_PART_SIZE_MIB (tests make them small), workers from $CLOUDOPS_S3_WORKERS."""

    def number(var: str, default: int) -> int:
        raw = os.environ.get(var)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"${var} must be a number, not {raw!r}") from None
        return max(1, int(value * MiB)) if var.endswith("_MIB") else max(1, int(value))

    return TransferSettings(
        multipart_threshold=number("CLOUDOPS_MULTIPART_THRESHOLD_MIB", DEFAULT_THRESHOLD),
        part_size=number("CLOUDOPS_PART_SIZE_MIB", DEFAULT_PART_SIZE),
        workers=number("CLOUDOPS_S3_WORKERS", 4),
    )


def build_context(
    pipeline_file: str | None,
    *,
    promote_to: str | None = None,
    source: str | None = None,
    source_env_prefix: str | None = None,
) -> PipelineContext:
    """The run's context. For a promotion into ``promote_to``, --source-credentials-env
    binds to the source account: ``source``, or the stage before ``promote_to``."""
    pipeline = load_pipeline(pipeline_file)
    overrides = {}
    if source_env_prefix and promote_to:
        pipeline.account(promote_to)
        source_account = source or (
            pipeline.previous_stage(promote_to) if promote_to in pipeline.stages else None
        )
        if source_account:
            pipeline.account(source_account)
            overrides[source_account] = AccountCredentials(env_prefix=source_env_prefix)
    return PipelineContext(
        pipeline, credential_overrides=overrides, retry=retry_policy(), transfer=transfer_settings()
    )
