"""The bulk data path: a blob's bytes go registry to registry on a worker thread, over
blocking sockets (registry/wire.py), never through the event loop.

Why: on the 2-core machines we copy with, a bulk copy is CPU-bound, and the Python HTTP
stacks were most of the cost. For the 42 blobs / 272 MB of benchmarks/copy_bench.py, moving
the bytes cost 1.3-1.7 CPU-seconds through httpx, 0.5-0.7 through aiohttp, and about 0.3
(plus 0.2 for sha256) here: ``recv_into`` a reused buffer, ``sha256.update`` and
``sendall`` are each one C call that releases the GIL, so several blobs move at once on
both cores with almost no Python per megabyte.

Auth challenges, token refresh and opening the upload stay with the registry transport
(registry/transport.py); this path is handed the URLs and the credentials it established
(:class:`BlobEndpoint`). A 401 or an expired-token 403 here is raised as retryable, and
that side's credentials are dropped, so the whole-blob retry re-authenticates.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import queue
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
from cloudops.registry.wire import Operation, Wire, shutdown

CHUNK = 1024 * 1024
BUFFERS = 4
READ_AHEAD = 4
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
    """One side of a blob transfer: where, with which headers, named how in messages.

    Built only by RegistryReader._endpoint, through RegistryTransport.url: the URL has
    passed the credential rule (registry/trust.py) before these headers go anywhere. A
    redirect of a blob read is followed here without them once the origin changes."""

    url: str
    headers: dict[str, str]
    host: str
    what: str
    verify: ssl.SSLContext | bool = True
    forget_credentials: Callable[[], None] = field(default=lambda: None, compare=False)
    """Called (on the event loop) when this side refused the credentials it was given."""


class _Aborted(Exception):
    pass


async def move_blob(
    wire: Wire,
    source: BlobEndpoint,
    target: BlobEndpoint,
    size: int,
    check: ChunkCheck,
    advanced: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """GET ``source`` and stream it into the PUT of ``target`` (``size`` bytes, every chunk
    passed through ``check``); returns the PUT's response headers (lower-case). A
    cancelled caller aborts the transfer: the PUT is cut short, never committed."""
    report = None
    if advanced is not None:
        loop, callback = asyncio.get_running_loop(), advanced

        def report(nbytes: int) -> None:
            loop.call_soon_threadsafe(callback, nbytes)

    pipe = _BlobPipe(wire, source, target, size, check, report)
    try:
        return await wire.run(pipe, pipe.run, blob=True)
    except RegistryError as error:
        if error.status in (401, 403) and pipe.failed_side is not None:
            pipe.failed_side.forget_credentials()
        raise


@asynccontextmanager
async def read_blob(wire: Wire, source: BlobEndpoint) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream a blob's bytes (unverified) from a worker thread: ``async with read_blob(...)
    as chunks: async for chunk in chunks``. At most READ_AHEAD chunks wait in memory.
    Leaving the block early stops the read."""
    loop = asyncio.get_running_loop()
    waiting: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=READ_AHEAD)
    fetch = _BlobFetch(wire, source)

    def deliver(item: bytes | BaseException | None) -> None:  # on the worker thread
        asyncio.run_coroutine_threadsafe(waiting.put(item), loop).result()

    task = asyncio.ensure_future(wire.run(fetch, partial(fetch.run, deliver), blob=True))

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            item = await waiting.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, RegistryError) and item.status in (401, 403):
                    source.forget_credentials()  # the caller's retry re-authenticates
                raise item
            yield item

    try:
        yield chunks()
    finally:
        if not task.done():
            fetch.abort()
            while not task.done():  # let a worker blocked in deliver() see the abort
                while not waiting.empty():
                    waiting.get_nowait()
                await asyncio.wait({task}, timeout=0.05)
        with contextlib.suppress(Exception):
            task.result()


class _BlobGet(Operation):
    """GET of one blob, following redirects by hand so that credentials never leave the
    registry's host (ECR redirects blob reads to S3, which refuses a second auth)."""

    def __init__(self, wire: Wire, source: BlobEndpoint):
        super().__init__()
        self._wire = wire
        self._source = source
        self.failed_side: BlobEndpoint | None = None

    def _get(
        self,
    ) -> tuple[http.client.HTTPResponse, str, http.client.HTTPConnection, ssl.SSLContext | bool]:
        """The 200 answer, the URL and connection that gave it, and the TLS setting used
        for that connection (verified once a redirect left the registry's host)."""
        source = self._source
        start = urlsplit(source.url)
        origin = (start.scheme, start.netloc)
        url, headers, verify = source.url, dict(source.headers), source.verify
        for _ in range(MAX_REDIRECTS + 1):
            conn, path = self._guard(source, partial(self._open, url, verify))
            response = self._guard(source, partial(_request, conn, "GET", path, headers))
            location = response.getheader("Location")
            if response.status in REDIRECTS and location:
                self._drain(response, url, conn, verify)
                url = self._guard(source, partial(urljoin, url, location))
                target = urlsplit(url)
                if target.scheme not in ("http", "https"):
                    raise RegistryError(f"{source.host} redirected {source.what} to a {target.scheme!r} URL")
                if (target.scheme, target.netloc) != origin:
                    # Credentials never leave the registry's own host and scheme (ECR sends
                    # blob reads to S3, which refuses a second auth).
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                    # --insecure-registry names the registry's host, not where it sends
                    # reads: another host's TLS is verified (docs/security.md).
                    if verify is False:
                        verify = True
                continue
            if response.status != 200:
                raise self._status_error(source, response)
            return response, url, conn, verify
        raise RegistryError(f"{source.host}: too many redirects reading {source.what}")

    def _open(self, url: str, verify: ssl.SSLContext | bool) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        conn, _ = self._wire.connection(self, parts.scheme, parts.netloc, verify)
        return conn, parts.path + (f"?{parts.query}" if parts.query else "")

    def _release(self, url: str, verify: ssl.SSLContext | bool, conn: http.client.HTTPConnection) -> None:
        parts = urlsplit(url)
        self._wire.release(self, parts.scheme, parts.netloc, verify, conn)

    def _guard(self, side: BlobEndpoint, call: Callable[[], T]) -> T:
        try:
            return call()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if self.aborted.is_set():
                raise _Aborted from None
            self.failed_side = side
            raise _broken(side, _describe(exc)) from None

    def _drain(
        self,
        response: http.client.HTTPResponse,
        url: str,
        conn: http.client.HTTPConnection,
        verify: ssl.SSLContext | bool,
    ) -> None:
        """Finish a source response and keep its connection when it can be reused."""
        try:
            response.read()
        except (OSError, http.client.HTTPException):
            return  # closed with the pipe
        self._release(url, verify, conn)

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
            # Credentials set up by the transport went stale: the whole-blob retry
            # re-authenticates.
            error.retryable = True
        return error


class _BlobFetch(_BlobGet):
    """A blob's bytes handed, chunk by chunk, to a consumer on the event loop."""

    def run(self, deliver: Callable[[bytes | BaseException | None], None]) -> None:
        """Every chunk, then None; or the exception that ended the read. ``deliver``
        blocks while the consumer is behind (memory stays bounded)."""
        try:
            response, url, conn, verify = self._get()
            while True:
                if self.aborted.is_set():
                    raise _Aborted
                chunk = self._guard(self._source, partial(response.read, CHUNK))
                if not chunk:
                    break
                deliver(chunk)
            if response.length:  # the connection ended before the declared Content-Length
                self.failed_side = self._source
                raise _broken(self._source, "ended early")
            self._drain(response, url, conn, verify)
            deliver(None)
        except _Aborted:
            pass  # the consumer left: nobody is listening
        except BaseException as exc:
            deliver(exc)
        finally:
            self.close_all()


class _BlobPipe(_BlobGet):
    """One blob registry to registry: the GET, then one PUT with Content-Length whose
    body is the GET's bytes, a few chunks behind, so the last chunk is sent only once
    ``check`` has passed the whole."""

    def __init__(
        self,
        wire: Wire,
        source: BlobEndpoint,
        target: BlobEndpoint,
        size: int,
        check: ChunkCheck,
        advanced: Callable[[int], None] | None,
    ):
        super().__init__(wire, source)
        self._target = target
        self._size = size
        self._check = check
        self._advanced = advanced

    def run(self) -> dict[str, str]:
        try:
            return self._run()
        except _Aborted:
            raise RegistryUnreachableError("blob transfer aborted") from None
        finally:
            self.close_all()

    def _run(self) -> dict[str, str]:
        target = self._target
        response, source_url, source_conn, source_verify = self._get()
        put_conn, path = self._guard(target, partial(self._open, target.url, target.verify))
        put_headers = {
            **target.headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(self._size),
        }
        self._guard(target, partial(_send_head, put_conn, "PUT", path, put_headers))
        # Reading (and hashing) runs on a thread of its own, a few chunks ahead of the
        # sending: a single big layer then moves at the speed of the slower side, not at
        # the sum of both (1 GiB: 115 -> 150+ MiB/s). Memory: BUFFERS chunks per blob.
        free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(BUFFERS):
            free.put(bytearray(CHUNK))
        ready: queue.SimpleQueue[tuple[memoryview, bytearray] | BaseException | None] = queue.SimpleQueue()
        stop = threading.Event()
        reader = threading.Thread(
            target=self._read, args=(response, free, ready, stop), name="cloudops-blob-read", daemon=True
        )
        reader.start()
        try:
            pending: tuple[memoryview, bytearray] | None = None
            while True:
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    break  # every byte read and ``check`` passed the whole
                if pending is not None:
                    self._send(put_conn, pending[0])
                    free.put(pending[1])
                pending = item
            reader.join()
            self._drain(response, source_url, source_conn, source_verify)
            if pending is not None:
                self._send(put_conn, pending[0])
        finally:
            if reader.is_alive():
                stop.set()
                free.put(bytearray(0))  # wakes a reader waiting for a buffer
                shutdown(source_conn)  # wakes a reader blocked on the socket
                reader.join()
        answer = self._guard(target, put_conn.getresponse)
        if answer.status != 201:
            raise self._status_error(target, answer)
        self._guard(target, answer.read)
        self._release(target.url, target.verify, put_conn)
        return {k.lower(): v for k, v in answer.getheaders()}

    def _read(
        self,
        response: http.client.HTTPResponse,
        free: queue.SimpleQueue[bytearray],
        ready: queue.SimpleQueue[tuple[memoryview, bytearray] | BaseException | None],
        stop: threading.Event,
    ) -> None:
        """The reading thread: chunks into ``ready``, then None once ``check`` passed, or
        the exception that ended it."""
        source = self._source
        try:
            while True:
                buffer = free.get()
                if stop.is_set() or self.aborted.is_set():
                    raise _Aborted
                nbytes = self._guard(source, partial(response.readinto, buffer))
                if not nbytes:
                    break
                chunk = memoryview(buffer)[:nbytes]
                self._check.update(chunk)
                ready.put((chunk, buffer))
            if response.length:  # the connection ended before the declared Content-Length
                self.failed_side = source
                raise _broken(source, "ended early")
            self._check.finish()
            ready.put(None)
        except BaseException as exc:  # handed to the sending thread, raised there
            ready.put(exc)

    def _send(self, conn: http.client.HTTPConnection, chunk: memoryview) -> None:
        try:
            if self.aborted.is_set():
                raise _Aborted
            conn.send(chunk)
        except OSError as exc:
            if self.aborted.is_set():
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


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]
) -> http.client.HTTPResponse:
    _send_head(conn, method, path, headers)
    return conn.getresponse()


def _send_head(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]) -> None:
    # No Accept-Encoding: blob bytes must arrive exactly as stored (their digest).
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in {"User-Agent": "cloudops", **headers}.items():
        conn.putheader(name, value)
    conn.endheaders()


def _describe(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__


def _broken(side: BlobEndpoint, how: str) -> RegistryUnreachableError:
    return RegistryUnreachableError(
        f"{side.what} on {side.host} broke ({how})",
        hint="the connection dropped mid-blob; retries ran out",
    )
