"""`cloudops copy SRC DST`: any registry to any registry, by digest, all platforms."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cloudops.cli import exit_codes
from cloudops.cli.output import emit_json, handles_errors, human_bytes, report_error, safe_text, stderr
from cloudops.cli.progress import CopyProgressDisplay
from cloudops.cli.registry_flags import (
    authfile_option,
    build_keychain,
    env_credentials,
    no_referrers_option,
    tls_options,
)
from cloudops.cli.settings import retry_policy
from cloudops.copy import CopyEngine, CopyReport, CopyRequest
from cloudops.errors import InputError
from cloudops.refs import parse_reference
from cloudops.registry import (
    Credentials,
    MultiKeychain,
    RegistrySession,
    TransportSettings,
)

F = TypeVar("F", bound=Callable[..., Any])


def _read_batch(path: Path) -> list[CopyRequest]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read batch file {path}: {type(exc).__name__}") from None
    requests = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2:
            raise InputError(f"{path}:{number}: expected 'SRC DST', got {len(parts)} fields")
        requests.append(CopyRequest(parse_reference(parts[0]), parse_reference(parts[1], default_tag=None)))
    if not requests:
        raise InputError(f"batch file {path} names no images")
    return requests


@click.command()
@click.argument("src", required=False)
@click.argument("dst", required=False)
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File of 'SRC DST' lines: copy them all in one run, blobs shared.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@authfile_option
@click.option(
    "--src-creds-env",
    default="CLOUDOPS_SRC_CREDS",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding USER:PASSWORD for the source registry.",
)
@click.option(
    "--dest-creds-env",
    default="CLOUDOPS_DEST_CREDS",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding USER:PASSWORD for the destination registry.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@tls_options
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Blob transfers at once (the images' layers; the blobs of signatures and SBOMs "
    "have N/4 more slots, at least 1).",
)
@no_referrers_option
@handles_errors
def copy(
    src: str | None,
    dst: str | None,
    batch: Path | None,
    as_json: bool,
    authfile: Path | None,
    src_creds_env: str,
    dest_creds_env: str,
    quiet: bool,
    insecure: tuple[str, ...],
    ca_bundle: Path | None,
    concurrency: int,
    no_referrers: bool,
) -> None:
    """Copy SRC to DST by digest, every platform of an index, keeping the digest.

    SRC and DST are REGISTRY/REPOSITORY[:TAG][@DIGEST]. DST without a tag takes SRC's
    tag. Only what DST lacks is moved; the tag is written last, after every blob and
    child manifest is in, and read back to verify the digest. Re-running is safe: when DST
    already has the digest under that tag, nothing is written.

    What refers to the image (cosign signatures, SBOMs, attestations: by the OCI referrers
    API, the referrers tag schema, or cosign's sha256-<hex>.sig/.att/.sbom tags) travels
    with it, by digest, before the tag; --no-referrers copies the image alone.

    Credentials never go on the command line: they come from $CLOUDOPS_SRC_CREDS and
    $CLOUDOPS_DEST_CREDS (USER:PASSWORD), --authfile, $REGISTRY_AUTH_FILE, or Docker's
    config.json.
    """
    if batch is not None:
        if src or dst:
            raise click.UsageError("give either SRC DST or --batch FILE, not both")
        requests = _read_batch(batch)
    else:
        if not (src and dst):
            raise click.UsageError("missing SRC and DST (or --batch FILE)")
        source = parse_reference(src)
        destination = parse_reference(dst, default_tag=None)
        if destination.tag is None and destination.digest is None:
            destination = destination.with_tag(source.tag)
        requests = [CopyRequest(source, destination)]

    static: dict[str, Credentials] = {}
    for request in requests:
        static.update(env_credentials(src_creds_env, request.source.registry))
    for request in requests:
        static.update(env_credentials(dest_creds_env, request.destination.registry))
    keychain = build_keychain(static, authfile)
    settings = TransportSettings.build(insecure, ca_bundle, retry=retry_policy())

    report = asyncio.run(_run(requests, keychain, settings, concurrency, quiet or as_json, not no_referrers))
    if as_json:
        emit_json(report.as_dict())
    failed = [r for r in report.results if not r.ok]
    for result in report.results:
        for warning in result.warnings:  # a referrer not carried, and why (registry text)
            stderr.print(f"[bold yellow]warning:[/] {safe_text(warning)}")
    for result in failed:
        if result.error is not None:
            prefix = f"{result.request.source}: " if len(report.results) > 1 else ""
            report_error(result.error, prefix)
    if not quiet:
        stderr.print(
            f"{len(report.results) - len(failed)}/{len(report.results)} images done, "
            f"{human_bytes(report.bytes_uploaded)} uploaded in {report.seconds:.1f}s"
        )
    if failed:
        codes = {exit_codes.for_error(r.error) for r in failed if r.error}
        raise SystemExit(codes.pop() if len(codes) == 1 else exit_codes.FAILED)


async def _run(
    requests: list[CopyRequest],
    keychain: MultiKeychain,
    settings: TransportSettings,
    concurrency: int,
    quiet: bool,
    referrers: bool,
) -> CopyReport:
    async with RegistrySession(keychain, settings) as pool:
        with CopyProgressDisplay("copy", quiet=quiet) as progress:
            engine = CopyEngine(pool, concurrency=concurrency, progress=progress, referrers=referrers)
            return await engine.copy(requests)
