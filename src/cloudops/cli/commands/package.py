"""`cloudops package publish` and `cloudops promote package|release`."""

from __future__ import annotations

from pathlib import Path

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, human_bytes, report_error, safe_text, stderr
from cloudops.package import PackageResult, publish_package


@click.group()
def package() -> None:
    """The deployment package (webapps/, database/, tools/ with the Data Population Tool)."""


@package.command("publish")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--version", "version", required=True, metavar="V", help="Version to publish it as (immutable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@pipeline_option
@handles_errors
def publish(file: Path, version: str, as_json: bool, pipeline_file: str | None) -> None:
    """Check FILE (a readable zip with webapps/, database/ and tools/ holding the
    data-population CLI) and upload it into the build account's bucket as version V, with
    its SHA-256 recorded; then make it the build account's current package. Nothing is
    uploaded when the check fails."""
    context = build_context(pipeline_file)
    result = publish_package(
        context,
        file,
        version,
    )
    _finish_package(result, as_json)


def _finish_package(result: PackageResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
    describe_package(result)
    if result.error is not None:
        raise SystemExit(exit_codes.for_error(result.error))


def describe_package(result: PackageResult) -> None:
    """One line on stderr: what happened to the package, or the failure with its fix."""
    where = f"{result.source_account} -> {result.account}" if result.source_account else result.account
    if result.error is not None:
        report_error(result.error, f"package {result.version} {where}: ")
        return
    said = {
        "published": f"published ({human_bytes(result.bytes_uploaded)}, read back and verified)",
        "already-published": "already published with the same content (nothing uploaded)",
        "promoted": f"promoted ({human_bytes(result.bytes_uploaded)} copied, read back and verified)",
        "already-promoted": "already there with the same content (nothing copied)",
        "planned": "would be promoted (dry run)",
    }.get(result.status, result.status)
    pointer = "; now current" if result.pointer_moved else ""
    stderr.print(
        f"[green]✓[/] package {safe_text(result.version)} {safe_text(where)}: {safe_text(said)}{pointer} "
        f"(sha256 {safe_text(result.sha256[:16])}…)"
    )
