"""`cloudops sign` and `cloudops verify`: cosign signatures made in the build account and
checked in any account (docs/signatures.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cloudops.cli import exit_codes
from cloudops.cli.context import build_context, pipeline_option
from cloudops.cli.output import emit_json, handles_errors, safe_text, stderr
from cloudops.errors import InputError
from cloudops.pipeline.sign_images import Target, parse_target, sign_images, verify_images
from cloudops.release import load_release
from cloudops.signing.keys import load_private_key, load_public_key

KEY_HELP = "cosign key file (cosign generate-key-pair writes cosign.key and cosign.pub)."


def _targets(image_or_release: str) -> list[Target]:
    """REPOSITORY:TAG, or a release file: every image it names."""
    path = Path(image_or_release)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        release = load_release(path)
        return [Target(i.repository, i.tag) for i in release.images]
    return [parse_target(image_or_release)]


@click.command()
@click.argument("image_or_release", metavar="IMAGE|RELEASE_FILE")
@click.option(
    "--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help=KEY_HELP
)
@click.option("--account", default=None, metavar="A", help="Must be the build account (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print what was signed as JSON on stdout.")
@pipeline_option
@handles_errors
def sign(
    image_or_release: str, key_path: Path, account: str | None, as_json: bool, pipeline_file: str | None
) -> None:
    """Sign IMAGE (REPOSITORY:TAG) or every image of RELEASE_FILE in the build account.

    The signature is cosign's simple signing (ECDSA P-256) of the image's digest, written
    as an OCI 1.1 referrer (the referrers tag schema where the registry has no referrers
    API), as `cosign sign --registry-referrers-mode=oci-1-1` writes it: `cosign verify`
    reads it. The key's password comes from $COSIGN_PASSWORD, never from the command line.
    Only the build account is written (exit 3 for any other); an image this key already
    signed is left as it is."""
    context = build_context(pipeline_file)
    targets = _targets(image_or_release)
    password = os.environ.get("COSIGN_PASSWORD")
    if password is None:
        raise InputError(
            "$COSIGN_PASSWORD is not set", hint="export COSIGN_PASSWORD with the password of the cosign key"
        )
    private_key = load_private_key(key_path, password.encode())
    results = sign_images(context, targets, private_key, account=account)
    if as_json:
        emit_json({"images": [r.as_dict() for r in results]})
        return
    for result in results:
        stderr.print(f"{safe_text(result.target.name)} {result.digest[:19]}: {result.status}")


@click.command()
@click.argument("image_or_release", metavar="IMAGE|RELEASE_FILE")
@click.option(
    "--key",
    "key_paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trusted cosign public key (repeatable). Default: pipeline.yaml's verify.keys.",
)
@click.option(
    "--account", default=None, metavar="A", help="The account whose registry to read (default: build)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON on stdout.")
@pipeline_option
@handles_errors
def verify(
    image_or_release: str,
    key_paths: tuple[Path, ...],
    account: str | None,
    as_json: bool,
    pipeline_file: str | None,
) -> None:
    """Check that IMAGE (REPOSITORY:TAG) or every image of RELEASE_FILE in an account's
    registry carries a cosign signature that names its exact digest and verifies under a
    trusted key. Exit 0 when every image does, 3 when one does not (what was missing or
    wrong is named)."""
    from cloudops.pipeline.signatures import trusted_keys

    context = build_context(pipeline_file)
    keys = [load_public_key(p) for p in key_paths] if key_paths else trusted_keys(context.pipeline)
    where = account or context.pipeline.build_account
    results = verify_images(context, where, _targets(image_or_release), keys)
    if as_json:
        emit_json({"account": where, "images": [r.as_dict() for r in results]})
    else:
        for result in results:
            v = result.verification
            colour = "green" if v.ok else "red"
            name = safe_text(result.target.name)
            stderr.print(f"{name} {v.digest[:19]}: [{colour}]{v.state}[/] ({safe_text(v.reason)})")
    if not all(r.verification.ok for r in results):
        sys.exit(exit_codes.REFUSED)
