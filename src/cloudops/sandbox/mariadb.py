"""A PRIVATE MariaDB server for the sandbox: each account's "RDS" is a database and a user on
one mariadbd that this module starts (never the system service), listening on one loopback
address per account (127.0.0.2, 127.0.0.3, ...: any 127/8 address works on Linux without
configuration). A user is allowed only FROM its account's address, and the Data
Population Tool connects to an account's address from that same address
(``dbtool.database.DatabaseSettings.source_address``): an account's credentials do not
open another account's database, through either address.

Everything lives under ``ROOT/mariadb/``::

    data/            the datadir (mariadb-install-db on first start; reused after)
    mariadbd.sock    the admin socket (root by unix_socket authentication; a short path
                     under /tmp instead when ROOT is too deep for a socket path)
    mariadbd.pid     mariadbd's pid file
    mariadbd.log     its error log
    tmp/             its tmpdir (never /tmp: see below)
    server.json      what is running (MariaDbServer): ``running_mariadb`` trusts it

mariadbd options and why (MariaDB 10.11, Debian 12):

- ``--no-defaults`` (first): the host's /etc/mysql must not reach this server;
- ``--bind-address=A,B,...``: 10.11 takes a comma-separated list (one listening socket per
  address: checked on 10.11.19), with ``--skip-networking=0`` and ``--port``;
- ``--skip-name-resolve``: users are matched by IP ('dpt'@'127.0.0.2'), no DNS;
- ``--user=root`` when running as root (mariadbd refuses to run as root otherwise);
- ``--innodb-buffer-pool-size=32M --innodb-log-file-size=8M``: a small footprint
  (a datadir of ~26 MB instead of ~114 MB);
- ``--character-set-server=utf8mb4``: Debian sets it in /etc/mysql, which is not read;
- ``--tmpdir=ROOT/mariadb/tmp``, for mariadb-install-db too: mariadbd deletes every
  ``#sql*`` file in its tmpdir when it starts (the temporary tables a crashed server left),
  so two servers sharing /tmp (two sandboxes, as two test workers run them) delete each
  other's live temporary tables; a bootstrap then fails with "Unknown table
  'mysql.tmp_user_sys'" (seen on CI-like runs).

mariadb-install-db runs with ``--no-defaults --auth-root-authentication-method=socket
--skip-test-db``: no password exists for the administrator; only the OS user that owns
the server (root, or ``--auth-root-socket-user``) can administer it, through the socket.
"""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped,unused-ignore]

from cloudops.errors import InputError
from cloudops.sandbox.processes import SandboxError, free_port, stop_pid

__all__ = [
    "MariaDbServer",
    "mariadb_binaries",
    "provision",
    "running_mariadb",
    "start_mariadb",
]

STATE_FILE = "server.json"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin
_TRIES = 5
_START_TIMEOUT = 60.0
_STOP_GRACE = 30.0  # a clean InnoDB shutdown takes about a second here; never cut it short


@dataclass
class MariaDbServer:
    """A running private mariadbd."""

    root: Path  # ROOT/mariadb
    datadir: Path
    socket: Path
    port: int
    addresses: tuple[str, ...]
    pid: int
    admin_user: str
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def endpoint(self, address: str) -> tuple[str, int]:
        """(host, port) an account at ``address`` connects to."""
        if address not in self.addresses:
            raise InputError(
                f"the sandbox MariaDB does not listen on {address}", hint=f"use {self.addresses}"
            )
        return address, self.port

    def admin(self) -> Any:
        """A PyMySQL connection as the administrator, through the socket (autocommit)."""
        try:
            return pymysql.connect(
                unix_socket=str(self.socket), user=self.admin_user, autocommit=True, connect_timeout=5
            )
        except pymysql.err.MySQLError as error:
            raise SandboxError(
                f"cannot administer the sandbox MariaDB through {self.socket}: {error}"
            ) from None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _is_mariadbd(self.pid, self.datadir)

    def stop(self) -> None:
        """SIGTERM (a clean InnoDB shutdown), SIGKILL only after a long grace."""
        if self.popen is not None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        elif _is_mariadbd(self.pid, self.datadir):
            stop_pid(self.pid, grace=_STOP_GRACE)
        with contextlib.suppress(FileNotFoundError):
            (self.root / STATE_FILE).unlink()
        if self.socket.parent != self.root:  # the short socket directory made for a deep ROOT
            shutil.rmtree(self.socket.parent, ignore_errors=True)

    def to_json(self) -> str:
        return json.dumps(
            {
                "datadir": str(self.datadir),
                "socket": str(self.socket),
                "port": self.port,
                "addresses": list(self.addresses),
                "pid": self.pid,
                "admin_user": self.admin_user,
            },
            indent=2,
        )


def mariadb_binaries() -> tuple[str, str]:
    """(mariadbd, mariadb-install-db); SandboxError with the fix when absent. /usr/sbin is
    searched too: it is not on every user's PATH."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    server = shutil.which("mariadbd", path=path) or shutil.which("mysqld", path=path)
    install = shutil.which("mariadb-install-db", path=path) or shutil.which("mysql_install_db", path=path)
    if not server or not install:
        raise SandboxError(
            "MariaDB is not installed", hint="apt-get install mariadb-server (its service need not run)"
        )
    return server, install


def _check_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    if not addresses:
        raise InputError("the sandbox MariaDB needs at least one loopback address to listen on")
    checked: list[str] = []
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise InputError(f"{address!r} is not an IP address") from None
        if parsed.version != 4 or not parsed.is_loopback:
            raise InputError(f"{address} is not an IPv4 loopback address (127.0.0.0/8)")
        if str(parsed) not in checked:
            checked.append(str(parsed))
    return tuple(checked)


def running_mariadb(root: Path) -> MariaDbServer | None:
    """The server recorded under ``root`` when it still runs, else None."""
    base = root / "mariadb"
    try:
        doc = json.loads((base / STATE_FILE).read_text())
        server = MariaDbServer(
            root=base,
            datadir=Path(doc["datadir"]),
            socket=Path(doc["socket"]),
            port=int(doc["port"]),
            addresses=tuple(str(a) for a in doc["addresses"]),
            pid=int(doc["pid"]),
            admin_user=str(doc["admin_user"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return server if server.alive() else None


def start_mariadb(root: Path, addresses: Sequence[str], port: int = 0, *, detach: bool) -> MariaDbServer:
    """Start (or find running) the private mariadbd of ``root``, listening on every address
    of ``addresses`` at ``port`` (0: a free one, picked again when another process takes it
    first). A server of ``root`` that already runs on those addresses (and that port, when
    given) is returned as it is; one on other addresses is stopped and started again.
    With ``detach`` it gets its own session and outlives this process."""
    wanted = _check_addresses(addresses)
    mariadbd, install_db = mariadb_binaries()
    current = running_mariadb(root)
    if current is not None:
        if set(wanted) <= set(current.addresses) and port in (0, current.port):
            return current
        current.stop()
    base = root / "mariadb"
    base.mkdir(parents=True, exist_ok=True)
    admin_user = "root" if os.geteuid() == 0 else getpass.getuser()
    datadir = base / "data"
    tmpdir = base / "tmp"
    tmpdir.mkdir(exist_ok=True)
    if not (datadir / "mysql").is_dir():
        _initialize(install_db, datadir, tmpdir, admin_user)
    socket_path = base / "mariadbd.sock"
    if len(str(socket_path)) > _SOCKET_PATH_MAX:
        socket_path = Path(tempfile.mkdtemp(prefix="cloudops-mariadb-")) / "mariadbd.sock"
    tries = 1 if port else _TRIES
    for attempt in range(1, tries + 1):
        chosen = port or free_port()
        try:
            server = _start_once(mariadbd, base, datadir, socket_path, chosen, wanted, admin_user, detach)
        except _PortTaken:
            if attempt == tries:
                raise SandboxError(f"MariaDB could not bind a port in {tries} tries") from None
            continue
        tmp = base / (STATE_FILE + ".tmp")
        tmp.write_text(server.to_json() + "\n")
        tmp.replace(base / STATE_FILE)
        return server
    raise AssertionError("unreachable")


def _initialize(install_db: str, datadir: Path, tmpdir: Path, admin_user: str) -> None:
    """mariadb-install-db into a fresh directory, renamed into place when complete: a start
    interrupted here never leaves a half-made datadir that looks ready."""
    partial = datadir.with_name(datadir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    command = [
        install_db,
        "--no-defaults",
        f"--datadir={partial}",
        f"--tmpdir={tmpdir}",
        "--auth-root-authentication-method=socket",
        "--skip-test-db",
        "--skip-name-resolve",
        "--innodb-log-file-size=8M",
    ]
    command.append("--user=root" if admin_user == "root" else f"--auth-root-socket-user={admin_user}")
    done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, timeout=120, check=False)
    if done.returncode != 0:
        said = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise SandboxError(f"mariadb-install-db failed with code {done.returncode}: {said[-800:]}")
    shutil.rmtree(datadir, ignore_errors=True)
    partial.rename(datadir)


class _PortTaken(Exception):
    pass


def _start_once(
    mariadbd: str,
    base: Path,
    datadir: Path,
    socket_path: Path,
    port: int,
    addresses: tuple[str, ...],
    admin_user: str,
    detach: bool,
) -> MariaDbServer:
    log_path = base / "mariadbd.log"
    log_start = log_path.stat().st_size if log_path.exists() else 0
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()  # left by a server that was killed
    command = [
        mariadbd,
        "--no-defaults",
        f"--datadir={datadir}",
        f"--tmpdir={base / 'tmp'}",
        f"--socket={socket_path}",
        f"--pid-file={base / 'mariadbd.pid'}",
        f"--log-error={log_path}",
        f"--port={port}",
        f"--bind-address={','.join(addresses)}",
        "--skip-networking=0",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=8M",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
    ]
    if os.geteuid() == 0:
        command.append("--user=root")
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=detach
        )
    server = MariaDbServer(base, datadir, socket_path, port, addresses, popen.pid, admin_user, popen)
    try:
        _wait_ready(server, popen, log_path, log_start)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(
    server: MariaDbServer, popen: subprocess.Popen[bytes], log_path: Path, log_start: int
) -> None:
    """Until the administrator can log in through OUR socket (no other server has this
    path) and mariadbd says it listens on every address at the port."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            said = _log_since(log_path, log_start)
            if "Address already in use" in said:
                raise _PortTaken()
            raise SandboxError(f"mariadbd exited with code {popen.returncode} while starting: {said[-800:]}")
        if server.socket.exists():
            try:
                connection = pymysql.connect(
                    unix_socket=str(server.socket), user=server.admin_user, connect_timeout=2
                )
            except pymysql.err.MySQLError:
                pass
            else:
                connection.close()
                listening = _log_since(log_path, log_start)
                if all(
                    f"IP: '{address}', port: '{server.port}'" in listening for address in server.addresses
                ):
                    return
        time.sleep(0.05)
    raise SandboxError(f"mariadbd did not become ready within {_START_TIMEOUT:.0f}s (log: {log_path})")


def _log_since(path: Path, start: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _is_mariadbd(pid: int, datadir: Path) -> bool:
    """``pid`` is alive, not a zombie, and is a mariadbd of ``datadir`` (a recorded pid may
    have been reused since)."""
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        return False
    return ("mariadbd" in cmdline or "mysqld" in cmdline) and f"--datadir={datadir}" in cmdline


# --- provisioning ------------------------------------------------------------------------

_DATABASE = re.compile(r"[A-Za-z0-9_]{1,64}")
_USER = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def provision(server: MariaDbServer, database: str, user: str, password: str, address: str) -> None:
    """One account's database: create ``database`` and the user ``'user'@'address'`` with
    all privileges on that database only (none elsewhere), allowed to log in only from
    ``address``. Idempotent; an existing user gets ``password`` anew."""
    if not _DATABASE.fullmatch(database):
        raise InputError(f"{database!r} is not a plain database name (letters, digits, _)")
    if not _USER.fullmatch(user):
        raise InputError(f"{user!r} is not a plain user name (letters, digits, _ . -)")
    server.endpoint(address)  # the server listens there
    quoted = f"`{database}`"
    connection = server.admin()
    try:
        cursor = connection.cursor()
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4")
        cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, address, password))
        cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, address, password))
        cursor.execute(f"GRANT ALL PRIVILEGES ON {quoted}.* TO %s@%s", (user, address))
        cursor.close()
    except pymysql.err.MySQLError as error:
        raise SandboxError(f"cannot provision {user}@{address} on {database}: {error.args[-1]}") from None
    finally:
        connection.close()
