"""Starting and stopping the real local servers: the CNCF distribution registry
(Debian's `docker-registry`) and moto in server mode. Used by the sandbox and the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudops.errors import CloudopsError


class SandboxError(CloudopsError):
    """A local server of the sandbox could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float = 20.0, *, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until any HTTP answer comes (401 counts: the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SandboxError(f"server for {url} exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise SandboxError(f"server for {url} did not answer within {timeout:.0f}s")


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


def start_registry(
    root: Path,
    *,
    port: int | None = None,
    htpasswd: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    auth_section: Sequence[str] = (),
    detach: bool = False,
) -> ServerProcess:
    """Start `docker-registry serve` on a loopback port with storage under ``root``.
    ``auth_section`` is the config's ``auth:`` block as lines, for other schemes than
    htpasswd (the tests' bearer-token server)."""
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    storage = root / "storage"
    config = [
        "version: 0.1",
        "log: {level: error, accesslog: {disabled: true}}",
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: cloudops-local",
    ]
    if tls is not None:
        config += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd is not None:
        config += ["auth:", f"  htpasswd: {{realm: cloudops-test, path: {htpasswd}}}"]
    config += list(auth_section)
    config_path = root / "config.yml"
    config_path.write_text("\n".join(config) + "\n")
    log = open(root / "registry.log", "ab")  # noqa: SIM115 - handed to the child
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
    if tls is None:
        wait_for_http(url + "/v2/", process=popen)
    else:
        _wait_for_port(port, popen)
    return ServerProcess("registry", url, popen.pid, popen)


def _wait_for_port(port: int, popen: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise SandboxError(f"registry on port {port} exited while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SandboxError(f"registry on port {port} did not start")


def start_moto(root: Path, *, port: int | None = None, detach: bool = False) -> ServerProcess:
    """Start moto in server mode: one process serving every account (never set
    MOTO_ACCOUNT_ID on it: assumed roles pick the account, ECR-NOTES.md). It runs through
    cloudops.sandbox.moto_server, which adds S3's bucket owner condition (moto ignores
    ExpectedBucketOwner; S3 answers 403 when it names another account)."""
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MOTO_ACCOUNT_ID"}
    src = str(Path(__file__).resolve().parents[2])  # cloudops importable, installed or not
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    log = open(root / "moto.log", "ab")  # noqa: SIM115 - handed to the child
    popen = subprocess.Popen(
        [sys.executable, "-m", "cloudops.sandbox.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=detach,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/moto-api/", timeout=60, process=popen)
    return ServerProcess("moto", url, popen.pid, popen)
