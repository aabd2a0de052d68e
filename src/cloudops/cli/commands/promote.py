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
from cloudops.cli.output import emit_json, handles_errors, human_bytes, report_error, safe_text, stderr
from cloudops.cli.progress import CopyProgressDisplay
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


def _image_lines(results: list[ImagePromotion]) -> list[str]:
    lines = []
    for r in results:
        name = safe_text(f"{r.repository}:{r.tag}")
        route = safe_text(f"{r.route.source} -> {r.route.destination}")
        digest = safe_text((r.source_digest or "")[:19])
        if r.status == "planned":
            lines.append(f"[cyan]plan[/] {name} {route}: {safe_text(r.action)} {digest}")
        elif r.status == "promoted":
            lines.append(
                f"[green]✓[/] {name} {route}: promoted {digest} "
                f"({human_bytes(r.bytes_uploaded)} moved, verified)"
            )
        elif r.status == "already-promoted":
            lines.append(f"[green]=[/] {name} {route}: already promoted {digest} (nothing written)")
    return lines


def _report_failures(results: list[ImagePromotion]) -> int:
    """Print each failure with its fix; return the exit code for the run."""
    codes = set()
    for r in results:
        if r.error is not None:
            report_error(r.error, f"{r.repository}:{r.tag} {r.route.source} -> {r.route.destination}: ")
            codes.add(exit_codes.for_error(r.error))
        elif not r.ok:
            codes.add(exit_codes.FAILED)
    if not codes:
        return exit_codes.OK
    if exit_codes.REFUSED in codes:
        return exit_codes.REFUSED
    return codes.pop() if len(codes) == 1 else exit_codes.FAILED


def _finish(results: list[ImagePromotion], *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        emit_json(
            {"ok": all(r.ok for r in results), "dry_run": dry_run, "images": [r.as_dict() for r in results]}
        )
    for line in _image_lines(results):
        stderr.print(line)
    code = _report_failures(results)
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
    from cloudops.cli.commands.package import _finish_package, transfer_settings
    from cloudops.package import promote_package

    context = _promotion_context(pipeline_file, to, source, source_credentials_env)
    result = promote_package(
        context, to, version=version, source=source, dry_run=dry_run, settings=transfer_settings()
    )
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
    for line in _image_lines(result.images):
        stderr.print(line)
    _report_failures(result.images)
    if result.package is not None:
        from cloudops.cli.commands.package import describe_package

        describe_package(result.package)
    from cloudops.cli.commands.plan import describe_current

    describe_current(result)
    verdict = "[green]complete[/]" if result.ok else "[red]FAILED[/] (run again to complete it)"
    stderr.print(f"release {safe_text(result.release)} -> {safe_text(to)}: {verdict}")
    if not result.ok:
        raise SystemExit(exit_codes.FAILED)
