"""The bulk data path: a blob's bytes go registry to registry on a worker thread, over
blocking sockets (http.client), never through the event loop.

Why: on the 2-core machines we copy with, a bulk copy is CPU-bound, and the Python HTTP
stacks are most of the cost. For the 42 blobs / 272 MB of benchmarks/copy_bench.py, moving
the bytes cost 1.3-1.7 CPU-seconds through httpx, 0.5-0.7 through aiohttp, and about 0.3
(plus 0.2 for sha256) here: ``recv_into`` a reused buffer, ``sha256.update`` and
``sendall`` are each one C call that releases the GIL, so several blobs move at once on
both cores with almost no Python per megabyte.

Everything else (auth challenges, token refresh, manifests, opening an upload) stays on
the async httpx transport; this path is handed the URL and the credentials that transport
established (:class:`BlobEndpoint`). A 401 or an expired-token 403 here is raised as
retryable, and the caller drops that side's credentials, so the whole-blob retry
re-authenticates through httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import select
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

from cloudops.registry.errors import (
    AuthenticationError,
    RegistryError,
    RegistryUnreachableError,
    TokenExpiredError,
    error_for_status,
)

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
T = TypeVar("T")


class ChunkCheck(Protocol):
    """Verifies the bytes as they pass (the copy engine's sha256 and size check).
    ``finish`` raises when the whole is wrong; the last chunk is sent only after it."""

    def update(self, chunk: memoryview) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class BlobEndpoint:
    """One side of a blob transfer: where, with which headers, named how in messages."""

    url: str
    headers: dict[str, str]
    host: str
    what: str
    verify: ssl.SSLContext | bool = True
    forget_credentials: Callable[[], None] = field(default=lambda: None, compare=False)
    """Called (on the event loop) when this side refused the credentials it was given."""


class _Aborted(Exception):
    pass


class BlobMover:
    """Worker threads and idle keep-alive connections shared by every host of a run."""

    def __init__(self, *, workers: int, connect_timeout: float, read_timeout: float):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloudops-blob")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._contexts: dict[int, ssl.SSLContext] = {}
        self._live: set[_BlobPipe] = set()
        self._closed = False

    async def move(
        self,
        source: BlobEndpoint,
        target: BlobEndpoint,
        size: int,
        check: ChunkCheck,
        advanced: Callable[[int], None] | None = None,
    ) -> dict[str, str]:
        """GET ``source`` and stream it into the PUT of ``target`` (``size`` bytes, every
        chunk passed through ``check``); returns the PUT's response headers (lower-case).
        A cancelled caller aborts the transfer: the PUT is cut short, never committed."""
        loop = asyncio.get_running_loop()
        report = None
        if advanced is not None:
            callback = advanced

            def report(nbytes: int) -> None:
                loop.call_soon_threadsafe(callback, nbytes)

        pipe = _BlobPipe(self, source, target, size, check, report)
        with self._lock:
            if self._closed:
                raise RuntimeError("BlobMover used after close()")
            self._live.add(pipe)
        try:
            return await loop.run_in_executor(self._executor, pipe.run)
        except asyncio.CancelledError:
            pipe.abort()
            raise
        except RegistryError as error:
            if error.status in (401, 403) and pipe.failed_side is not None:
                pipe.failed_side.forget_credentials()
            raise
        finally:
            with self._lock:
                self._live.discard(pipe)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live)
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for pipe in live:
            pipe.abort()
        # Aborted pipes end at once (their sockets are shut down); wait so that no
        # thread outlives the run and touches a closed connection.
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
        for conn in idle:
            conn.close()

    # -- connections (called on worker threads) ----------------------------------------

    def _context(self, verify: ssl.SSLContext | bool) -> ssl.SSLContext:
        if isinstance(verify, ssl.SSLContext):
            return verify
        with self._lock:
            context = self._contexts.get(int(verify))
            if context is None:
                context = ssl.create_default_context()
                if not verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._contexts[int(verify)] = context
        return context

    def _key(self, scheme: str, netloc: str, verify: ssl.SSLContext | bool) -> tuple[str, str, int]:
        return scheme, netloc, id(verify) if isinstance(verify, ssl.SSLContext) else int(verify)

    def connection(
        self, scheme: str, netloc: str, verify: ssl.SSLContext | bool
    ) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get(self._key(scheme, netloc, verify)) or []
        while idle:
            with self._lock:
                reused = idle.pop() if idle else None
            if reused is None:
                break
            if not _dropped(reused):
                return reused
            reused.close()  # the server closed it while idle (a keep-alive timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                netloc, timeout=self._connect_timeout, context=self._context(verify)
            )
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self._connect_timeout)
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(self._read_timeout)
        return conn

    def release(
        self, scheme: str, netloc: str, verify: ssl.SSLContext | bool, conn: http.client.HTTPConnection
    ) -> None:
        """Keep a connection whose last response was read to the end."""
        with self._lock:
            if not self._closed and conn.sock is not None:
                self._idle.setdefault(self._key(scheme, netloc, verify), []).append(conn)
                return
        conn.close()


class _BlobPipe:
    """One blob: GET (following redirects by hand, so that credentials never leave the
    registry's host: ECR redirects blob reads to S3, which refuses a second auth), then
    one PUT with Content-Length whose body is the GET's bytes, a chunk behind, so the
    last chunk is sent only once ``check`` has passed the whole."""

    def __init__(
        self,
        mover: BlobMover,
        source: BlobEndpoint,
        target: BlobEndpoint,
        size: int,
        check: ChunkCheck,
        advanced: Callable[[int], None] | None,
    ):
        self._mover = mover
        self._source = source
        self._target = target
        self._size = size
        self._check = check
        self._advanced = advanced
        self._aborted = threading.Event()
        self._active: list[http.client.HTTPConnection] = []
        self.failed_side: BlobEndpoint | None = None

    def abort(self) -> None:
        """From any thread: stop at once (a blocked read or write fails)."""
        self._aborted.set()
        for conn in list(self._active):
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> dict[str, str]:
        try:
            return self._run()
        except _Aborted:
            raise RegistryUnreachableError("blob transfer aborted") from None
        finally:
            for conn in self._active:
                conn.close()
            self._active.clear()

    def _open(self, url: str, verify: ssl.SSLContext | bool) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if self._aborted.is_set():
            raise _Aborted
        conn = self._mover.connection(parts.scheme, parts.netloc, verify)
        self._active.append(conn)
        return conn, path

    def _release(self, url: str, verify: ssl.SSLContext | bool, conn: http.client.HTTPConnection) -> None:
        self._active.remove(conn)
        parts = urlsplit(url)
        self._mover.release(parts.scheme, parts.netloc, verify, conn)

    def _get(self) -> tuple[http.client.HTTPResponse, str, http.client.HTTPConnection]:
        source = self._source
        origin = urlsplit(source.url).netloc
        url, headers = source.url, dict(source.headers)
        for _ in range(MAX_REDIRECTS + 1):
            conn, path = self._guard(source, partial(self._open, url, source.verify))
            response = self._guard(source, partial(_request, conn, "GET", path, headers))
            location = response.getheader("Location")
            if response.status in REDIRECTS and location:
                self._drain(response, url, conn)
                url = urljoin(url, location)
                if urlsplit(url).netloc != origin:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                continue
            if response.status != 200:
                raise self._status_error(source, response)
            return response, url, conn
        raise RegistryError(f"{source.host}: too many redirects reading {source.what}")

    def _run(self) -> dict[str, str]:
        source, target = self._source, self._target
        response, source_url, source_conn = self._get()
        put_conn, path = self._guard(target, partial(self._open, target.url, target.verify))
        put_headers = {
            **target.headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(self._size),
            "User-Agent": "cloudops",
        }
        self._guard(target, partial(_send_head, put_conn, "PUT", path, put_headers))
        buffers = (bytearray(CHUNK), bytearray(CHUNK))
        pending: memoryview | None = None
        turn = 0
        while True:
            if self._aborted.is_set():
                raise _Aborted
            buffer = buffers[turn & 1]
            nbytes = self._guard(source, partial(response.readinto, buffer))
            if not nbytes:
                break
            chunk = memoryview(buffer)[:nbytes]
            self._check.update(chunk)
            if pending is not None:
                self._send(put_conn, pending)
            pending = chunk
            turn += 1
        if response.length:  # the connection ended before the declared Content-Length
            self.failed_side = source
            raise _broken(source, "ended early")
        self._drain(response, source_url, source_conn)
        self._check.finish()
        if pending is not None:
            self._send(put_conn, pending)
        answer = self._guard(target, put_conn.getresponse)
        if answer.status != 201:
            raise self._status_error(target, answer)
        answer.read()
        self._release(target.url, target.verify, put_conn)
        return {k.lower(): v for k, v in answer.getheaders()}

    def _send(self, conn: http.client.HTTPConnection, chunk: memoryview) -> None:
        try:
            if self._aborted.is_set():
                raise _Aborted
            conn.send(chunk)
        except OSError as exc:
            if self._aborted.is_set():
                raise _Aborted from None
            # The registry may have answered early (a refusal) and closed: say what it said.
            try:
                answer = conn.getresponse()
            except (OSError, http.client.HTTPException):
                self.failed_side = self._target
                raise _broken(self._target, type(exc).__name__) from None
            raise self._status_error(self._target, answer) from None
        if self._advanced is not None:
            self._advanced(len(chunk))

    def _guard(self, side: BlobEndpoint, call: Callable[[], T]) -> T:
        try:
            return call()
        except (OSError, http.client.HTTPException) as exc:
            if self._aborted.is_set():
                raise _Aborted from None
            self.failed_side = side
            raise _broken(side, _describe(exc)) from None

    def _drain(self, response: http.client.HTTPResponse, url: str, conn: http.client.HTTPConnection) -> None:
        """Finish a source response and keep its connection when it can be reused."""
        try:
            response.read()
        except (OSError, http.client.HTTPException):
            return  # closed with the pipe
        self._release(url, self._source.verify, conn)

    def _status_error(self, side: BlobEndpoint, response: http.client.HTTPResponse) -> RegistryError:
        self.failed_side = side
        try:
            body = response.read(MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException):
            body = b""
        error = error_for_status(
            response.status,
            body,
            what=side.what,
            host=side.host,
            retry_after=response.getheader("Retry-After"),
        )
        if isinstance(error, AuthenticationError | TokenExpiredError) or (
            response.status == 403 and not error.codes
        ):
            # Credentials set up over httpx went stale: the whole-blob retry re-authenticates.
            error.retryable = True
        return error


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]
) -> http.client.HTTPResponse:
    _send_head(conn, method, path, headers)
    return conn.getresponse()


def _send_head(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]) -> None:
    # No Accept-Encoding: blob bytes must arrive exactly as stored (their digest).
    conn.putrequest(method, path, skip_accept_encoding=True)
    headers = {"User-Agent": "cloudops", **headers}
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection the server has closed reads as ready (EOF); so
    would one with stray bytes. Either way it must not carry the next request (urllib3's
    is_connection_dropped does the same)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return type(exc).__name__


def _broken(side: BlobEndpoint, how: str) -> RegistryUnreachableError:
    return RegistryUnreachableError(
        f"{side.what} on {side.host} broke ({how})",
        hint="the connection dropped mid-blob; retries ran out",
    )
