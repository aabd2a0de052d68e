"""The registry's HTTP, on urllib3: pools per (proxy, TLS setting), requests on worker
threads, failures mapped to typed errors from the exception types, never from their text.

Everything above (registry/transport.py) is asyncio; a request here runs on a worker
thread so the event loop stays free while bytes move (``sha256.update``, ``sendall`` and
``recv`` release the GIL, so blobs move on both cores). What urllib3 gives that a
hand-made pool would have to redo: keep-alive pools, dropping a connection the server
closed while it sat idle, replaying an idempotent request once on a connection that died
under it (RFC 9110 9.2.2), CONNECT tunnels through a proxy, TLS contexts.

Proxies are read from the environment exactly as botocore reads them
(``botocore.utils.get_environ_proxies``: ``urllib.request.getproxies`` and
``proxy_bypass``, so ``NO_PROXY`` is honoured), so a Jenkins agent behind a corporate
proxy reaches its registries the way boto3 reaches the AWS APIs. A proxy's credentials
(``http://user:pass@proxy:3128``) go into a ``Proxy-Authorization`` header and are never
part of a message: a proxy is named by scheme, host and port only.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    InsecureRequestWarning,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.retry import Retry

from cloudops.registry.errors import InsecureRegistryError, RegistryError, RegistryUnreachableError

T = TypeVar("T")

NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException, ValueError)
"""What a request that got no (whole) answer raises; anything else is a bug, not mapped."""

MAX_BODY = 8 * 1024 * 1024
"""What an answer that is not a blob may hold unless the caller says less: manifests are
at most 4 MiB (ECR's limit), tag pages, tokens and errors far less. Reading stops one byte
past the limit, so memory stays bounded whatever a registry sends."""

READ_CHUNK = 1024 * 1024
"""How much of a body one read asks for: a blob moves in chunks of this size (copy/relay.py)."""
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
"""OpenSSL's reasons when the server answered a ClientHello in plain HTTP."""


@dataclass(frozen=True, slots=True)
class Proxy:
    url: str
    """scheme://host:port, no credentials: safe to print."""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """``Proxy-Authorization`` from the URL's credentials, when it has some."""
    variable: str = "HTTPS_PROXY"


@lru_cache(maxsize=256)
def proxy_for(scheme: str, netloc: str) -> Proxy | None:
    """The proxy the environment names for ``scheme://netloc``, as botocore picks one."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # no proxy at all: spare every run the import of urllib.request
    from urllib.request import getproxies, proxy_bypass  # what botocore.utils uses

    try:
        if proxy_bypass(netloc):
            return None
    except (TypeError, OSError):
        pass
    raw = getproxies().get(scheme)
    if not raw:
        return None
    if not raw.startswith(("http:", "https:")):  # botocore's _fix_proxy_url
        raw = "http:" + raw if raw.startswith("//") else "http://" + raw
    parts = urlsplit(raw)
    headers = {}
    if parts.username is not None:
        headers.update(
            urllib3.make_headers(
                proxy_basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            )
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    url = f"{parts.scheme}://{parts.hostname}:{port}"
    return Proxy(url, tuple(headers.items()), f"{scheme.upper()}_PROXY")


@dataclass(slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | Iterable[bytes] | None = None
    verify: bool = True
    """False only for an --insecure-registry host's own TLS (trust.py decides)."""
    stream: bool = False
    """Leave a 2xx answer's body unread (a blob): read it with :meth:`HttpResponse.read`."""
    max_body: int = MAX_BODY
    replayable: bool = True
    """Whether urllib3 may send it once more on a connection that died under it (never
    for a streamed body: its bytes are gone)."""
    blob: bool = False
    """Runs on the blob threads, so long transfers never queue the small requests."""


class HttpResponse:
    def __init__(self, status: int, headers: Mapping[str, str], url: str, via: Proxy | None):
        self.status = status
        self.headers = headers
        self.url = url
        self.via = via
        self.body = b""
        self.truncated = False
        """The body went past the request's ``max_body``; only that much was kept."""
        self._raw: urllib3.BaseHTTPResponse | None = None
        self._exchange: _Exchange | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def read(self, amount: int) -> bytes:
        """Up to ``amount`` bytes of a streamed body (blocking: call it on a worker
        thread); b"" at the end. A body cut short before its Content-Length raises at the
        read that finds the end, so it never reads as a short body."""
        assert self._raw is not None, "not a streamed response"
        try:
            return self._raw.read(amount, decode_content=False)
        except NETWORK_ERRORS as exc:
            if self._exchange is not None and self._exchange.aborted.is_set():
                raise Aborted from None
            raise _failure(exc, self.url, self.via) from None

    def release(self) -> None:
        """A streamed body read to its end: the connection goes back to the pool."""
        if self._raw is not None:
            self._raw.release_conn()
        if self._exchange is not None:
            self._exchange.done()

    def abort(self) -> None:
        """Cut a streamed body from any thread: a read blocked on it fails at once."""
        if self._exchange is not None:
            self._exchange.abort()

    def close(self) -> None:
        """Give up a streamed body (not read to the end): its connection is closed."""
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
            self._raw.release_conn()
        if self._exchange is not None:
            self._exchange.done()


class Aborted(RegistryUnreachableError):
    """The request was cut from another thread (a cancelled caller, the run ending)."""

    retryable = False

    def __init__(self) -> None:
        super().__init__("the request was aborted (the run was interrupted or is ending)")


class _Exchange:
    """One request on a worker thread, cut from another thread by :meth:`abort`: the
    connections it uses register here (through :class:`_Tracked`) until it is done."""

    def __init__(self) -> None:
        self.aborted = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []

    def attach(self, conn: HTTPConnection) -> None:
        with self._lock:
            if self.aborted.is_set():
                raise ConnectionAbortedError("aborted")
            self._connections.append(conn)

    def abort(self) -> None:
        with self._lock:
            self.aborted.set()
            connections, self._connections = self._connections, []
        for conn in connections:
            shutdown(conn)

    def done(self) -> None:
        with self._lock:
            self._connections = []  # back in the pool: no longer ours to cut


_current = threading.local()


class _Tracked:
    """Mixed into urllib3's connections: each request registers its connection with the
    exchange running on this thread, so that exchange can be cut from another thread."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        exchange: _Exchange | None = getattr(_current, "exchange", None)
        if exchange is not None:
            exchange.attach(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]

    def connect(self) -> None:
        # A plain-HTTP connection opens inside request(), after it registered: an abort
        # that came in between found no socket to cut, so look again once there is one
        # (abort sets the flag, then reads the socket; this sets the socket, then reads
        # the flag: one of the two sees the other).
        super().connect()  # type: ignore[misc]
        exchange: _Exchange | None = getattr(_current, "exchange", None)
        if exchange is not None and exchange.aborted.is_set():
            shutdown(self)  # type: ignore[arg-type]
            raise ConnectionAbortedError("aborted")


class _TrackedHTTPConnection(_Tracked, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _ReplayDeadConnection(Retry):
    """One immediate replay of an idempotent request whose kept-alive connection died
    under it; a read timeout is not replayed here (the registry is slow, not gone): the
    one retry policy (registry/retry.py) decides about that."""

    def _is_read_error(self, err: Exception) -> bool:
        return isinstance(err, ProtocolError)


_REPLAY = _ReplayDeadConnection(
    total=1,
    connect=0,
    read=1,
    redirect=False,
    status=0,
    other=0,
    allowed_methods=IDEMPOTENT,
    # A 429 or 503 with Retry-After is the registry's answer, for the transport to map and
    # the one retry policy to wait on; urllib3 must not retry (or refuse) it on its own.
    respect_retry_after_header=False,
    raise_on_status=False,
)


class RoundTripper:
    """The connections and worker threads of one run. ``send`` is the only way a registry
    request leaves cloudops."""

    def __init__(
        self,
        *,
        max_connections: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ca_bundle: ssl.SSLContext | None = None,
    ):
        # Two thread pools: blob transfers hold a thread for seconds and must not queue
        # the small requests (opening the next upload, pushing a manifest) behind them.
        self._requests = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="cloudops-http")
        self._blobs = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="cloudops-blob")
        self._max_connections = max_connections
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._verified = ca_bundle
        self._managers: dict[tuple[Proxy | None, bool], urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._live: set[_Exchange] = set()
        self._closed = False

    def _context(self, verify: bool) -> ssl.SSLContext:
        if verify:
            if self._verified is None:
                self._verified = ssl.create_default_context()  # the system CAs, once: ~40 ms
            return self._verified
        # --insecure-registry: no verification, so no CA store to load. urllib3 warns on
        # every such request; the user asked for it by name.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        warnings.simplefilter("ignore", InsecureRequestWarning)
        return context

    def _manager(self, proxy: Proxy | None, verify: bool) -> urllib3.PoolManager:
        with self._lock:
            manager = self._managers.get((proxy, verify))
            if manager is None:
                options: dict[str, Any] = {
                    "num_pools": 64,
                    # Both thread pools may hold a connection to one host at once.
                    "maxsize": 2 * self._max_connections,
                    "timeout": self._timeout,
                    "ssl_context": self._context(verify),
                }
                if proxy is None:
                    manager = urllib3.PoolManager(**options)
                else:
                    manager = urllib3.ProxyManager(proxy.url, proxy_headers=dict(proxy.headers), **options)
                manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
                self._managers[(proxy, verify)] = manager
        return manager

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; the answer's body is read (up to ``max_body``) unless the
        request streams a 2xx answer. A cancelled caller cuts the request."""
        exchange = _Exchange()
        with self._lock:
            if self._closed:
                raise RuntimeError("RoundTripper used after close()")
            self._live.add(exchange)
        loop = asyncio.get_running_loop()
        pool = self._blobs if request.blob else self._requests
        try:
            return await loop.run_in_executor(pool, self._exchange, exchange, request)
        except asyncio.CancelledError:
            exchange.abort()
            raise
        finally:
            with self._lock:
                self._live.discard(exchange)

    def _exchange(self, exchange: _Exchange, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        proxy = proxy_for(parts.scheme, parts.netloc)
        _current.exchange = exchange
        try:
            raw = self._manager(proxy, request.verify).urlopen(
                request.method,
                request.url,
                body=request.body,
                headers={"User-Agent": "cloudops", **request.headers},
                redirect=False,
                retries=_REPLAY if request.replayable and request.method in IDEMPOTENT else False,
                preload_content=False,
                decode_content=False,
            )
        except RegistryError:
            exchange.done()
            raise  # from a streamed body: its reader failed or was stopped
        except NETWORK_ERRORS as exc:
            exchange.done()
            if exchange.aborted.is_set():
                raise Aborted from None
            raise _failure(exc, request.url, proxy) from None
        finally:
            _current.exchange = None
        response = HttpResponse(raw.status, raw.headers, request.url, proxy)
        response._raw, response._exchange = raw, exchange
        if request.stream and 200 <= raw.status < 300:
            return response
        body = bytearray()
        try:
            while len(body) <= request.max_body:  # to the end, or one byte past the limit
                chunk = response.read(min(READ_CHUNK, request.max_body + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
        except BaseException:
            response.close()
            raise
        if len(body) > request.max_body:
            response.body, response.truncated = bytes(body[: request.max_body]), True
            response.close()  # the rest is never read: the connection is spent
        else:
            response.body = bytes(body)
            response.release()
        return response

    async def run(self, call: Callable[[], T], *, blob: bool = True) -> T:
        """Run blocking work (reading a streamed body) on this run's worker threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._blobs if blob else self._requests, call)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live)
        for exchange in live:
            exchange.abort()

        def stop() -> None:
            # Aborted requests end at once (their sockets are shut down); waiting means no
            # thread outlives the run and touches a closed pool.
            self._requests.shutdown(wait=True, cancel_futures=True)
            self._blobs.shutdown(wait=True, cancel_futures=True)
            for manager in self._managers.values():
                manager.clear()

        await asyncio.to_thread(stop)


def shutdown(conn: HTTPConnection) -> None:
    """Cut a connection from another thread: a blocked read or write in its thread fails.
    socket.socket's own shutdown, not SSLSocket's: that one drops the TLS layer first, and
    a write racing it would go out in plain text."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _failure(exc: BaseException, url: str, proxy: Proxy | None) -> RegistryError:
    """A typed error for a request that got no answer, chosen by exception type."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        return _failure(exc.reason, url, proxy)
    host = urlsplit(url).netloc
    if isinstance(exc, ProxyError):
        cause = exc.original_error if isinstance(exc.original_error, BaseException) else exc
        unreachable = isinstance(cause, NewConnectionError | ConnectionError | TimeoutError)
        error = RegistryUnreachableError(
            f"the proxy {proxy.url if proxy else '(from the environment)'} failed to reach {host} "
            f"({'cannot connect to the proxy' if unreachable else _tunnel_refusal(cause)})",
            hint=f"check {proxy.variable if proxy else 'HTTPS_PROXY/HTTP_PROXY'} and the proxy's "
            f"access rules, or add {host.split(':')[0]} to NO_PROXY",
            kind="input",
        )
        # A proxy that is not there may come back; one that said no will say it again.
        return error if unreachable else _final(error)
    via = f" through the proxy {proxy.url}" if proxy else ""
    if isinstance(exc, NameResolutionError):
        return _final(
            RegistryUnreachableError(
                f"cannot resolve registry host {host}",
                hint="check the host name in the image reference",
                kind="input",
            )
        )
    if isinstance(exc, SSLError):
        found = exc.args[0] if exc.args and isinstance(exc.args[0], ssl.SSLError) else exc.__context__
        if isinstance(found, ssl.SSLCertVerificationError):
            return _final(
                RegistryUnreachableError(
                    f"the TLS certificate of {host} could not be verified",
                    hint="pass --ca-bundle FILE with the CA that signed it, or --insecure-registry "
                    f"{host} to skip verification",
                    kind="input",
                )
            )
        if isinstance(found, ssl.SSLError) and found.reason in NOT_TLS:
            return InsecureRegistryError(
                f"{host} does not speak HTTPS (it looks like a plain-HTTP registry)",
                hint=f"if you trust the network, pass --insecure-registry {host}",
            )
        return RegistryUnreachableError(
            f"the TLS handshake with {host}{via} failed", hint="check the host and port"
        )
    if isinstance(exc, NewConnectionError):  # before its base class, ConnectTimeoutError
        return RegistryUnreachableError(
            f"cannot connect to registry {host}{via}",
            hint="check the host and port, and that the registry is running",
        )
    if isinstance(exc, ReadTimeoutError | urllib3.exceptions.TimeoutError | TimeoutError):
        return RegistryUnreachableError(
            f"timed out talking to registry {host}{via}", hint="check the network; retries ran out"
        )
    if isinstance(exc, ValueError | urllib3.exceptions.LocationParseError):
        # http.client refuses a header with a line break in it (one a registry's answer
        # tried to smuggle into the next request), or a host name it cannot encode.
        return _final(RegistryError(f"refused to send a malformed request to {host}", kind="input"))
    return RegistryUnreachableError(
        f"connection to registry {host}{via} broke ({type(exc).__name__})",
        hint="the network or the registry dropped the connection; retries ran out",
    )


def _final(error: RegistryError) -> RegistryError:
    error.retryable = False
    return error


def _tunnel_refusal(cause: BaseException) -> str:
    """What a proxy answered to CONNECT: urllib3 keeps only its status line, in the text
    of an OSError ("Tunnel connection failed: 403 Forbidden"); shown bounded, and the CLI
    prints it as plain text (cli/output.py)."""
    text = str(cause)
    if "Tunnel connection failed:" in text:
        return "it refused the tunnel: " + text.split("Tunnel connection failed:", 1)[1].strip()[:80]
    return type(cause).__name__
