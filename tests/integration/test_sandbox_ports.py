"""A port is owned by the server that listens on it: start-up never accepts another
server on the port it waits for, and a registry whose port was taken starts again on
another one (the registry takes its port from a config, so it cannot be handed a socket)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloudops.sandbox import processes
from cloudops.sandbox.processes import SandboxError, listening_socket, start_moto, start_registry


@contextmanager
def impostor() -> Iterator[int]:
    """An HTTP server that answers /v2/ like a distribution registry would (not ours)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def _ports_then_free(monkeypatch: pytest.MonkeyPatch, taken: int) -> list[int]:
    """Make the registry's first pick ``taken``, as if another process took it meanwhile."""
    picked: list[int] = []
    real = processes.free_port

    def pick() -> int:
        port = taken if not picked else real()
        picked.append(port)
        return port

    monkeypatch.setattr(processes, "free_port", pick)
    return picked


def test_a_registry_whose_port_another_server_took_starts_again_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with impostor() as taken:
        picked = _ports_then_free(monkeypatch, taken)
        registry = start_registry(tmp_path / "registry")
        try:
            assert picked[0] == taken and len(picked) >= 2
            assert registry.url == f"http://127.0.0.1:{picked[-1]}" and picked[-1] != taken
            assert registry.popen is not None and registry.popen.poll() is None
        finally:
            registry.stop()


def test_a_registry_whose_port_is_bound_but_silent_starts_again_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with listening_socket() as holder:  # never answers: the registry's bind fails
        taken = int(holder.getsockname()[1])
        picked = _ports_then_free(monkeypatch, taken)
        registry = start_registry(tmp_path / "registry")
        try:
            assert picked[0] == taken and registry.url.endswith(f":{picked[-1]}") and picked[-1] != taken
        finally:
            registry.stop()


def test_an_explicit_port_that_is_taken_is_an_error_not_another_server(tmp_path: Path) -> None:
    with impostor() as taken, pytest.raises(SandboxError, match="could not bind"):
        start_registry(tmp_path / "registry", port=taken)


def test_moto_serves_on_the_socket_bound_for_it(tmp_path: Path) -> None:
    server = start_moto(tmp_path / "moto")
    try:
        port = int(server.url.rsplit(":", 1)[1])
        # Bound before moto started and held since: nothing else can listen there.
        with pytest.raises(OSError):
            listening_socket(port).close()
    finally:
        server.stop()
