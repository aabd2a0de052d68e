"""`cloudops promote image|package|release`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
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
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.cli.progress import CopyProgressDisplay
from cloudops.cli.registry_flags import no_referrers_option
from cloudops.cli.results import image_lines, report_failures, show_release
from cloudops.errors import InputError
from cloudops.pipeline.backfill import BackfillResult, backfill_images, compile_match
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.history import parse_since
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
@click.option("--tag", metavar="T", help="Image tag to promote (or --all-tags).")
@click.option(
    "--all-tags",
    is_flag=True,
    help="Backfill: every tag of R the source holds and --to lacks, in one batch.",
)
@click.option(
    "--match",
    metavar="REGEX",
    help="With --all-tags: only tags this Python regular expression matches in full.",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="With --all-tags: only images pushed to the source at or after WHEN: an ISO date/time "
    "(UTC unless given) or 30m, 12h, 7d, 2w.",
)
@no_referrers_option
@promotion_options
def promote_image(
    to: str,
    repository: str,
    tag: str | None,
    all_tags: bool,
    match: str | None,
    since: str | None,
    no_referrers: bool,
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
    to the destination account's promotion log (see `cloudops history`).

    With --all-tags instead of --tag (a backfill): every tag of REPOSITORY the source's ECR
    lists and --to's lacks, narrowed by --match and --since, is promoted in one batch; the
    plan (to copy, already there, refused) is printed first."""
    start = _backfill_flags(tag, all_tags, match, since)
    context = _promotion_context(
        pipeline_file, to, source, source_credentials_env, referrers=not no_referrers
    )
    if all_tags:
        _backfill(context, to, repository, source, match, start, dry_run=dry_run, as_json=as_json)
        return
    assert tag is not None  # _backfill_flags: --tag or --all-tags
    with CopyProgressDisplay(f"promote {repository}:{tag} -> {to}", quiet=as_json) as progress:
        results = promote_images(
            context, to, [ImageSpec(repository, tag)], source=source, dry_run=dry_run, progress=progress
        )
    _finish(results, as_json=as_json, dry_run=dry_run)


def _backfill_flags(tag: str | None, all_tags: bool, match: str | None, since: str | None) -> datetime | None:
    """Check the flags' combination (exit 2), before anything is read; --since as a time."""
    if all_tags and tag is not None:
        raise InputError(
            "--all-tags and --tag exclude each other",
            hint="give --tag T to promote one image, or --all-tags to backfill every tag the source holds",
        )
    if not all_tags and tag is None:
        raise InputError(
            "missing --tag",
            hint="give --tag T to promote one image, or --all-tags to backfill every tag the source holds",
        )
    if not all_tags and (match is not None or since is not None):
        raise InputError(
            "--match and --since choose tags for --all-tags only",
            hint="drop them, or use --all-tags instead of --tag",
        )
    compile_match(match)
    return parse_since(since) if since is not None else None


def _backfill(
    context: PipelineContext,
    to: str,
    repository: str,
    source: str | None,
    match: str | None,
    since: datetime | None,
    *,
    dry_run: bool,
    as_json: bool,
) -> None:
    with CopyProgressDisplay(f"backfill {repository} -> {to}", quiet=as_json) as progress:
        result = backfill_images(
            context,
            to,
            repository,
            source=source,
            match=match,
            since=since,
            dry_run=dry_run,
            progress=progress,
            on_plan=show_backfill_plan,
        )
    if as_json:
        emit_json(result.as_dict())
    for line in image_lines(result.images):
        stderr.print(line)
    code = report_failures(result.images)
    if not result.plan.to_promote:
        held = len(result.plan.of("already-there"))
        where = safe_text(result.route.destination)
        stderr.print(
            f"nothing to promote: all {held} chosen tag{'' if held == 1 else 's'} already in {where}"
            if held
            else f"nothing to promote: no tag of {safe_text(repository)} in "
            f"{safe_text(result.route.source)} was chosen"
        )
    elif dry_run:
        stderr.print("[dim]dry run: nothing written[/]")
    if code:
        raise SystemExit(code)


SHOWN_THERE = 20
"""Tags already there listed one by one in the human plan; the rest are counted."""


def show_backfill_plan(result: BackfillResult) -> None:
    """The plan, on stderr, before anything is copied: newest first."""
    plan = result.plan
    copy, there, refused = plan.of("copy"), plan.of("already-there"), plan.of("refused")
    route = safe_text(f"{result.route.source} -> {result.route.destination}")
    heading = f"backfill {safe_text(result.repository)} {route}{' (dry run)' if result.dry_run else ''}: "
    stderr.print(
        heading + f"{len(copy)} to copy, {len(there)} already there, {len(refused)} refused (tag moves)"
    )
    shown_there = 0
    for item in plan.tags:
        tag, digest = safe_text(item.tag), safe_text(item.source_digest[:19])
        if item.action == "copy":
            pushed = f" pushed {item.pushed_at:%Y-%m-%d %H:%M:%S}Z" if item.pushed_at else ""
            stderr.print(f"  [cyan]copy[/]     {tag} {digest}{safe_text(pushed)}")
        elif item.action == "refused":
            held = safe_text((item.destination_digest or "")[:19])
            stderr.print(
                f"  [red]refused[/]  {tag}: {safe_text(result.route.destination)} holds {held}, "
                f"{safe_text(result.route.source)} {digest} (tags never move)"
            )
        elif shown_there < SHOWN_THERE:
            shown_there += 1
            stderr.print(f"  [green]there[/]    {tag} {digest}")
    if len(there) > shown_there:
        stderr.print(f"  [dim]... and {len(there) - shown_there} more already there (--json lists all)[/]")
    left = []
    if plan.not_matched:
        left.append(f"{plan.not_matched} not matching --match")
    if plan.older:
        left.append(f"{plan.older} pushed before --since")
    if result.invalid:
        left.append(f"{result.invalid} invalid tags")
    if left:
        stderr.print(f"  [dim]left out: {', '.join(left)}[/]")


def _promotion_context(
    pipeline_file: str | None,
    to: str,
    source: str | None,
    source_credentials_env: str | None,
    *,
    referrers: bool = True,
) -> PipelineContext:
    context = build_context(
        pipeline_file, promote_to=to, source=source, source_env_prefix=source_credentials_env
    )
    context.referrers = referrers
    return context


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
@no_referrers_option
@promotion_options
def promote_release_cmd(
    to: str,
    release_file: Path,
    no_referrers: bool,
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

    context = _promotion_context(
        pipeline_file, to, source, source_credentials_env, referrers=not no_referrers
    )
    with CopyProgressDisplay(f"release -> {to}", quiet=as_json) as progress:
        result = promote_release(context, to, release_file, source=source, dry_run=dry_run, progress=progress)
    if as_json:
        emit_json(result.as_dict())
    if show_release(result):
        raise SystemExit(exit_codes.FAILED)  # a release with a refused part fails as a whole
