"""Bring the sandbox's local world up and down: moto (the AWS APIs of every account), one
distribution registry per account, and the ECR-like front (ecr_front.py) that puts ECR's
rules in front of each registry. ``cloudops sandbox up|down|env``, ``cloudops demo`` and the
integration tests use it.

Everything lives under one ROOT directory::

    ROOT/state.json          what is running (SandboxState): the only record `down` trusts
    ROOT/pipeline.yaml       a pipeline file pointing at the local world
    ROOT/front.json          the front's config; ROOT/front.log its log
    ROOT/moto.log
    ROOT/registries/<name>/  each account's registry: config.yml, registry.log, storage/
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cloudops.errors import InputError
from cloudops.sandbox.databases import drop_account_databases
from cloudops.sandbox.mariadb import running_mariadb, start_mariadb
from cloudops.sandbox.processes import (
    Identify,
    SandboxError,
    ServerProcess,
    listening_socket,
    start_moto,
    start_python_module,
    start_registry,
    wait_for_http,
)

__all__ = [
    "ACCOUNTS",
    "IMAGES",
    "REGION",
    "SandboxState",
    "down",
    "env_exports",
    "expire_token",
    "load",
    "pipeline_yaml",
    "reset",
    "up",
]

ACCOUNTS = {"build": "111111111111", "qa": "222222222222", "preprod": "333333333333", "prod": "444444444444"}
REGION = "us-west-2"
IMAGES = ["ep/cortex", "ep/search", "ep/batch", "ep/integration", "ep/cm", "ep/activemq", "ep/data-pop-tool"]

STATE_FILE = "state.json"
FRONT_NAME = "front"
MOTO_NAME = "moto"
MARIADB_NAME = "mariadb"
DB_ADDRESSES = {name: f"127.0.0.{2 + n}" for n, name in enumerate(ACCOUNTS)}
"""Each account's database on its own loopback address (one private MariaDB, one user per
account allowed from its own address only: sandbox/mariadb.py)."""

# What each kind of process has in its command line: `down` only signals a recorded pid
# when it still runs that program (a pid may have been reused since `up`).
_CMDLINE_MARKERS = {
    MOTO_NAME: ("moto.server", "cloudops.sandbox.moto_server"),
    FRONT_NAME: ("cloudops.sandbox.ecr_front",),
    MARIADB_NAME: ("mariadbd", "mysqld"),
}
_REGISTRY_MARKERS = ("docker-registry", "registry")

# Processes started by this Python process. They must be reaped with wait(): a child that
# exited stays a zombie, which `kill -0` still sees as alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class SandboxState:
    """The running world, persisted as ROOT/state.json."""

    root: Path
    moto_url: str
    registries: dict[str, str]  # account name -> "127.0.0.1:PORT" of the ECR-like FRONT
    backends: dict[str, str]  # account name -> backend registry URL (no ECR rules)
    pids: dict[str, int]  # "moto", "registry-<name>", "front", "mariadb" -> pid
    pipeline: Path
    databases: dict[str, str] = field(default_factory=dict)  # account name -> "127.0.0.N:PORT"

    def to_json(self) -> str:
        return json.dumps(
            {
                "root": str(self.root),
                "moto_url": self.moto_url,
                "registries": self.registries,
                "backends": self.backends,
                "pids": self.pids,
                "pipeline": str(self.pipeline),
                "databases": self.databases,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SandboxState:
        doc = json.loads(text)
        return cls(
            root=Path(doc["root"]),
            moto_url=str(doc["moto_url"]),
            registries={str(k): str(v) for k, v in doc["registries"].items()},
            backends={str(k): str(v) for k, v in doc["backends"].items()},
            pids={str(k): int(v) for k, v in doc["pids"].items()},
            pipeline=Path(doc["pipeline"]),
            databases={str(k): str(v) for k, v in (doc.get("databases") or {}).items()},
        )

    def account_id(self, account: str) -> str:
        """The account id of an account name ("qa") or id."""
        if account in ACCOUNTS:
            return ACCOUNTS[account]
        if account in ACCOUNTS.values():
            return account
        raise SandboxError(f"unknown sandbox account {account!r}", hint=f"use one of {', '.join(ACCOUNTS)}")

    def account_name(self, account: str) -> str:
        account_id = self.account_id(account)
        return next(name for name, acct in ACCOUNTS.items() if acct == account_id)


def load(root: Path) -> SandboxState | None:
    path = root / STATE_FILE
    if not path.exists():
        return None
    return SandboxState.from_json(path.read_text())


def _write_state(state: SandboxState) -> None:
    path = state.root / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json() + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a state


def _cmdline(pid: int) -> str | None:
    """The process's command line, or None when it is gone (or a zombie). Without /proc
    (not Linux) only liveness can be told: "" stands for "alive, command unknown"."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    for _ in range(20):
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
            status = (proc / str(pid) / "stat").read_text()
        except OSError:
            return None
        if status.rpartition(")")[2].split()[:1] == ["Z"]:
            return None  # a zombie has exited; only its exit status waits to be collected
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        # Empty while a process is in the middle of exec: look again shortly.
        time.sleep(0.025)
    return None


def _is_ours(name: str, pid: int) -> bool:
    """True when ``pid`` is alive and still runs the program recorded under ``name``."""
    popen = _CHILDREN.get(pid)
    if popen is not None and popen.poll() is not None:
        return False
    cmdline = _cmdline(pid)
    if cmdline is None:
        return False
    if cmdline == "":
        return True  # no /proc: trust the pid
    markers = _CMDLINE_MARKERS.get(name, _REGISTRY_MARKERS)
    return any(marker in cmdline for marker in markers)


def _stop(pid: int) -> None:
    popen = _CHILDREN.pop(pid, None)
    if popen is None:
        _stop_foreign(pid)
        return
    popen.terminate()
    try:
        popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def _stop_foreign(pid: int, timeout: float = 5.0) -> None:
    """Stop a process another Python process started (`cloudops sandbox up` has exited).
    Gone or zombie both count as stopped: reaping is its parent's (often init's) job."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _cmdline(pid) is None:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _remember(server: ServerProcess) -> None:
    if server.popen is not None:
        _CHILDREN[server.pid] = server.popen


SANDBOX_EXTRA = ("aiohttp", "moto")
"""What only the sandbox needs (the ECR-like front, the local AWS): the optional extra
``cloudops[sandbox]``, so that a Jenkins agent's ``pip install cloudops`` pulls neither."""


def require_sandbox_extra() -> None:
    """Refuse, with the fix, to start a sandbox whose servers could not import."""
    missing = [name for name in SANDBOX_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"the sandbox needs {', '.join(missing)}, which this installation of cloudops lacks",
            hint="pip install 'cloudops[sandbox]' (make demo and make test install it)",
        )


def up(root: Path, *, detach: bool = True) -> SandboxState:
    """Start the world under ``root`` (idempotent: a world whose processes all live is
    returned unchanged). With ``detach`` the processes get their own session and outlive
    this process; `down` stops them later by the pids in ROOT/state.json."""
    require_sandbox_extra()
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    existing = load(root)
    if existing is not None:
        if all(_is_ours(name, pid) for name, pid in existing.pids.items()):
            return existing
        down(root)  # half a world: clear what is left and start afresh
    # moto keeps its state in memory only: a registry's storage from an earlier world would
    # hold images its new ECR never heard of (a tag the registry has and ECR's API lacks).
    shutil.rmtree(root / "registries", ignore_errors=True)

    started: list[ServerProcess] = []
    try:
        # moto takes the longest to start; registries start alongside it.
        with ThreadPoolExecutor(max_workers=len(ACCOUNTS) + 1) as pool:
            moto_future = pool.submit(start_moto, root, detach=detach)
            registry_futures: dict[str, Future[ServerProcess]] = {
                name: pool.submit(start_registry, root / "registries" / name, detach=detach)
                for name in ACCOUNTS
            }
            errors: list[BaseException] = []
            for future in [moto_future, *registry_futures.values()]:
                try:
                    server = future.result()
                except BaseException as exc:
                    errors.append(exc)
                else:
                    _remember(server)
                    started.append(server)
            if errors:
                raise errors[0]
        moto = moto_future.result()
        backends = {name: future.result().url for name, future in registry_futures.items()}

        # The front's ports are bound here and the sockets handed to it: each port is
        # owned from the start, never free for another process to take meanwhile.
        sockets = {account_id: listening_socket() for account_id in ACCOUNTS.values()}
        try:
            ports = [int(sockets[ACCOUNTS[name]].getsockname()[1]) for name in ACCOUNTS]
            front_config = {
                "moto_url": moto.url,
                "region": REGION,
                "blob_mounting": False,
                # ECR's blob reads: a 307 to a presigned URL on the front's blob host.
                "blob_redirect": True,
                "blob_port": 0,
                "presign_expires": 300,
                # Requests per second per account before 429 TOOMANYREQUESTS; 0 = off
                # (tests set a limit with POST /_sandbox/throttle?rate=R).
                "throttle_rate": 0,
                "accounts": [
                    {"account_id": ACCOUNTS[name], "listen_port": port, "backend": backends[name]}
                    for name, port in zip(ACCOUNTS, ports, strict=True)
                ],
            }
            (root / "front.json").write_text(json.dumps(front_config, indent=2) + "\n")
            front = _start_front(root, detach=detach, fds=sockets)
        finally:
            for sock in sockets.values():
                sock.close()  # the front holds its own copies now
        _remember(front)
        started.append(front)
        for name, port in zip(ACCOUNTS, ports, strict=True):
            wait_for_http(
                f"http://127.0.0.1:{port}/_sandbox/health",
                timeout=120,
                process=front.popen,
                identify=_front_of(ACCOUNTS[name]),
            )
    except BaseException:
        for server in reversed(started):
            _stop(server.pid)
        raise

    try:
        database = start_mariadb(root, list(DB_ADDRESSES.values()), detach=detach)
    except BaseException:
        for server in reversed(started):
            _stop(server.pid)
        raise
    drop_account_databases(database)  # a fresh world: its ECR and buckets are empty too
    databases = {name: f"{address}:{database.port}" for name, address in DB_ADDRESSES.items()}
    state = SandboxState(
        root=root,
        moto_url=moto.url,
        registries={name: f"127.0.0.1:{port}" for name, port in zip(ACCOUNTS, ports, strict=True)},
        backends=backends,
        pids={
            MOTO_NAME: moto.pid,
            **{f"registry-{name}": registry_futures[name].result().pid for name in ACCOUNTS},
            FRONT_NAME: front.pid,
            MARIADB_NAME: database.pid,
        },
        pipeline=root / "pipeline.yaml",
        databases=databases,
    )
    state.pipeline.write_text(pipeline_yaml(state))
    _write_state(state)
    return state


def _front_of(account_id: str) -> Identify:
    """The ECR-like front's health answer for ``account_id``, and nothing else."""

    def identify(status: int, headers: Mapping[str, str], body: bytes) -> bool:
        try:
            doc = json.loads(body)
        except ValueError:
            return False
        return status == 200 and isinstance(doc, dict) and doc.get("account_id") == account_id

    return identify


def _start_front(root: Path, *, detach: bool, fds: dict[str, socket.socket]) -> ServerProcess:
    # The front must not inherit the caller's AWS settings (a profile it cannot read, an
    # endpoint): it talks to moto with explicit keys only.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    popen = start_python_module(
        "cloudops.sandbox.ecr_front",
        [
            *("--config", str(root / "front.json")),
            *(f"--listen-fd={account_id}={sock.fileno()}" for account_id, sock in fds.items()),
        ],
        log_path=root / "front.log",
        env=env,
        pass_fds=tuple(sock.fileno() for sock in fds.values()),
        detach=detach,
    )
    return ServerProcess(FRONT_NAME, "", popen.pid, popen)


def down(root: Path) -> list[str]:
    """Stop exactly the processes recorded in ROOT/state.json (front first, moto last),
    remove state.json and return the names of those that were running."""
    root = root.resolve()
    state = load(root)
    if state is None:
        return []
    order = sorted(state.pids, key=lambda n: (n != FRONT_NAME, n == MOTO_NAME, n))
    stopped: list[str] = []
    for name in order:
        pid = state.pids[name]
        if _is_ours(name, pid):
            _stop(pid)
            stopped.append(name)
        else:
            _CHILDREN.pop(pid, None)
    (root / STATE_FILE).unlink(missing_ok=True)
    return stopped


def env_exports(state: SandboxState) -> dict[str, str]:
    """Environment for tools (cloudops, aws CLI, boto3) to use the sandbox."""
    return {
        "AWS_ENDPOINT_URL": state.moto_url,
        "AWS_ACCESS_KEY_ID": "sandbox",
        "AWS_SECRET_ACCESS_KEY": "sandbox",
        "AWS_DEFAULT_REGION": REGION,
        "CLOUDOPS_PIPELINE": str(state.pipeline),
        "CLOUDOPS_SANDBOX": str(state.root),
    }


def _post(url: str) -> bytes:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, OSError) as exc:
        raise SandboxError(
            f"sandbox server at {url} did not answer: {exc}", hint="is the sandbox up? (cloudops sandbox up)"
        ) from exc


def expire_token(state: SandboxState, account: str, count: int = 1) -> None:
    """Make the next ``count`` authenticated registry requests of ``account`` (name or id)
    answer 403 DENIED "token expired", as ECR does once a 12-hour token runs out."""
    name = state.account_name(account)
    _post(f"http://{state.registries[name]}/_sandbox/expire-token?count={int(count)}")


def reset(state: SandboxState) -> None:
    """Empty the world between test cases: all of moto's state (every account), every
    registry's storage, and the front's caches. The processes and ports stay the same.

    The registries are wiped in place: distribution (with no cache configured, as
    processes.start_registry writes it) reads its filesystem storage on every request, so
    removing the storage directory empties it without a restart."""
    _post(f"{state.moto_url}/moto-api/reset")
    for name in state.backends:
        shutil.rmtree(state.root / "registries" / name / "storage", ignore_errors=True)
    for front in state.registries.values():
        _post(f"http://{front}/_sandbox/flush")
    database = running_mariadb(state.root)
    if database is not None:
        drop_account_databases(database)


LAST = list(ACCOUNTS)[-1]
APPROVER_ROLE = f"arn:aws:iam::{ACCOUNTS[LAST]}:role/release-approver"
"""The role the sandbox's approvals of the last stage are made with."""


def pipeline_yaml(state: SandboxState) -> str:
    """The pipeline file of the sandbox, pointing at moto and the fronts."""
    lines = [
        "# Written by `cloudops sandbox up`: the embedded local world (moto + one registry per account).",
        "accounts:",
    ]
    for name, account_id in ACCOUNTS.items():
        builds = " builds_images: true," if name == "build" else ""
        lines.append(
            f'  {name + ":":<9}{{account_id: "{account_id}", region: {REGION},{builds} '
            f"bucket: ep-cloudops-{account_id}, "
            f'credentials: {{role_arn: "arn:aws:iam::{account_id}:role/cloudops"}}}}'
        )
    registries = ", ".join(f'{name}: "{state.registries[name]}"' for name in ACCOUNTS)
    lines += [
        f"stages: [{', '.join(ACCOUNTS)}]",
        f"images: [{', '.join(IMAGES)}]",
        "deployment_package: {key: deployment-package/ext-deployment-package.zip}",
        "config_root: config",
        "source_repositories: {account: build, names: [cloudcore-for-aws, docker]}",
        "endpoints:",
        f'  aws: "{state.moto_url}"',
        f"  registries: {{{registries}}}",
        "  insecure_registries: true",
        "  # Each account's database (its config names <account>-db.<account>.ep.internal) at its",
        "  # own loopback address of the sandbox's MariaDB (docs/database.md).",
        "  databases: {" + ", ".join(f'{n}: "{a}"' for n, a in state.databases.items()) + "}",
        "# The last stage takes a release only with an approval by its approver role",
        "# (`cloudops approve PLAN.json --role-arn ...release-approver`), never only by who applies it.",
        "approvals:",
        f"  {LAST}:",
        f'    approvers: ["arn:aws:sts::{ACCOUNTS[LAST]}:assumed-role/release-approver/*"]',
        "    jenkins_submitters: [release-managers]",
        f"    jenkins_credentials_id: cloudops-{LAST}-approver",
        "# Every image repository's settings: `cloudops init` applies them, `cloudops audit`",
        "# reports drift from them (docs/accounts.md).",
        "repositories:",
        "  defaults:",
        "    tag_immutability: IMMUTABLE",
        "    scan_on_push: true",
        "    encryption: {type: AES256}",
        "    lifecycle: {keep_untagged_days: 14, keep_last_tags: 50}",
        "    policy: null",
    ]
    return "\n".join(lines) + "\n"


SIGNED_STAGES = ("preprod", "prod")


def enable_signatures(state: SandboxState) -> tuple[Path, bytes]:
    """A cosign key pair for the sandbox (ROOT/keys: cosign.key, cosign.pub, and the key's
    random password in cosign.password, all 0600) and a ``verify:`` section in its
    pipeline file requiring signatures in preprod and prod. The private key's path and
    its password. Idempotent: the keys are made once."""
    from cloudops.signing.keys import generate_key_pair

    keys = state.root / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    private, public, secret = keys / "cosign.key", keys / "cosign.pub", keys / "cosign.password"
    if not (private.is_file() and public.is_file() and secret.is_file()):
        password = secrets.token_urlsafe(24).encode()
        private_pem, public_pem = generate_key_pair(password)
        for path, data in ((secret, password), (private, private_pem), (public, public_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # a file left by an earlier, broken run keeps no looser mode
            with os.fdopen(fd, "wb") as out:
                out.write(data)
    text = state.pipeline.read_text()
    if "\nverify:" not in text:
        state.pipeline.write_text(
            text
            + "# Stages that accept only images signed by the sandbox's cosign key (docs/signatures.md).\n"
            + f"verify: {{keys: [keys/cosign.pub], required_for: [{', '.join(SIGNED_STAGES)}]}}\n"
        )
    return private, secret.read_bytes()
