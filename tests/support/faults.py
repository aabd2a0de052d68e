"""A fault-injecting HTTP proxy for tests: registry and S3 (moto) traffic passes through
it, and rules, per request pattern, answer 429 with Retry-After, answer 5xx, drop the
connection after N bytes of a request or response body, stall, answer ECR's 403 "token
expired" once, or serve a body of their own. It counts what passed and what it injected.

The proxy is real (aiohttp server and client in a thread, streaming both ways); only the
faults are made up, which is the point.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web

from cloudops.sandbox.processes import free_port

Action = Literal["status", "drop_request", "drop_response", "stall", "expired", "body"]
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
    seconds: float = 3600.0
    times: int = 1
    """How many matching requests to hit; -1 means every one."""
    skip: int = 0
    """Let this many matching requests pass first."""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seen: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return re.search(self.path, path) is not None

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


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.rules: list[Rule] = []
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stalls: list[asyncio.Event] = []

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

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.release_stalls()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- the server ----------------------------------------------------------------------

    def _run(self) -> None:
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
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._session.close())
        self._loop.run_until_complete(runner.cleanup())

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path) and rule.fires():
                    return rule
        return None

    def _record(self, method: str, path: str, status: int | None, fault: Action | None) -> None:
        with self._lock:
            self.log.append(LogEntry(method, path, status, fault))

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
            self._record(request.method, path, status, fault)
            return web.Response(
                status=status, body=body if request.method != "HEAD" else None, headers=headers
            )
        if rule is not None and rule.action == "stall":
            self._record(request.method, path, None, fault)
            event = asyncio.Event()
            self._stalls.append(event)
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), rule.seconds)
            raise ConnectionResetError  # the client sees a dead connection

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
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                if upstream.headers.get("Content-Length") is not None:
                    response.content_length = int(upstream.headers["Content-Length"])
                await response.prepare(request)
                self._record(request.method, path, upstream.status, fault)
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
                    sent += len(chunk)
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (ConnectionResetError, aiohttp.ClientError):
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError from None


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
