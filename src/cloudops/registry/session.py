"""One run's registry connections (registry/http.py) and one transport per registry host,
shared by every reader and writer of the run, so tokens and connections are reused across
a whole batch."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cloudops.errors import InputError
from cloudops.registry.auth import Keychain, MultiKeychain
from cloudops.registry.client import RegistryReader, RegistryWriter
from cloudops.registry.http import RoundTripper
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.transport import RegistryTransport


@dataclass(frozen=True)
class TransportSettings:
    insecure_hosts: frozenset[str] = frozenset()
    """Hosts reached over HTTPS without certificate verification, or plain HTTP when they
    do not speak TLS. Every other host is HTTPS with verification."""
    ca_bundle: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_connections: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    @classmethod
    def build(
        cls, insecure_hosts: Iterable[str] = (), ca_bundle: Path | None = None, **kwargs: object
    ) -> TransportSettings:
        return cls(frozenset(insecure_hosts), ca_bundle, **kwargs)  # type: ignore[arg-type]


class RegistrySession:
    """Use as ``async with RegistrySession(keychain, settings) as registries:``."""

    def __init__(self, keychain: Keychain | None = None, settings: TransportSettings | None = None):
        self.settings = settings or TransportSettings()
        self._keychain = keychain or MultiKeychain([])
        self._http: RoundTripper | None = None
        self._transports: dict[str, RegistryTransport] = {}

    async def __aenter__(self) -> RegistrySession:
        verified = None
        if self.settings.ca_bundle is not None:
            try:
                verified = ssl.create_default_context(cafile=str(self.settings.ca_bundle))
            except (OSError, ssl.SSLError):
                raise InputError(
                    f"cannot read CA bundle {self.settings.ca_bundle}",
                    hint="pass a PEM file with the certificate authority",
                ) from None
        self._http = RoundTripper(
            max_connections=self.settings.max_connections,
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            ca_bundle=verified,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._transports.clear()

    def _transport(self, host: str) -> RegistryTransport:
        if self._http is None:
            raise RuntimeError("RegistrySession used outside 'async with'")
        transport = self._transports.get(host)
        if transport is None:
            transport = RegistryTransport(
                host,
                self._http,
                self._keychain,
                self.settings.retry,
                insecure=host in self.settings.insecure_hosts,
                insecure_hosts=self.settings.insecure_hosts,
            )
            self._transports[host] = transport
        return transport

    def reader(self, host: str) -> RegistryReader:
        return RegistryReader(self._transport(host))

    def writer(self, host: str) -> RegistryWriter:
        return RegistryWriter(self._transport(host))
