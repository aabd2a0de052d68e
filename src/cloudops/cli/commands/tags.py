"""`cloudops tags REF`: a repository's tags, newest first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.cli.registry_flags import authfile_option, build_keychain, env_credentials, tls_options
from cloudops.cli.settings import retry_policy
from cloudops.refs import Reference, parse_reference
from cloudops.registry import (
    MultiKeychain,
    RegistrySession,
    TransportSettings,
)
from cloudops.report.tags import TagList, list_repository_tags


@click.command()
@click.argument("reference", metavar="REF")
@click.option("--json", "as_json", is_flag=True, help="Print the tags as JSON on stdout.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also list the tags that carry signatures and SBOMs (sha256-<hex>, .sig, .att, .sbom).",
)
@tls_options
@authfile_option
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
    show_all: bool,
    insecure: tuple[str, ...],
    ca_bundle: Path | None,
    authfile: Path | None,
    src_creds_env: str,
) -> None:
    """List the tags of REF's repository, newest first (the version sort of `status`).

    REF is REGISTRY/REPOSITORY; a :TAG or @DIGEST on it is accepted and ignored, so a
    reference from an error message can be pasted as it is. Names the registry lists that
    are not valid tags are counted, never shown. Tags that carry referrers (signatures,
    SBOMs: sha256-<hex>, and cosign's .sig/.att/.sbom) are counted, and listed after the
    others with --all (JSON has them apart, under "referrer_tags"). Credentials and TLS work
    as for `copy`.
    """
    ref = parse_reference(reference, default_tag=None)
    keychain = build_keychain(env_credentials(src_creds_env, ref.registry), authfile)
    settings = TransportSettings.build(insecure, ca_bundle, retry=retry_policy())

    found = asyncio.run(_run(ref, keychain, settings))
    if as_json:
        emit_json(found.as_dict())
    else:
        show_tags(found, show_all=show_all)
    show_notes(found, show_all=show_all or as_json)


async def _run(reference: Reference, keychain: MultiKeychain, settings: TransportSettings) -> TagList:
    async with RegistrySession(keychain, settings) as pool:
        return await list_repository_tags(pool, reference)


def show_tags(found: TagList, *, show_all: bool = False) -> None:
    """One tag per line (human output, on stderr like every human output), then a count;
    with ``show_all`` the referrer tags after them."""
    for tag in found.tags:
        stderr.print(safe_text(tag))
    count = len(found.tags)
    stderr.print(
        f"[dim]{count} tag{'' if count == 1 else 's'} in {safe_text(found.repository)}, newest first[/]"
    )
    if show_all and found.referrer_tags:
        for tag in found.referrer_tags:
            stderr.print(safe_text(tag))
        stderr.print(f"[dim]{_referrer_tags(found)}[/]")


def show_notes(found: TagList, *, show_all: bool = False) -> None:
    if found.referrer_tags and not show_all:
        stderr.print(f"[dim]{_referrer_tags(found)} not shown; --all lists them[/]")
    if found.invalid:
        stderr.print(
            f"[yellow]{found.invalid} invalid tag{'' if found.invalid == 1 else 's'} not shown[/] "
            "(names the registry listed that are not valid tags)"
        )
    if found.truncated:
        stderr.print(
            f"[yellow]stopped after {found.limit:,} tags:[/] the repository has more; those read are listed"
        )


def _referrer_tags(found: TagList) -> str:
    count = len(found.referrer_tags)
    return f"{count} referrer tag{'' if count == 1 else 's'} (signatures, SBOMs)"
