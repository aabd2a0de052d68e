"""`cloudops promote image|package|release`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import (
    build_context,
    from_option,
    pipeline_option,
    release_option,
    source_credentials_option,
    to_option,
)
from cloudops.cli.output import emit_json, handles_errors, stderr
from cloudops.cli.progress import CopyProgressDisplay
from cloudops.cli.results import image_lines, report_failures, show_release
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.promote import ImagePromotion, ImageSpec, promote_images

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def promote() -> None:
    """Promote into an account from the stage before it (by digest, verified, recorded)."""


def promotion_options(func: F) -> F:
    """The options every promotion shares: where from, dry run, JSON, which pipeline,
    and the source credentials' environment prefix; then the error handling."""
    func = handles_errors(func)
    func = source_credentials_option(func)
    func = pipeline_option(func)
    for option in (
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
        click.option("--dry-run", is_flag=True, help="Print the plan; write nothing."),
        from_option,
    ):
        func = option(func)
    return func


@promote.command("image")
@to_option
@click.option("--repository", required=True, metavar="R", help="ECR repository, e.g. ep/cortex.")
@click.option("--tag", required=True, metavar="T", help="Image tag to promote.")
@promotion_options
def promote_image(
    to: str,
    repository: str,
    tag: str,
    source: str | None,
    dry_run: bool,
    as_json: bool,
    pipeline_file: str | None,
    source_credentials_env: str | None,
) -> None:
    """Promote REPOSITORY:TAG into account --to, by digest.

    The source digest is resolved first and copied by digest into --to's own ECR. The same
    digest already under that tag is success ("already promoted", nothing written); another
    digest under that tag is refused (exit 3): tags never move. Every outcome is appended
    to the destination account's promotion log (see `cloudops history`)."""
    context = _promotion_context(pipeline_file, to, source, source_credentials_env)
    with CopyProgressDisplay(f"promote {repository}:{tag} -> {to}", quiet=as_json) as progress:
        results = promote_images(
            context, to, [ImageSpec(repository, tag)], source=source, dry_run=dry_run, progress=progress
        )
    _finish(results, as_json=as_json, dry_run=dry_run)


def _promotion_context(
    pipeline_file: str | None, to: str, source: str | None, source_credentials_env: str | None
) -> PipelineContext:
    return build_context(
        pipeline_file, promote_to=to, source=source, source_env_prefix=source_credentials_env
    )


def _finish(results: list[ImagePromotion], *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        emit_json(
            {"ok": all(r.ok for r in results), "dry_run": dry_run, "images": [r.as_dict() for r in results]}
        )
    for line in image_lines(results):
        stderr.print(line)
    code = report_failures(results)
    if code:
        raise SystemExit(code)


@promote.command("package")
@to_option
@click.option(
    "--version", "version", metavar="V", help="Package version (default: the source's current one)."
)
@promotion_options
def promote_package_cmd(
    to: str,
    version: str | None,
    source: str | None,
    dry_run: bool,
    as_json: bool,
    pipeline_file: str | None,
    source_credentials_env: str | None,
) -> None:
    """Copy a deployment package version from the previous stage's bucket into --to's bucket.

    Read with the source account's credentials, written with the destination's, streamed
    (multipart for large packages, parts in parallel, memory bounded) and verified by
    SHA-256 end to end. The destination's current pointer moves only after the new version
    is fully there and verified. Identical content already there: nothing copied."""
    from cloudops.cli.commands.package import _finish_package
    from cloudops.package import promote_package

    context = _promotion_context(pipeline_file, to, source, source_credentials_env)
    result = promote_package(context, to, version=version, source=source, dry_run=dry_run)
    _finish_package(result, as_json)


@promote.command("release")
@to_option
@release_option
@promotion_options
def promote_release_cmd(
    to: str,
    release_file: Path,
    source: str | None,
    dry_run: bool,
    as_json: bool,
    pipeline_file: str | None,
    source_credentials_env: str | None,
) -> None:
    """Promote every image and the package a release file names into --to, then write one
    release record. If any part fails the release is reported failed (exit 1), nothing
    already present is damaged, and a re-run completes it."""
    from cloudops.release_plan import promote_release

    context = _promotion_context(pipeline_file, to, source, source_credentials_env)
    with CopyProgressDisplay(f"release -> {to}", quiet=as_json) as progress:
        result = promote_release(context, to, release_file, source=source, dry_run=dry_run, progress=progress)
    if as_json:
        emit_json(result.as_dict())
    if show_release(result):
        raise SystemExit(exit_codes.FAILED)  # a release with a refused part fails as a whole
