"""Async OCI distribution client on urllib3: one request path (transport), auth chain, typed
errors, one retry policy.

The reading side (:class:`RegistryReader`) has no method that writes; the writing side
(:class:`RegistryWriter`) is handed out only for the destination of a copy.
"""

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
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.session import RegistrySession, TransportSettings

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
    "RegistryReader",
    "RegistrySession",
    "RegistryUnreachableError",
    "RegistryWriter",
    "RetryPolicy",
    "StaticKeychain",
    "TransportSettings",
]
