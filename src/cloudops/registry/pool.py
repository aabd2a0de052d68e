"""One HTTP connection pool and one transport per registry host, shared by every reader
and writer of a run, so auth tokens and connections are reused across a whole batch."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from cloudops.errors import InputError
from cloudops.registry.auth import Keychain, MultiKeychain
from cloudops.registry.client import RegistryReader, RegistryWriter
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.transport import RegistryTransport


@dataclass(frozen=True)
class TransportSettings:
    insecure_hosts: frozenset[str] = frozenset()
    """Hosts reached over HTTPS without certificate verification, or plain HTTP when they
    do not speak TLS. Every other host is HTTPS with verification."""
    ca_bundle: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_connections: int = 32
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    @classmethod
    def build(
        cls, insecure_hosts: Iterable[str] = (), ca_bundle: Path | None = None, **kwargs: object
    ) -> TransportSettings:
        return cls(frozenset(insecure_hosts), ca_bundle, **kwargs)  # type: ignore[arg-type]


class RegistryPool:
    """Use as ``async with RegistryPool(keychain, settings) as pool:``."""

    def __init__(self, keychain: Keychain | None = None, settings: TransportSettings | None = None):
        self.settings = settings or TransportSettings()
        self._keychain = keychain or MultiKeychain([])
        self._client: httpx.AsyncClient | None = None
        self._unverified: httpx.AsyncClient | None = None
        self._transports: dict[str, RegistryTransport] = {}

    async def __aenter__(self) -> RegistryPool:
        verify: ssl.SSLContext | bool = True
        if self.settings.ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=str(self.settings.ca_bundle))
            except (OSError, ssl.SSLError):
                raise InputError(
                    f"cannot read CA bundle {self.settings.ca_bundle}",
                    hint="pass a PEM file with the certificate authority",
                ) from None
        self._client = self._new_client(verify)
        if self.settings.insecure_hosts:
            self._unverified = self._new_client(False)
        return self

    def _new_client(self, verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(
                self.settings.read_timeout, connect=self.settings.connect_timeout, pool=None
            ),
            limits=httpx.Limits(
                max_connections=self.settings.max_connections,
                max_keepalive_connections=self.settings.max_connections,
            ),
            headers={"User-Agent": "cloudops"},
            trust_env=False,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in (self._client, self._unverified):
            if client is not None:
                await client.aclose()
        self._client = self._unverified = None

    def _transport(self, host: str) -> RegistryTransport:
        if self._client is None:
            raise RuntimeError("RegistryPool used outside 'async with'")
        transport = self._transports.get(host)
        if transport is None:
            insecure = host in self.settings.insecure_hosts
            transport = RegistryTransport(
                host,
                self._unverified if insecure and self._unverified is not None else self._client,
                self._keychain,
                self.settings.retry,
                insecure=insecure,
            )
            self._transports[host] = transport
        return transport

    def reader(self, host: str) -> RegistryReader:
        return RegistryReader(self._transport(host))

    def writer(self, host: str) -> RegistryWriter:
        return RegistryWriter(self._transport(host))
