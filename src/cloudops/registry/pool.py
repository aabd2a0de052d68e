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
from cloudops.registry.wire import Wire, WireTransport


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


class RegistryPool:
    """Use as ``async with RegistryPool(keychain, settings) as pool:``."""

    def __init__(self, keychain: Keychain | None = None, settings: TransportSettings | None = None):
        self.settings = settings or TransportSettings()
        self._keychain = keychain or MultiKeychain([])
        self._verify: ssl.SSLContext | bool = True
        self._clients: list[httpx.AsyncClient] = []
        self._wire: Wire | None = None
        self._transports: dict[str, RegistryTransport] = {}
        self._shared: dict[bool, httpx.AsyncClient] = {}
        self._open = False

    async def __aenter__(self) -> RegistryPool:
        if self.settings.ca_bundle is not None:
            try:
                self._verify = ssl.create_default_context(cafile=str(self.settings.ca_bundle))
            except (OSError, ssl.SSLError):
                raise InputError(
                    f"cannot read CA bundle {self.settings.ca_bundle}",
                    hint="pass a PEM file with the certificate authority",
                ) from None
        self._open = True
        return self

    def _get_wire(self) -> Wire:
        if self._wire is None:
            self._wire = Wire(
                workers=self.settings.max_connections,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
            )
        return self._wire

    def _new_client(self, verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        # One httpx client per registry host (its verify setting), all over one Wire
        # (registry/wire.py): the connections and threads of the whole run.
        client = httpx.AsyncClient(
            transport=WireTransport(self._get_wire(), verify),
            timeout=httpx.Timeout(
                self.settings.read_timeout, connect=self.settings.connect_timeout, pool=None
            ),
            headers={"User-Agent": "cloudops"},
            trust_env=False,
        )
        self._clients.append(client)
        return client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._clients:
            await client.aclose()
        if self._wire is not None:
            await self._wire.close()
            self._wire = None
        self._clients.clear()
        self._shared.clear()
        self._transports.clear()
        self._open = False

    def _transport(self, host: str) -> RegistryTransport:
        if not self._open:
            raise RuntimeError("RegistryPool used outside 'async with'")
        transport = self._transports.get(host)
        if transport is None:
            insecure = host in self.settings.insecure_hosts
            verify = False if insecure else self._verify
            transport = RegistryTransport(
                host,
                self._new_client(verify),
                self._keychain,
                self.settings.retry,
                insecure=insecure,
                wire=self._get_wire(),
                verify=verify,
                insecure_hosts=self.settings.insecure_hosts,
                clients=self._client_for,
            )
            self._transports[host] = transport
        return transport

    def _client_for(self, insecure: bool) -> httpx.AsyncClient:
        """A client for a host other than a registry's own (a token realm): it skips
        certificate checks only when that host itself is an --insecure-registry host."""
        client = self._shared.get(insecure)
        if client is None:
            client = self._shared[insecure] = self._new_client(False if insecure else self._verify)
        return client

    def reader(self, host: str) -> RegistryReader:
        return RegistryReader(self._transport(host))

    def writer(self, host: str) -> RegistryWriter:
        return RegistryWriter(self._transport(host))
