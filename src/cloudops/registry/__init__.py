"""Async OCI distribution client: transport, auth chain, typed errors, one retry policy.

The reading side (:class:`RegistryReader`) has no method that writes; the writing side
(:class:`RegistryWriter`) is handed out only for the destination of a copy.
"""

import sys

# httpx imports its own command-line client (httpx._main: rich, pygments, click) whenever
# those happen to be installed, ~30 ms of every cloudops run; httpx/__init__.py falls
# back to a stub when that import fails, and cloudops never runs httpx's CLI.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from cloudops.registry.auth import (
    Credentials,
    DockerConfigKeychain,
    Keychain,
    MultiKeychain,
    StaticKeychain,
)
from cloudops.registry.client import ManifestHead, RegistryReader, RegistryWriter
from cloudops.registry.errors import (
    AuthenticationError,
    CredentialTargetRefused,
    DigestMismatchError,
    InsecureRegistryError,
    NotFoundError,
    RegistryError,
    RegistryUnreachableError,
)
from cloudops.registry.pool import RegistryPool, TransportSettings
from cloudops.registry.retry import RetryPolicy

__all__ = [
    "AuthenticationError",
    "CredentialTargetRefused",
    "Credentials",
    "DigestMismatchError",
    "DockerConfigKeychain",
    "InsecureRegistryError",
    "Keychain",
    "ManifestHead",
    "MultiKeychain",
    "NotFoundError",
    "RegistryError",
    "RegistryPool",
    "RegistryReader",
    "RegistryUnreachableError",
    "RegistryWriter",
    "RetryPolicy",
    "StaticKeychain",
    "TransportSettings",
]
