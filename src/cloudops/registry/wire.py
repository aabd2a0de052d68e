"""The wire under the registry client: blocking HTTP/1.1 (http.client) on worker threads,
keep-alive connections shared by every host of a run.

Why not httpx's own transport: a copy on the 2-core machines we run on is CPU-bound, and
httpcore (anyio, h11, a pool scan of every connection per request) costs 1.7-3.5 ms of
CPU per small request, measured against distribution's registry; the same request over
http.client on a worker thread costs ~0.9 ms, and the event loop thread stays free (in
epoll, GIL released) for the threads moving blob bytes (registry/bulk.py). httpx stays
the API the client code is written against: :class:`WireTransport` plugs in under
``httpx.AsyncClient`` (auth, redirects and error mapping are unchanged).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import select
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx

T = TypeVar("T")

MAX_BODY = 8 * 1024 * 1024
"""What a non-blob response may hold: manifests are at most 4 MiB (ECR's limit), tag
pages, tokens and errors far less. A longer body is cut there and reading past the cut
fails (the caller refuses it before, by its Content-Length, or after MAX_MANIFEST_BYTES)."""

Key = tuple[str, str, int]
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Requests sent again, at once, when a kept-alive connection turns out dead under them
(RFC 9110 9.2.2); others are left to the retry policy."""


class Operation:
    """Something running on a worker thread over connections that :meth:`abort` can cut
    from the event loop's thread (a cancelled caller, a run ending)."""

    def __init__(self) -> None:
        self.aborted = threading.Event()
        self.connections: list[http.client.HTTPConnection] = []

    def abort(self) -> None:
        self.aborted.set()
        for conn in list(self.connections):
            shutdown(conn)

    def close_all(self) -> None:
        for conn in self.connections:
            conn.close()
        self.connections.clear()


class Wire:
    """Connections and worker threads for one run (one :class:`RegistryPool`)."""

    def __init__(self, *, workers: int, connect_timeout: float, read_timeout: float):
        # Two pools: blob transfers hold a thread for seconds and must not queue the small
        # requests (opening the next upload, pushing a manifest) behind them.
        self._requests = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloudops-http")
        self._blobs = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloudops-blob")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._lock = threading.Lock()
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._live: set[Operation] = set()
        self._closed = False

    async def run(self, operation: Operation, call: Callable[[], T], *, blob: bool = False) -> T:
        """Run ``call`` on a worker thread; a cancelled caller aborts ``operation``."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Wire used after close()")
            self._live.add(operation)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._blobs if blob else self._requests, call)
        except asyncio.CancelledError:
            operation.abort()
            raise
        finally:
            with self._lock:
                self._live.discard(operation)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live)
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for operation in live:
            operation.abort()

        def shutdown() -> None:
            # Aborted operations end at once (their sockets are shut down); waiting means
            # no thread outlives the run and touches a closed connection.
            self._requests.shutdown(wait=True, cancel_futures=True)
            self._blobs.shutdown(wait=True, cancel_futures=True)

        await asyncio.to_thread(shutdown)
        for conn in idle:
            conn.close()

    # -- connections (called on worker threads) ----------------------------------------

    def connection(
        self,
        operation: Operation,
        scheme: str,
        netloc: str,
        verify: ssl.SSLContext | bool,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        fresh: bool = False,
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An open connection to ``scheme://netloc`` and whether it was reused."""
        if operation.aborted.is_set():
            raise ConnectionAbortedError("aborted")
        read = self.read_timeout if read_timeout is None else read_timeout
        key = _key(scheme, netloc, verify)
        while not fresh:
            with self._lock:
                idle = self._idle.get(key)
                reused = idle.pop() if idle else None
            if reused is None:
                break
            if _dropped(reused):
                reused.close()  # the server closed it while idle (a keep-alive timeout)
                continue
            if reused.sock is not None:
                reused.sock.settimeout(read)
            operation.connections.append(reused)
            return reused, True
        timeout = self.connect_timeout if connect_timeout is None else connect_timeout
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._context(verify))
        else:
            conn = http.client.HTTPConnection(netloc, timeout=timeout)
        operation.connections.append(conn)
        try:
            conn.connect()
        except ValueError as exc:  # an unusable host name (IDNA: a label over 63 characters)
            conn.close()
            raise ConnectionError(f"bad host {netloc!r}: {exc}") from exc
        if operation.aborted.is_set():  # aborted while connecting: abort() saw no socket
            conn.close()
            raise ConnectionAbortedError("aborted")
        if conn.sock is not None:
            conn.sock.settimeout(read)
        return conn, False

    def release(
        self,
        operation: Operation,
        scheme: str,
        netloc: str,
        verify: ssl.SSLContext | bool,
        conn: http.client.HTTPConnection,
    ) -> None:
        """Keep a connection whose last response was read to the end."""
        operation.connections.remove(conn)
        with self._lock:
            if not self._closed and conn.sock is not None and not operation.aborted.is_set():
                self._idle.setdefault(_key(scheme, netloc, verify), []).append(conn)
                return
        conn.close()

    def _context(self, verify: ssl.SSLContext | bool) -> ssl.SSLContext:
        if isinstance(verify, ssl.SSLContext):
            return verify
        with self._lock:
            context = self._contexts.get(verify)
            if context is None:
                if verify:
                    context = ssl.create_default_context()  # loads the system CAs: ~40 ms
                else:
                    # --insecure-registry: no verification, so no CA store to load.
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._contexts[verify] = context
        return context


class WireTransport(httpx.AsyncBaseTransport):
    """httpx's transport for one registry host, over :class:`Wire`. Bodies (both ways)
    are small here: blob bytes take registry/bulk.py instead."""

    def __init__(self, wire: Wire, verify: ssl.SSLContext | bool):
        self._wire = wire
        self._verify = verify

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        timeouts = request.extensions.get("timeout", {})
        operation = Operation()
        exchange = _Exchange(self._wire, operation, request, body, self._verify, timeouts)
        try:
            status, reason, headers, content = await self._wire.run(operation, exchange.run)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        return httpx.Response(
            status,
            # As bytes: http.client decoded them as latin-1, and httpx would encode text
            # headers as ASCII (an S3 x-amz-meta-* header may not be).
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            stream=_Body(content),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason.encode("latin-1")},
        )

    async def aclose(self) -> None:
        pass  # the Wire owns the connections


class _Exchange:
    """One request and its response, on a worker thread."""

    def __init__(
        self,
        wire: Wire,
        operation: Operation,
        request: httpx.Request,
        body: bytes,
        verify: ssl.SSLContext | bool,
        timeouts: dict[str, float | None],
    ):
        self._wire = wire
        self._operation = operation
        self._method = request.method
        self._scheme = request.url.scheme
        self._netloc = request.url.netloc.decode("ascii")
        self._target = request.url.raw_path.decode("ascii")
        self._headers = request.headers.raw
        self._body = body
        self._verify = verify
        self._connect_timeout = timeouts.get("connect")
        self._read_timeout = timeouts.get("read")

    def run(self) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for fresh in (False, True):
            conn, reused = self._connect(fresh)
            try:
                self._send(conn)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused and self._method in IDEMPOTENT and not self._operation.aborted.is_set():
                    continue  # a kept-alive connection the server had just closed: once more, fresh
                raise _read_error(exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _read_error(exc) from exc
            except ValueError as exc:  # a header http.client refuses (a line break in it)
                conn.close()
                raise httpx.LocalProtocolError(f"{type(exc).__name__}: {exc}") from exc
            try:
                content = response.read(MAX_BODY + 1)
                if response.length and len(content) <= MAX_BODY:  # http.client says nothing
                    raise http.client.IncompleteRead(content, response.length)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _read_error(exc) from exc
            if response.isclosed():
                self._wire.release(self._operation, self._scheme, self._netloc, self._verify, conn)
            else:
                conn.close()  # over MAX_BODY: the rest is never read, the connection is spent
            return response.status, response.reason, response.getheaders(), content
        raise AssertionError("unreachable")

    def _connect(self, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        try:
            return self._wire.connection(
                self._operation,
                self._scheme,
                self._netloc,
                self._verify,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                fresh=fresh,
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {self._netloc} timed out") from exc
        except OSError as exc:
            # The message keeps the cause's text: transport.py tells a plain-HTTP registry
            # (WRONG_VERSION_NUMBER) and an unknown host from it.
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc

    def _send(self, conn: http.client.HTTPConnection) -> None:
        # httpx has set Host, Accept-Encoding and Content-Length already.
        conn.putrequest(self._method, self._target, skip_host=True, skip_accept_encoding=True)
        for name, value in self._headers:
            conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
        conn.endheaders(self._body or None)


class _Body(httpx.AsyncByteStream):
    def __init__(self, content: bytes):
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if len(self._content) > MAX_BODY:
            yield self._content[:MAX_BODY]
            raise httpx.ReadError(f"response body over {MAX_BODY} bytes: not read further")
        if self._content:
            yield self._content


def _read_error(exc: BaseException) -> httpx.TransportError:
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout("timed out waiting for the registry")
    if isinstance(exc, http.client.HTTPException) and not isinstance(exc, http.client.RemoteDisconnected):
        return httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}")
    return httpx.ReadError(f"{type(exc).__name__}: {exc}")


def shutdown(conn: http.client.HTTPConnection) -> None:
    """Cut a connection from another thread: a blocked read or write in its thread fails.
    socket.socket's own shutdown, not SSLSocket's: that one drops the TLS layer first, and
    a write racing it would go out in plain text."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _key(scheme: str, netloc: str, verify: ssl.SSLContext | bool) -> Key:
    return scheme, netloc, id(verify) if isinstance(verify, ssl.SSLContext) else int(verify)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection the server has closed reads as ready (EOF); so would
    one with stray bytes. Either way it must not carry the next request (urllib3's
    is_connection_dropped does the same)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        poller = select.poll()  # not select(): it refuses file descriptors over 1023
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
