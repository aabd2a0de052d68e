"""Who am I at a registry: credentials kept apart from the transport.

A keychain maps a registry host to credentials. Keychains chain in order (explicit
credentials, then the ECR token provider handed in from the aws layer, then Docker's
config.json and containers' auth.json); when none knows the host, requests go anonymous.
The transport turns credentials into Basic auth or into bearer tokens, as the registry's
WWW-Authenticate challenge asks (https://distribution.github.io/distribution/spec/auth/token/).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cloudops.errors import InputError


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"

    @classmethod
    def parse(cls, text: str, *, source: str) -> Credentials:
        """``user:password`` as given in an environment variable."""
        username, sep, password = text.partition(":")
        if not sep or not username:
            raise InputError(
                f"credentials in {source} are not in the form USER:PASSWORD",
                hint=f"set {source}=USER:PASSWORD",
            )
        return cls(username, password)


class Keychain(Protocol):
    def resolve(self, host: str) -> Credentials | None:
        """Credentials for ``host``, or None when this keychain does not know it."""

    def invalidate(self, host: str) -> None:
        """Forget cached credentials for ``host`` (an expired token); the next resolve
        fetches fresh ones."""


class StaticKeychain:
    """Credentials given explicitly, per host."""

    def __init__(self, credentials: dict[str, Credentials] | None = None):
        self._credentials = dict(credentials or {})

    def resolve(self, host: str) -> Credentials | None:
        return self._credentials.get(host)

    def invalidate(self, host: str) -> None:
        return None


class MultiKeychain:
    """The first keychain in order that knows the host wins."""

    def __init__(self, keychains: Sequence[Keychain]):
        self._keychains = list(keychains)

    def resolve(self, host: str) -> Credentials | None:
        for keychain in self._keychains:
            found = keychain.resolve(host)
            if found is not None:
                return found
        return None

    def invalidate(self, host: str) -> None:
        for keychain in self._keychains:
            keychain.invalidate(host)


def default_auth_files() -> list[Path]:
    """containers auth.json first (what skopeo and podman write), then Docker's config."""
    paths: list[Path] = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "containers" / "auth.json")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths.append(Path(config_home) / "containers" / "auth.json")
    docker_config = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    paths.append(Path(docker_config) / "config.json")
    return paths


_SCHEME_RE = re.compile(r"^[a-z]+://")


def _normalise_auth_key(key: str) -> str:
    """Docker writes "https://index.docker.io/v1/" style keys; compare hosts only."""
    key = _SCHEME_RE.sub("", key)
    return key.split("/", 1)[0]


class DockerConfigKeychain:
    """Reads ``auths`` entries of Docker config.json and containers auth.json files.

    Credential helpers (credsStore/credHelpers) are not run: they would execute arbitrary
    programs; the ECR helper's job is done by the aws layer's token provider instead.
    """

    def __init__(self, paths: Iterable[Path] | None = None):
        self._paths = list(paths) if paths is not None else default_auth_files()
        self._loaded: dict[str, Credentials] | None = None

    def _load(self) -> dict[str, Credentials]:
        found: dict[str, Credentials] = {}
        for path in self._paths:
            try:
                doc = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                raise InputError(
                    f"cannot read registry auth file {path}: {type(exc).__name__}",
                    hint="fix or remove the file, or point REGISTRY_AUTH_FILE elsewhere",
                ) from None
            auths = doc.get("auths") if isinstance(doc, dict) else None
            if not isinstance(auths, dict):
                continue
            for key, entry in auths.items():
                host = _normalise_auth_key(str(key))
                if host in found or not isinstance(entry, dict):
                    continue
                creds = _entry_credentials(entry)
                if creds is not None:
                    found[host] = creds
        return found

    def resolve(self, host: str) -> Credentials | None:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded.get(host)

    def invalidate(self, host: str) -> None:
        return None


def _entry_credentials(entry: dict[str, object]) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return Credentials(user, password) if sep else None
    username, secret = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(secret, str):
        return Credentials(username, secret)
    return None


# --- WWW-Authenticate challenges -------------------------------------------------------

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str | None) -> Challenge | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {str(m[1]).lower(): str(m[2] if m[2] else m[3]) for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)
