"""A fault-injecting HTTP proxy for tests: registry and S3 (moto) traffic passes through
it, and rules, per request pattern, answer 429 with Retry-After, answer 5xx, drop the
connection after N bytes of a request or response body, stall, answer ECR's 403 "token
expired" once, serve a body of their own, pass the request on but alter the answer
(``corrupt``: one byte of the body flipped, headers replaced: wrong bytes of the right
length; or bytes appended: a body longer than it claims to be), or stand in for a
registry that does not check what it stores (``accept_any_digest``: a blob upload PUT is
committed under the sha256 of the bytes that really arrived, whatever ``?digest=``
claimed, and every upload is recorded in :attr:`FaultProxy.uploads`). A rule can wait to
be armed by an earlier request (the read-back after a write).
It counts what passed and what it injected, and logs each request's headers.

The proxy is real (aiohttp server and client in a thread, streaming both ways); only the
faults are made up, which is the point.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp import web

Action = Literal[
    "status", "drop_request", "drop_response", "stall", "expired", "body", "corrupt", "accept_any_digest"
]
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
EXPIRED = (
    b'{"errors":[{"code":"DENIED","message":'
    b'"Your authorization token has expired. Reauthenticate and try again."}]}'
)


@dataclass
class Rule:
    action: Action
    path: str = ".*"
    """A regex searched in the request path (with its query)."""
    method: str | None = None
    status: int = 503
    retry_after: str | None = None
    after_bytes: int = 0
    """drop_request / drop_response: where the body is cut; corrupt: the offset of the body
    byte flipped (XOR 0x01, so the length stays right; -1 flips none)."""
    seconds: float = 3600.0
    times: int = 1
    """How many matching requests to hit; -1 means every one."""
    skip: int = 0
    """Let this many matching requests pass first."""
    body: bytes = b""
    """body: the answer's body; corrupt: bytes appended to the upstream's (and counted in
    its Content-Length)."""
    headers: dict[str, str] = field(default_factory=dict)
    """body: the answer's headers; corrupt: set over the upstream's ("" removes one)."""
    repeat: int = 1
    """body: the answer's body is ``body`` sent this many times, streamed (a body far
    larger than memory); :attr:`sent` counts the bytes the client took before it left."""
    chunked: bool = False
    """body: no Content-Length (chunked transfer encoding): only reading tells the size."""
    armed_by: tuple[str | None, str] | None = None
    """(method or None, path regex): the rule matches nothing until a request like that has
    passed the proxy and been answered 2xx (the read-back GET after the PUT it checks)."""
    seen: int = 0
    hits: int = 0
    sent: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return re.search(self.path, path) is not None

    def armed(self, log: list[LogEntry]) -> bool:
        if self.armed_by is None:
            return True
        method, pattern = self.armed_by
        return any(
            (method is None or e.method == method)
            and e.status is not None
            and 200 <= e.status < 300
            and re.search(pattern, e.path) is not None
            for e in log
        )

    def fires(self) -> bool:
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.times != -1 and self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass
class LogEntry:
    method: str
    path: str
    status: int | None
    fault: Action | None
    headers: dict[str, str] = field(default_factory=dict)
    """The request's headers, names in lower case."""


@dataclass
class Upload:
    """A blob upload PUT seen by an ``accept_any_digest`` rule."""

    path: str
    declared: int | None
    """Content-Length of the PUT."""
    received: int
    complete: bool
    """Every declared byte arrived (only then is anything passed on to the registry)."""
    claimed: str | None
    """The ``?digest=`` the client sent."""
    actual: str | None = None
    """The sha256 of the bytes received, when complete: what the registry committed."""
    status: int | None = None
    """The registry's answer to the passed-on PUT (201: committed)."""


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.port = 0  # bound to a port the system picks, read back when listening
        self.rules: list[Rule] = []
        self.log: list[LogEntry] = []
        self.uploads: list[Upload] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stalls: list[asyncio.Event] = []
        self._failed: BaseException | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def injected(self) -> int:
        with self._lock:
            return sum(1 for e in self.log if e.fault)

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
        self.release_stalls()

    def release_stalls(self) -> None:
        def wake() -> None:
            for event in self._stalls:
                event.set()
            self._stalls.clear()

        self._loop.call_soon_threadsafe(wake)

    @property
    def committed(self) -> list[Upload]:
        """Uploads that reached the registry whole and were answered 201."""
        with self._lock:
            return [u for u in self.uploads if u.complete and u.status == 201]

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(30) or self._failed is not None or not self.port:
            raise RuntimeError(f"the fault proxy for {self.upstream} did not start: {self._failed!r}")
        return self

    def stop(self) -> None:
        self.release_stalls()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- the server ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:
            self._failed = exc
            self._ready.set()

    def _serve(self) -> None:
        # A dropped connection is a fault we inject on purpose: not worth a logged traceback.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())

        async def make_session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))

        self._session = self._loop.run_until_complete(make_session())
        # Port 0: the listening socket owns its port from the start (no free-port race).
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = int(runner.addresses[0][1])
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._session.close())
        self._loop.run_until_complete(runner.cleanup())

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path) and rule.armed(self.log) and rule.fires():
                    return rule
        return None

    def _record(self, request: web.Request, path: str, status: int | None, fault: Action | None) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.log.append(LogEntry(request.method, path, status, fault, headers))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        rule = self._rule_for(request.method, path)
        fault = rule.action if rule else None
        if rule is not None and rule.action in ("status", "expired", "body"):
            await request.read()
            if rule.action == "expired":
                status, body, headers = 403, EXPIRED, {"Content-Type": "application/json"}
            elif rule.action == "body":
                status, body, headers = rule.status, rule.body, dict(rule.headers)
            else:
                status, body, headers = rule.status, b'{"errors":[{"code":"INJECTED","message":"fault"}]}', {}
                if rule.retry_after is not None:
                    headers["Retry-After"] = rule.retry_after
            self._record(request, path, status, fault)
            if rule.action == "body" and (rule.repeat != 1 or rule.chunked):
                return await self._stream_body(request, rule)
            return web.Response(
                status=status, body=body if request.method != "HEAD" else None, headers=headers
            )
        if rule is not None and rule.action == "stall":
            self._record(request, path, None, fault)
            event = asyncio.Event()
            self._stalls.append(event)
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), rule.seconds)
            raise ConnectionResetError  # the client sees a dead connection
        if rule is not None and rule.action == "accept_any_digest":
            return await self._accept_any_digest(request, path)

        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}

        async def body_stream():  # type: ignore[no-untyped-def]
            sent = 0
            async for chunk in request.content.iter_any():
                if (
                    rule is not None
                    and rule.action == "drop_request"
                    and sent + len(chunk) >= rule.after_bytes
                ):
                    request.transport.close()  # type: ignore[union-attr]
                    raise ConnectionResetError
                sent += len(chunk)
                yield chunk

        data = body_stream() if request.can_read_body else None
        if request.can_read_body and request.headers.get("Content-Length"):
            headers["Content-Length"] = request.headers["Content-Length"]
        try:
            async with self._session.request(
                request.method, self.upstream + path, headers=headers, data=data, allow_redirects=False
            ) as upstream:
                out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
                if "Location" in out_headers:
                    out_headers["Location"] = out_headers["Location"].replace(
                        self.upstream.split("://", 1)[1], self.host
                    )
                if rule is not None and rule.action == "corrupt":
                    _override(out_headers, rule.headers)
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                if upstream.headers.get("Content-Length") is not None:
                    response.content_length = int(upstream.headers["Content-Length"])
                    if rule is not None and rule.action == "corrupt" and request.method != "HEAD":
                        response.content_length += len(rule.body)
                await response.prepare(request)
                self._record(request, path, upstream.status, fault)
                sent = 0
                async for chunk in upstream.content.iter_chunked(64 * 1024):
                    if (
                        rule is not None
                        and rule.action == "drop_response"
                        and sent + len(chunk) >= rule.after_bytes
                    ):
                        await response.write(chunk[: max(0, rule.after_bytes - sent)])
                        request.transport.close()  # type: ignore[union-attr]
                        return response
                    if (
                        rule is not None
                        and rule.action == "corrupt"
                        and 0 <= rule.after_bytes - sent < len(chunk)
                    ):
                        flipped = bytearray(chunk)
                        flipped[rule.after_bytes - sent] ^= 0x01
                        chunk = bytes(flipped)
                    sent += len(chunk)
                    await response.write(chunk)
                if rule is not None and rule.action == "corrupt" and rule.body and request.method != "HEAD":
                    await response.write(rule.body)
                await response.write_eof()
                return response
        except (ConnectionResetError, aiohttp.ClientError):
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError from None

    async def _stream_body(self, request: web.Request, rule: Rule) -> web.StreamResponse:
        """A ``body`` rule's answer streamed: ``rule.body`` ``rule.repeat`` times, counting
        in ``rule.sent`` what the client took (a client that stops reading stops it)."""
        response = web.StreamResponse(status=rule.status, headers=dict(rule.headers))
        if rule.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(rule.body) * rule.repeat
        await response.prepare(request)
        try:
            for _ in range(rule.repeat if request.method != "HEAD" else 0):
                await response.write(rule.body)
                with self._lock:
                    rule.sent += len(rule.body)
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientError):
            if request.transport is not None:
                request.transport.close()
        return response

    async def _accept_any_digest(self, request: web.Request, path: str) -> web.StreamResponse:
        """A registry that stores whatever arrives: the PUT is read whole (small test
        blobs), and only when every declared byte came is it passed on, its ``digest=``
        rewritten to the sha256 of those bytes (so the registry's own check passes), the
        answer naming the digest the client claimed. A PUT cut short commits nothing."""
        declared = request.content_length
        query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
        received = bytearray()
        try:
            async for chunk in request.content.iter_any():
                received += chunk
        except Exception:
            pass  # the client went away mid-body: what came so far is what we saw
        upload = Upload(path, declared, len(received), declared == len(received), query.get("digest"))
        with self._lock:
            self.uploads.append(upload)
        if not upload.complete:
            self._record(request, path, None, "accept_any_digest")
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError
        upload.actual = "sha256:" + hashlib.sha256(received).hexdigest()
        query["digest"] = upload.actual
        forwarded = path.split("?", 1)[0] + "?" + urlencode(query)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(
            "PUT", self.upstream + forwarded, headers=headers, data=bytes(received), allow_redirects=False
        ) as upstream:
            body = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            upload.status = upstream.status
        if upload.claimed:
            for name, value in list(out_headers.items()):
                out_headers[name] = value.replace(upload.actual, upload.claimed)
        if "Location" in out_headers:
            out_headers["Location"] = out_headers["Location"].replace(
                self.upstream.split("://", 1)[1], self.host
            )
        self._record(request, path, upstream.status, "accept_any_digest")
        return web.Response(status=upstream.status, body=body, headers=out_headers)


def _override(headers: dict[str, str], changes: dict[str, str]) -> None:
    """Set ``changes`` over ``headers`` case-insensitively; an empty value removes."""
    for name, value in changes.items():
        for existing in [k for k in headers if k.lower() == name.lower()]:
            del headers[existing]
        if value:
            headers[name] = value


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
