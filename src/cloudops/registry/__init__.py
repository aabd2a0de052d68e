"""Async OCI distribution client: transport, auth chain, typed errors, one retry policy.

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
