"""Starting and stopping the real local servers: the CNCF distribution registry
(Debian's `docker-registry`) and moto in server mode. Used by the sandbox and the tests."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudops.errors import CloudopsError


class SandboxError(CloudopsError):
    """A local server of the sandbox could not be started."""


def free_port() -> int:
    """A port that was free a moment ago. Racy when handed to another process (anything
    may take it before that process binds it): prefer :func:`listening_socket`, or a
    start-up that identifies its server and retries, as :func:`start_registry` does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A socket bound and listening on ``host:port`` (0: the system picks a free port; read
    it back with ``getsockname()``). Hand it to a child with ``pass_fds``: the port is
    owned from the start, and connections made before the child serves wait in the
    backlog instead of reaching some other server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


Identify = Callable[[int, Mapping[str, str], bytes], bool]
"""Whether an answer (status, headers, body) comes from the server being waited for."""


def wait_for_http(
    url: str,
    timeout: float = 60.0,
    *,
    process: subprocess.Popen[bytes] | None = None,
    identify: Identify | None = None,
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url`` until the server answers (any status: 401 counts, the server is up).
    With ``identify``, the answer must also be the expected server's, else SandboxError:
    some other server holds the port. ``timeout`` only bounds a start-up that hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SandboxError(f"server for {url} exited with code {process.returncode} while starting")
        answer = _http_answer(url, context)
        if answer is None:
            time.sleep(0.05)
            continue
        if identify is not None and not identify(*answer):
            raise SandboxError(f"another server answers at {url}", hint="the port was taken; start again")
        return
    raise SandboxError(f"server for {url} did not answer within {timeout:.0f}s")


def _http_answer(
    url: str, context: ssl.SSLContext | None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes] | None:
    """(status, headers with lowercase names, body) of a GET, or None when nothing answers
    within ``timeout`` (the caller polls again: this bounds one try, not the start-up)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers.items()), error.read()
    except (urllib.error.URLError, OSError):
        return None


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key.lower(): value for key, value in items}


def registry_binary() -> str:
    found = shutil.which("docker-registry") or shutil.which("registry")
    if not found:
        raise SandboxError(
            "the distribution registry is not installed",
            hint="install Debian's docker-registry package (make test and make demo do it)",
        )
    return found


@dataclass
class ServerProcess:
    name: str
    url: str
    pid: int
    popen: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        # The registry drains connections for seconds on SIGTERM; it holds nothing that
        # needs a clean shutdown (every write is committed by rename), so kill it.
        stop_pid(self.pid, grace=0 if self.name == "registry" else 2.5)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def stop_pid(pid: int, grace: float = 2.5) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(int(grace / 0.05) + 1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_REGISTRY_TRIES = 5


def start_registry(
    root: Path,
    *,
    port: int | None = None,
    htpasswd: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    auth_section: Sequence[str] | Callable[[int], Sequence[str]] = (),
    detach: bool = False,
) -> ServerProcess:
    """Start `docker-registry serve` on a loopback port with storage under ``root``.
    ``auth_section`` is the config's ``auth:`` block as lines, for other schemes than
    htpasswd (the tests' bearer-token server), or a function of the port giving them.

    The registry takes its port from its config and cannot be handed a bound socket, so
    the port is picked free and may be taken by another process before the registry binds
    it. Start-up therefore identifies the registry it waits for (a header with a nonce of
    this start, which only this process's config sets) and, when the port was taken
    (the registry exits with "address already in use", or another server answers there),
    starts again on a new port, a bounded number of times. An explicit ``port`` is tried
    once."""
    tries = 1 if port else _REGISTRY_TRIES
    for attempt in range(1, tries + 1):
        chosen = port or free_port()
        auth = auth_section(chosen) if callable(auth_section) else auth_section
        try:
            return _start_registry_once(root, chosen, htpasswd, tls, auth, detach)
        except _PortTaken as taken:
            if attempt == tries:
                raise SandboxError(f"registry could not bind a port ({taken}) in {tries} tries") from None
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    """The registry's port was taken by another process before the registry bound it."""


def _start_registry_once(
    root: Path,
    port: int,
    htpasswd: Path | None,
    tls: tuple[Path, Path] | None,
    auth_section: Sequence[str],
    detach: bool,
) -> ServerProcess:
    root.mkdir(parents=True, exist_ok=True)
    storage = root / "storage"
    nonce = secrets.token_hex(16)
    config = [
        "version: 0.1",
        "log: {level: error, accesslog: {disabled: true}}",
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: cloudops-local",
        # Sent on every answer: tells THIS registry from any other server on the port.
        f"  headers: {{{_INSTANCE_HEADER}: [{nonce}]}}",
    ]
    if tls is not None:
        config += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd is not None:
        config += ["auth:", f"  htpasswd: {{realm: cloudops-test, path: {htpasswd}}}"]
    config += list(auth_section)
    config_path = root / "config.yml"
    config_path.write_text("\n".join(config) + "\n")
    log_path = root / "registry.log"
    log_start = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    popen = subprocess.Popen(
        [registry_binary(), "serve", str(config_path)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=detach,
    )
    log.close()
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    server = ServerProcess("registry", url, popen.pid, popen)
    try:
        _wait_for_registry(url, nonce, popen, log_path, log_start, tls is not None)
    except BaseException:
        server.stop()
        raise
    return server


_INSTANCE_HEADER = "X-Cloudops-Instance"


def _wait_for_registry(
    url: str,
    nonce: str,
    popen: subprocess.Popen[bytes],
    log_path: Path,
    log_start: int,
    tls: bool,
    timeout: float = 60.0,
) -> None:
    """Until GET /v2/ is answered by the distribution registry with this start's nonce.
    ``timeout`` only bounds a start-up that hangs."""
    context = None
    if tls:  # the tests' certificates are self-signed: identity comes from the nonce
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            with open(log_path, "rb") as log:
                log.seek(log_start)
                said = log.read().decode(errors="replace").strip()
            if "address already in use" in said:
                raise _PortTaken(url)
            raise SandboxError(
                f"registry for {url} exited with code {popen.returncode} while starting: {said[-500:]}"
            )
        # Short: a port held by a process that never answers must not hide our exit.
        answer = _http_answer(url + "/v2/", context, timeout=1.0)
        if answer is None:
            time.sleep(0.05)
            continue
        _status, headers, _body = answer
        if headers.get(_INSTANCE_HEADER.lower()) == nonce and headers.get(
            "docker-distribution-api-version", ""
        ).startswith("registry/2"):
            return
        raise _PortTaken(url)  # another server answers on the port this one was to take
    raise SandboxError(f"registry for {url} did not answer within {timeout:.0f}s")


def start_moto(root: Path, *, port: int | None = None, detach: bool = False) -> ServerProcess:
    """Start moto in server mode: one process serving every account (never set
    MOTO_ACCOUNT_ID on it: assumed roles pick the account, ECR-NOTES.md). It runs through
    cloudops.sandbox.moto_server, which adds S3's bucket owner condition (moto ignores
    ExpectedBucketOwner; S3 answers 403 when it names another account).

    The port is bound here (``port``, or one the system picks) and the listening socket
    handed to moto: no other process can take it in between."""
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MOTO_ACCOUNT_ID", "MOTO_PORT")}
    with listening_socket(port or 0) as sock:
        port = int(sock.getsockname()[1])
        fd = sock.fileno()
        popen = start_python_module(
            "cloudops.sandbox.moto_server",
            ["-H", "127.0.0.1", "-p", str(port), "--fd", str(fd)],
            log_path=root / "moto.log",
            env=env,
            pass_fds=(fd,),
            detach=detach,
        )
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess("moto", url, popen.pid, popen)
    try:
        wait_for_http(url + "/moto-api/data.json", timeout=120, process=popen, identify=_is_moto)
    except BaseException:
        server.stop()
        raise
    return server


def start_python_module(
    module: str,
    args: list[str],
    *,
    log_path: Path,
    env: dict[str, str],
    pass_fds: tuple[int, ...] = (),
    detach: bool = False,
) -> subprocess.Popen[bytes]:
    """``python -m MODULE ARGS`` with cloudops importable (installed or not), output to
    ``log_path``, the given listening sockets inherited."""
    src = str(Path(__file__).resolve().parents[2])
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            pass_fds=pass_fds,
            start_new_session=detach,
        )


def _is_moto(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    """moto's state API (/moto-api/data.json): a JSON object of the services whose models
    are loaded; moto_server imports moto's S3, so "s3" is always among them."""
    if status != 200:
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and "s3" in doc
