"""A real forward proxy for the tests: Debian's tinyproxy, in the foreground on a loopback
port, with its own config and log in a scratch directory.

At LogLevel Info tinyproxy logs one line per request it reads, before it forwards it (or
refuses it), naming the target as the client sent it. After the prefix
``CONNECT   Nov 30 19:58:58.409 [13838]: `` (the log level, which tinyproxy calls CONNECT,
the time and its pid) come:

    Request (file descriptor 5): CONNECT 127.0.0.1:15000 HTTP/1.1
    Request (file descriptor 5): GET http://127.0.0.1:15000/v2/ HTTP/1.1

:meth:`ForwardProxy.requests_to` reads those lines back. tinyproxy 1.11 closes the client
connection after each forwarded plain-HTTP request, so every request is one line; a
CONNECT tunnel is one line however many requests go through it.

Without ConnectPort lines tinyproxy allows CONNECT to every port (tinyproxy.conf(5)), and
it forwards to loopback targets. Without Allow lines it serves every client; ``refusing``
adds one Allow line for an address that is not loopback, so it answers 403 "Access denied"
to everything (to a CONNECT too). With ``basic_auth`` a request without credentials gets
407 and one with wrong credentials gets 401 (tinyproxy 1.11's choice, also for CONNECT).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cloudops.sandbox.processes import free_port

_TRIES = 5
_NOT_LOOPBACK = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never a client of this proxy
_STARTED = "Accepting connections"
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (?P<method>[A-Z]+) (?P<target>\S+) HTTP/\d\.\d")


class ProxyStartError(RuntimeError):
    """tinyproxy is missing or could not be started."""


def tinyproxy_binary() -> str:
    found = shutil.which("tinyproxy")
    if not found:
        raise ProxyStartError(
            "tinyproxy is not installed: run `make sysdeps` (it installs Debian's tinyproxy package)"
        )
    return found


@dataclass(frozen=True)
class ProxiedRequest:
    """One request line of the proxy's log."""

    method: str
    target: str
    """host:port, as the client named it (a CONNECT's authority, a URL's host and port)."""
    line: str


def _target(method: str, raw: str) -> str:
    if method == "CONNECT":
        return raw
    parts = urllib.parse.urlsplit(raw)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.hostname}:{port}"


@dataclass
class ForwardProxy:
    port: int
    directory: Path
    popen: subprocess.Popen[bytes]
    basic_auth: tuple[str, str] | None = None
    refusing: bool = False

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def url_with_credentials(self, user: str, password: str) -> str:
        quote = urllib.parse.quote
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{self.host_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "tinyproxy.log"

    def log_lines(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()

    def requests(self) -> list[ProxiedRequest]:
        """Every request the proxy read, in order (also those it then refused)."""
        found = []
        for line in self.log_lines():
            match = _REQUEST.search(line)
            if match:
                method = match["method"]
                found.append(ProxiedRequest(method, _target(method, match["target"]), line))
        return found

    def requests_to(self, host_port: str) -> list[ProxiedRequest]:
        """The requests naming ``host_port`` (e.g. ``127.0.0.1:5000``) as their target."""
        return [request for request in self.requests() if request.target == host_port]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _config(port: int, directory: Path, basic_auth: tuple[str, str] | None, refusing: bool) -> str:
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 120",
        f'LogFile "{directory / "tinyproxy.log"}"',
        "LogLevel Info",
        "MaxClients 256",
        "DisableViaHeader Yes",
        # No ConnectPort lines: CONNECT to any port (the registries' ports are random).
    ]
    if refusing:
        lines.append(f"Allow {_NOT_LOOPBACK}")
    if basic_auth is not None:
        user, password = basic_auth
        if any(c.isspace() or c == '"' for c in user + password):
            raise ValueError("tinyproxy's BasicAuth takes a user and a password without spaces")
        lines.append(f"BasicAuth {user} {password}")
    return "\n".join(lines) + "\n"


def start_forward_proxy(
    directory: Path,
    *,
    basic_auth: tuple[str, str] | None = None,
    refusing: bool = False,
    timeout: float = 30.0,
) -> ForwardProxy:
    """Start tinyproxy on a free loopback port; config, log and output under ``directory``.

    tinyproxy takes its port from its config, so the port is picked free and another
    process may take it first: tinyproxy then exits "Could not create listening sockets"
    (before it opens its log), and it is started again on another port. It is ready when
    its own log says it accepts connections and the port answers a connect."""
    binary = tinyproxy_binary()
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(_TRIES):
        port = free_port()
        config = directory / "tinyproxy.conf"
        config.write_text(_config(port, directory, basic_auth, refusing))
        (directory / "tinyproxy.log").unlink(missing_ok=True)
        output = directory / "tinyproxy.out"
        with open(output, "wb") as out:
            popen = subprocess.Popen(
                [binary, "-d", "-c", str(config)], stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )
        proxy = ForwardProxy(port, directory, popen, basic_auth, refusing)
        try:
            if _wait_ready(proxy, timeout):
                return proxy
        except BaseException:
            proxy.stop()
            raise
        said = output.read_text(errors="replace").strip()
        if "Could not create listening sockets" not in said:
            raise ProxyStartError(
                f"tinyproxy exited with code {popen.returncode} while starting: {said[-500:]}"
            )
    raise ProxyStartError(f"tinyproxy could not bind a free port in {_TRIES} tries")


def _wait_ready(proxy: ForwardProxy, timeout: float) -> bool:
    """True when ready, False when tinyproxy exited (the caller looks at why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.popen.poll() is not None:
            return False
        if any(_STARTED in line for line in proxy.log_lines()):
            try:
                socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
            except OSError:
                pass
            else:
                return True
        time.sleep(0.05)
    proxy.stop()
    raise ProxyStartError(f"tinyproxy on {proxy.host_port} was not ready within {timeout:.0f}s")


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening while the context lasts: a connection to
    it is refused, and no other process can start listening there meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
