"""Shared flags of the pipeline commands: which pipeline file, whose credentials."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cloudops.errors import InputError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import AccountCredentials, load_pipeline
from cloudops.registry.retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

pipeline_option = click.option(
    "--pipeline",
    "pipeline_file",
    metavar="FILE",
    help="pipeline.yaml to use (default: $CLOUDOPS_PIPELINE, then ./pipeline.yaml).",
)


def source_credentials_option(func: F) -> F:
    return click.option(
        "--source-credentials-env",
        metavar="PREFIX",
        help="Read the SOURCE account's keys from $PREFIX_AWS_ACCESS_KEY_ID, "
        "$PREFIX_AWS_SECRET_ACCESS_KEY and $PREFIX_AWS_SESSION_TOKEN (what a Jenkins AWS "
        "credentials binding injects), instead of pipeline.yaml's credentials. Secrets "
        "never go on the command line.",
    )(func)


def retry_policy() -> RetryPolicy:
    """Bounded retries: $CLOUDOPS_RETRY_ATTEMPTS tries in all (default 5) within
    $CLOUDOPS_RETRY_SECONDS (default 120) of the first one."""

    def number(var: str, default: float) -> float:
        raw = os.environ.get(var)
        if not raw:
            return default
        try:
            return max(0.0, float(raw))
        except ValueError:
            raise InputError(f"${var} must be a number, not {raw!r}") from None

    return RetryPolicy(
        attempts=max(1, int(number("CLOUDOPS_RETRY_ATTEMPTS", 5))),
        total_seconds=number("CLOUDOPS_RETRY_SECONDS", 120.0),
    )


def build_context(
    pipeline_file: str | None, *, source_account: str | None = None, source_env_prefix: str | None = None
) -> PipelineContext:
    pipeline = load_pipeline(pipeline_file)
    overrides = {}
    if source_env_prefix and source_account:
        pipeline.account(source_account)
        overrides[source_account] = AccountCredentials(env_prefix=source_env_prefix)
    return PipelineContext(pipeline, credential_overrides=overrides, retry=retry_policy())
