"""The registry flags `copy` and `tags` share (TLS, auth file) and the keychain they build:
explicit USER:PASSWORD from an environment variable first, then an auth file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cloudops.registry import (
    Credentials,
    DockerConfigKeychain,
    MultiKeychain,
    StaticKeychain,
)

F = TypeVar("F", bound=Callable[..., Any])

_TLS_OPTIONS = [
    click.option(
        "--insecure-registry",
        "insecure",
        multiple=True,
        metavar="HOST",
        help="Trust HOST without TLS verification, or over plain HTTP if it has no TLS (repeatable). "
        "Every other registry is HTTPS, verified.",
    ),
    click.option(
        "--ca-bundle",
        type=click.Path(dir_okay=False, path_type=Path),
        help="PEM file of certificate authorities to trust for registries.",
    ),
]

authfile_option = click.option(
    "--authfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Docker config.json or containers auth.json to read credentials from.",
)


def tls_options(func: F) -> F:
    """--insecure-registry HOST ... and --ca-bundle FILE."""
    for option in reversed(_TLS_OPTIONS):
        func = option(func)
    return func


def env_credentials(var: str, host: str) -> dict[str, Credentials]:
    """``host``'s credentials from ``$var`` (USER:PASSWORD), or none when it is unset."""
    value = os.environ.get(var)
    if not value:
        return {}
    return {host: Credentials.parse(value, source=f"${var}")}


def build_keychain(static: dict[str, Credentials], authfile: Path | None) -> MultiKeychain:
    """The explicit credentials, then ``--authfile`` (or the default auth files)."""
    files = DockerConfigKeychain([authfile]) if authfile else DockerConfigKeychain()
    return MultiKeychain([StaticKeychain(static), files])


no_referrers_option = click.option(
    "--no-referrers",
    is_flag=True,
    help="Copy images without what refers to them (signatures, SBOMs, attestations).",
)
