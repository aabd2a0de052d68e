"""`cloudops tags REF`: a repository's tags, newest first."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.cli.settings import retry_policy
from cloudops.refs import Reference, parse_reference
from cloudops.registry import (
    Credentials,
    DockerConfigKeychain,
    MultiKeychain,
    RegistryPool,
    StaticKeychain,
    TransportSettings,
)
from cloudops.registry.auth import Keychain
from cloudops.report.tags import TagList, list_repository_tags


@click.command()
@click.argument("reference", metavar="REF")
@click.option("--json", "as_json", is_flag=True, help="Print the tags as JSON on stdout.")
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST",
    help="Trust HOST without TLS verification, or over plain HTTP if it has no TLS (repeatable). "
    "Every other registry is HTTPS, verified.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM file of certificate authorities to trust for registries.",
)
@click.option(
    "--authfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Docker config.json or containers auth.json to read credentials from.",
)
@click.option(
    "--src-creds-env",
    default="CLOUDOPS_SRC_CREDS",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding USER:PASSWORD for the registry.",
)
@handles_errors
def tags(
    reference: str,
    as_json: bool,
    insecure: tuple[str, ...],
    ca_bundle: Path | None,
    authfile: Path | None,
    src_creds_env: str,
) -> None:
    """List the tags of REF's repository, newest first (the version sort of `status`).

    REF is REGISTRY/REPOSITORY; a :TAG or @DIGEST on it is accepted and ignored, so a
    reference from an error message can be pasted as it is. Names the registry lists that
    are not valid tags are counted, never shown. Credentials and TLS work as for `copy`.
    """
    ref = parse_reference(reference, default_tag=None)
    static: dict[str, Credentials] = {}
    value = os.environ.get(src_creds_env)
    if value:
        static[ref.registry] = Credentials.parse(value, source=f"${src_creds_env}")
    keychains: list[Keychain] = [StaticKeychain(static)]
    keychains.append(DockerConfigKeychain([authfile]) if authfile else DockerConfigKeychain())
    settings = TransportSettings.build(insecure, ca_bundle, retry=retry_policy())

    found = asyncio.run(_run(ref, MultiKeychain(keychains), settings))
    if as_json:
        emit_json(found.as_dict())
    else:
        show_tags(found)
    show_notes(found)


async def _run(reference: Reference, keychain: MultiKeychain, settings: TransportSettings) -> TagList:
    async with RegistryPool(keychain, settings) as pool:
        return await list_repository_tags(pool, reference)


def show_tags(found: TagList) -> None:
    """One tag per line (human output, on stderr like every human output), then a count."""
    for tag in found.tags:
        stderr.print(safe_text(tag))
    count = len(found.tags)
    stderr.print(
        f"[dim]{count} tag{'' if count == 1 else 's'} in {safe_text(found.repository)}, newest first[/]"
    )


def show_notes(found: TagList) -> None:
    if found.invalid:
        stderr.print(
            f"[yellow]{found.invalid} invalid tag{'' if found.invalid == 1 else 's'} not shown[/] "
            "(names the registry listed that are not valid tags)"
        )
    if found.truncated:
        stderr.print(
            f"[yellow]stopped after {found.limit:,} tags:[/] the repository has more; those read are listed"
        )
