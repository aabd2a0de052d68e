"""The registry's HTTP (registry/http.py, urllib3 on worker threads) against a real socket
server that misbehaves the ways HTTP servers do: closing kept-alive connections, cutting
bodies short, never answering."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cloudops.registry.errors import RegistryError, RegistryUnreachableError
from cloudops.registry.http import HttpRequest, HttpResponse, RoundTripper

Behaviour = Callable[[socket.socket, int, int], bool]
"""(connection, request number on it, request number overall) -> keep the connection?"""


def _read_head(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data


class Server:
    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour
        self.connections = 0
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with lock:
                    outer.connections += 1
                on_this = 0
                while _read_head(self.request) is not None:
                    with lock:
                        outer.requests += 1
                        overall = outer.requests
                    on_this += 1
                    if not outer.behaviour(self.request, on_this, overall):
                        return

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], Server]]:
    servers: list[Server] = []

    def start(behaviour: Behaviour) -> Server:
        servers.append(Server(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def ok(conn: socket.socket, body: bytes = b"hello") -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class Client:
    """GETs against one server through a RoundTripper."""

    def __init__(self, http: RoundTripper, base: str):
        self.http, self.base = http, base

    async def get(
        self, path: str, headers: dict[str, str] | None = None, max_body: int = 1 << 20
    ) -> HttpResponse:
        return await self.http.send(HttpRequest("GET", self.base + path, headers or {}, max_body=max_body))


async def _with_client(server: Server, work: Callable[[Client], object]) -> object:
    http = RoundTripper(max_connections=4, connect_timeout=5, read_timeout=10)
    try:
        return await work(Client(http, server.url))  # type: ignore[misc]
    finally:
        await http.close()


def test_keeps_connections_alive_between_requests(serve: Callable[[Behaviour], Server]) -> None:
    server = serve(lambda conn, n, overall: (ok(conn), True)[1])

    async def work(client: Client) -> list[bytes]:
        return [(await client.get("/v2/")).body for _ in range(5)]

    assert asyncio.run(_with_client(server, work)) == [b"hello"] * 5
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[[Behaviour], Server],
) -> None:
    # One response per connection, then close, without saying "Connection: close"
    # (what a keep-alive timeout looks like to the client).
    server = serve(lambda conn, n, overall: (ok(conn), False)[1])

    async def work(client: Client) -> list[int]:
        statuses = []
        for _ in range(3):
            statuses.append((await client.get("/v2/")).status)
            await asyncio.sleep(0.05)  # the close reaches the client first
        return statuses

    assert asyncio.run(_with_client(server, work)) == [200, 200, 200]
    assert server.connections == 3


def test_a_kept_alive_connection_dropped_under_a_request_is_retried_fresh(
    serve: Callable[[Behaviour], Server],
) -> None:
    # The second request on a connection is read and then the connection is closed with
    # no answer: the race a keep-alive timeout can lose. A fresh connection must carry it.
    def behaviour(conn: socket.socket, on_this: int, overall: int) -> bool:
        if on_this == 1:
            ok(conn)
            return True
        return False

    server = serve(behaviour)

    async def work(client: Client) -> list[int]:
        return [(await client.get("/v2/")).status for _ in range(3)]

    assert asyncio.run(_with_client(server, work)) == [200, 200, 200]
    assert server.connections == 3


def test_a_body_cut_short_is_an_error_never_a_short_body(serve: Callable[[Behaviour], Server]) -> None:
    def behaviour(conn: socket.socket, on_this: int, overall: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
        return False

    server = serve(behaviour)

    async def work(client: Client) -> object:
        return await client.get("/v2/x/manifests/1")

    with pytest.raises(RegistryUnreachableError, match="broke"):
        asyncio.run(_with_client(server, work))


def test_a_body_over_the_limit_is_cut_there_and_flagged(serve: Callable[[Behaviour], Server]) -> None:
    server = serve(lambda conn, n, overall: (ok(conn, b"y" * 5000), True)[1])

    async def work(client: Client) -> tuple[str, bytes, bool, int]:
        response = await client.get("/v2/", max_body=1000)
        again = await client.get("/v2/", max_body=10000)  # the spent connection is not reused
        return response.headers["content-length"], response.body, response.truncated, len(again.body)

    declared, seen, truncated, full = asyncio.run(_with_client(server, work))  # type: ignore[misc]
    assert declared == "5000" and seen == b"y" * 1000 and truncated and full == 5000
    assert server.connections == 2


def test_cancelling_a_stalled_request_frees_its_thread_at_once(serve: Callable[[Behaviour], Server]) -> None:
    release = threading.Event()

    def never_answers(conn: socket.socket, on_this: int, overall: int) -> bool:
        release.wait(30)
        return False

    server = serve(never_answers)

    async def work(client: Client) -> None:
        task = asyncio.ensure_future(client.get("/v2/"))
        deadline = time.monotonic() + 10
        while server.requests == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    try:
        asyncio.run(_with_client(server, work))  # closing the round tripper joins its threads
    finally:
        release.set()
    assert time.monotonic() - started < 5


def test_headers_that_are_not_ascii_pass_through(serve: Callable[[Behaviour], Server]) -> None:
    def behaviour(conn: socket.socket, on_this: int, overall: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Amz-Meta-Owner: caf\xe9\r\nContent-Length: 0\r\n\r\n")
        return True

    server = serve(behaviour)

    async def work(client: Client) -> str:
        return (await client.get("/v2/")).headers["x-amz-meta-owner"]

    assert asyncio.run(_with_client(server, work)) == "café"


def test_a_header_http_refuses_is_a_typed_error_not_a_crash(serve: Callable[[Behaviour], Server]) -> None:
    server = serve(lambda conn, n, overall: (ok(conn), True)[1])

    async def work(client: Client) -> object:
        return await client.get("/v2/", headers={"X-Bad": "a\r\nInjected: 1"})

    with pytest.raises(RegistryError, match="malformed request") as refused:
        asyncio.run(_with_client(server, work))
    assert not refused.value.retryable and server.requests == 0


@pytest.mark.parametrize("status", [429, 503])
def test_an_answer_with_retry_after_is_handed_up_not_retried_underneath(
    serve: Callable[[Behaviour], Server], status: int
) -> None:
    # The transport maps it and the one retry policy waits (registry/retry.py); urllib3's
    # own Retry-After handling would retry it, or fail with a ResponseError.
    def behaviour(conn: socket.socket, on_this: int, overall: int) -> bool:
        conn.sendall(b"HTTP/1.1 %d Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n" % status)
        return True

    server = serve(behaviour)

    async def work(client: Client) -> tuple[int, str]:
        response = await client.get("/v2/")
        return response.status, response.headers["retry-after"]

    assert asyncio.run(_with_client(server, work)) == (status, "7")
    assert server.requests == 1
