"""`cloudops promote image|package|release`."""

from __future__ import annotations

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import build_context, pipeline_option, source_credentials_option
from cloudops.cli.output import emit_json, handles_errors, human_bytes, report_error, stderr
from cloudops.cli.progress import CopyProgressDisplay
from cloudops.pipeline.promote import ImagePromotion, ImageSpec, promote_images


@click.group()
def promote() -> None:
    """Promote into an account from the stage before it (by digest, verified, recorded)."""


@promote.command("image")
@click.option("--to", "to", required=True, metavar="ACCOUNT", help="Destination account (stage).")
@click.option("--repository", required=True, metavar="R", help="ECR repository, e.g. ep/cortex.")
@click.option("--tag", required=True, metavar="T", help="Image tag to promote.")
@click.option("--from", "source", metavar="ACCOUNT", help="Source account (default: the stage before --to).")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@pipeline_option
@source_credentials_option
@handles_errors
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
    context = build_context(
        pipeline_file,
        source_account=_source_of(pipeline_file, to, source),
        source_env_prefix=source_credentials_env,
    )
    with CopyProgressDisplay(f"promote {repository}:{tag} -> {to}", quiet=as_json) as progress:
        results = promote_images(
            context, to, [ImageSpec(repository, tag)], source=source, dry_run=dry_run, progress=progress
        )
    _finish(results, as_json=as_json, dry_run=dry_run)


def _source_of(pipeline_file: str | None, to: str, source: str | None) -> str | None:
    """The source account name, for binding --source-credentials-env to it."""
    if source:
        return source
    from cloudops.pipeline.model import load_pipeline

    pipeline = load_pipeline(pipeline_file)
    pipeline.account(to)
    return pipeline.previous_stage(to) if to in pipeline.stages else None


def _finish(results: list[ImagePromotion], *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        emit_json(
            {"ok": all(r.ok for r in results), "dry_run": dry_run, "images": [r.as_dict() for r in results]}
        )
    for r in results:
        name = f"{r.repository}:{r.tag}"
        route = f"{r.route.source} -> {r.route.destination}"
        digest = (r.source_digest or "")[:19]
        if r.status == "planned":
            stderr.print(f"[cyan]plan[/] {name} {route}: {r.action} {digest}")
        elif r.status == "promoted":
            stderr.print(
                f"[green]✓[/] {name} {route}: promoted {digest} "
                f"({human_bytes(r.bytes_uploaded)} moved, verified)"
            )
        elif r.status == "already-promoted":
            stderr.print(f"[green]=[/] {name} {route}: already promoted {digest} (nothing written)")
        elif r.error is not None:
            report_error(r.error, f"{name} {route}: ")
    failed = [r for r in results if not r.ok]
    if failed:
        codes = {exit_codes.for_error(r.error) for r in failed if r.error is not None}
        if exit_codes.REFUSED in codes:
            raise SystemExit(exit_codes.REFUSED)
        raise SystemExit(codes.pop() if len(codes) == 1 else exit_codes.FAILED)
