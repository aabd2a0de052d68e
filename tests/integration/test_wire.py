"""The wire under the registry client (registry/wire.py) against a real socket server
that misbehaves the ways HTTP servers do: closing kept-alive connections, cutting
bodies short, never answering."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from cloudops.registry import wire as wire_module
from cloudops.registry.wire import Wire, WireTransport

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


async def _with_client(server: Server, work: Callable[[httpx.AsyncClient], object]) -> object:
    wire = Wire(workers=4, connect_timeout=5, read_timeout=10)
    client = httpx.AsyncClient(transport=WireTransport(wire, True), base_url=server.url)
    try:
        return await work(client)  # type: ignore[misc]
    finally:
        await client.aclose()
        await wire.close()


def test_keeps_connections_alive_between_requests(serve: Callable[[Behaviour], Server]) -> None:
    server = serve(lambda conn, n, overall: (ok(conn), True)[1])

    async def work(client: httpx.AsyncClient) -> list[bytes]:
        return [(await client.get("/v2/")).content for _ in range(5)]

    assert asyncio.run(_with_client(server, work)) == [b"hello"] * 5
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[[Behaviour], Server],
) -> None:
    # One response per connection, then close, without saying "Connection: close"
    # (what a keep-alive timeout looks like to the client).
    server = serve(lambda conn, n, overall: (ok(conn), False)[1])

    async def work(client: httpx.AsyncClient) -> list[int]:
        statuses = []
        for _ in range(3):
            statuses.append((await client.get("/v2/")).status_code)
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

    async def work(client: httpx.AsyncClient) -> list[int]:
        return [(await client.get("/v2/")).status_code for _ in range(3)]

    assert asyncio.run(_with_client(server, work)) == [200, 200, 200]
    assert server.connections == 3


def test_a_body_cut_short_is_an_error_never_a_short_body(serve: Callable[[Behaviour], Server]) -> None:
    def behaviour(conn: socket.socket, on_this: int, overall: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
        return False

    server = serve(behaviour)

    async def work(client: httpx.AsyncClient) -> object:
        return await client.get("/v2/x/manifests/1")

    with pytest.raises(httpx.RemoteProtocolError, match="IncompleteRead"):
        asyncio.run(_with_client(server, work))


def test_a_body_over_the_limit_fails_when_read_past_it(
    serve: Callable[[Behaviour], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire_module, "MAX_BODY", 1000)
    server = serve(lambda conn, n, overall: (ok(conn, b"y" * 5000), True)[1])

    async def work(client: httpx.AsyncClient) -> tuple[str, bytes]:
        async with client.stream("GET", "/v2/") as response:
            declared = response.headers["content-length"]
            seen = b""
            with pytest.raises(httpx.ReadError, match="over 1000 bytes"):
                async for chunk in response.aiter_raw():
                    seen += chunk
            return declared, seen

    declared, seen = asyncio.run(_with_client(server, work))  # type: ignore[misc]
    assert declared == "5000" and seen == b"y" * 1000


def test_cancelling_a_stalled_request_frees_its_thread_at_once(serve: Callable[[Behaviour], Server]) -> None:
    release = threading.Event()

    def never_answers(conn: socket.socket, on_this: int, overall: int) -> bool:
        release.wait(30)
        return False

    server = serve(never_answers)

    async def work(client: httpx.AsyncClient) -> None:
        task = asyncio.ensure_future(client.get("/v2/"))
        deadline = time.monotonic() + 10
        while server.requests == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    try:
        asyncio.run(_with_client(server, work))  # closing the wire joins its threads
    finally:
        release.set()
    assert time.monotonic() - started < 5


def test_headers_that_are_not_ascii_pass_through(serve: Callable[[Behaviour], Server]) -> None:
    def behaviour(conn: socket.socket, on_this: int, overall: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Amz-Meta-Owner: caf\xe9\r\nContent-Length: 0\r\n\r\n")
        return True

    server = serve(behaviour)

    async def work(client: httpx.AsyncClient) -> str:
        return (await client.get("/v2/")).headers["x-amz-meta-owner"]

    assert asyncio.run(_with_client(server, work)) == "café"


def test_a_header_http_refuses_is_an_httpx_error_not_a_crash(serve: Callable[[Behaviour], Server]) -> None:
    server = serve(lambda conn, n, overall: (ok(conn), True)[1])

    async def work(client: httpx.AsyncClient) -> object:
        return await client.get("/v2/", headers={"X-Bad": "a\r\nInjected: 1"})

    with pytest.raises(httpx.LocalProtocolError):
        asyncio.run(_with_client(server, work))
