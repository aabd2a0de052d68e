"""The deployment package's Data Population Tool, run per account against that account's
own database: `cloudops db plan | update | reset` (docs/database.md).

Order, each before the next: the account guard (the credentials act in the account), the
account's database settings from its OWN config (config/<account>/AWS/Config/live.env),
the host rule (the database host is one this account's config names and no other
account's config uses: checked before any connection), the reset rule (protected stages),
the package version current in the account's OWN bucket, downloaded and verified by
SHA-256, its members checked (package_archive) and only the tool and the change logs
unpacked into a private temporary folder; then the tool's database.properties (0600,
never on a command line, never printed), the database lock in the account's bucket
(update and reset: two runs against one database are serialized), the tool, and a
record in the account's history.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cloudops.aws.guard import require_account
from cloudops.aws.s3 import AccountBucket
from cloudops.aws.s3_lock import KeyLock
from cloudops.config.envfile import read_env_file
from cloudops.config.hosts import hosts_in
from cloudops.config.tree import CONFIG_SUBDIR
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.package_archive import READ_BLOCK, inspect_package, validate_version
from cloudops.package_store import PackageStore, StoredPackage, store_for
from cloudops.pipeline import history
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.plan import (
    PackageFacts,
    PlanRoute,
    PromotionFacts,
    PromotionPlan,
    build_plan,
    inert_text,
)
from cloudops.pipeline.records import PromotionRecord

Command = Literal["plan", "update-db", "reset-db"]

ENV_FILE = "live.env"
TOOL_DIR = "tools/data-population-cli"
LAUNCHER = f"{TOOL_DIR}/bin/data-population"
UNPACKED = (f"{TOOL_DIR}/", "database/")
"""The only members unpacked: the tool and its change logs (the rest is not run here)."""
LOCK_KEY = "cloudops/locks/database.lock"
MAX_OUTPUT = 1024 * 1024
MAX_CHANGE_SETS = 10_000
_ToolText = Annotated[str, StringConstraints(max_length=512), AfterValidator(inert_text)]
TOOL_SECONDS = 3600.0
SETTING_KEYS = {
    "host": "EP_DB_HOSTNAME",
    "port": "EP_DB_PORT",
    "name": "EP_DB_NAME",
    "user": "EP_DB_USER",
    "password": "EP_DB_PASS",
}


class DatabaseRefused(RefusedError):
    """A database run the guard rails do not allow (exit 3)."""


class DatabaseToolError(CloudopsError):
    """The Data Population Tool failed (exit 1)."""


@dataclass(frozen=True)
class DbSettings:
    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)
    source: Path

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.name}"


@dataclass
class DbResult:
    account: str
    command: Command
    version: str
    database: str
    """user@host:port/name as the account's config names it (never the password)."""
    pending: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    applied_count: int = 0
    seconds: float = 0.0
    recorded: bool = False

    @property
    def ok(self) -> bool:
        return not self.changed

    def as_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "command": self.command,
            "package_version": self.version,
            "database": self.database,
            "ok": self.ok,
            "pending": self.pending,
            "changed": self.changed,
            "applied": self.applied,
            "applied_count": self.applied_count,
            "seconds": round(self.seconds, 3),
            "recorded": self.recorded,
        }


# -- settings and the host rule ---------------------------------------------------------


def database_settings(context: PipelineContext, account: str) -> DbSettings:
    """The account's database as its own live.env names it; refused (exit 3) when the host
    is not one this account's config names alone."""
    context.pipeline.account(account)
    path = context.pipeline.config_dir / account / CONFIG_SUBDIR / ENV_FILE
    if not path.is_file():
        raise InputError(
            f"no database settings for {account!r}: {path} does not exist",
            hint="each account's config names its own database (EP_DB_HOSTNAME, EP_DB_PORT, "
            "EP_DB_NAME, EP_DB_USER, EP_DB_PASS); `cloudops config check` lists what is missing",
        )
    env = read_env_file(path)
    values = env.values()
    missing = [key for key in SETTING_KEYS.values() if not values.get(key)]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}", hint="name the account's own database there")
    port_text = values["EP_DB_PORT"] or ""
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"{path}: EP_DB_PORT is not a port number", hint="EP_DB_PORT=3306")
    settings = DbSettings(
        host=_host_name(values["EP_DB_HOSTNAME"] or ""),
        port=int(port_text),
        name=values["EP_DB_NAME"] or "",
        user=values["EP_DB_USER"] or "",
        password=values["EP_DB_PASS"] or "",
        source=path,
    )
    _check_host(context, account, settings)
    return settings


def _check_host(context: PipelineContext, account: str, settings: DbSettings) -> None:
    """The config check's host rule for the one host about to be connected to: another
    account's config naming it means the two would share (or cross into) a database."""
    for other in context.pipeline.accounts:
        if other == account:
            continue
        folder = context.pipeline.config_dir / other / CONFIG_SUBDIR
        for env_path in sorted(folder.glob("*.env")) if folder.is_dir() else []:
            for key, value in read_env_file(env_path).values().items():
                named = hosts_in(key, value)
                if key == "EP_DB_HOSTNAME" and value:
                    named.add(_host_name(value))  # a local name too: two accounts on one host
                if settings.host in named:
                    raise DatabaseRefused(
                        f"the database host {settings.host} of {account!r} is also named by the "
                        f"config of {other!r} ({env_path.name}, {key}): refusing to connect",
                        hint=f"each account has its own database: fix EP_DB_HOSTNAME in {settings.source}",
                    )


def _host_name(value: str) -> str:
    """A host as the config check compares hosts (hosts.py: lowercase, no trailing dot or
    brackets), so "qa-db.internal." and "QA-DB.internal" are one host to the rule."""
    return value.strip().strip("[]").rstrip(".").lower()


def _endpoint(context: PipelineContext, account: str, settings: DbSettings) -> tuple[str, int]:
    override = context.pipeline.endpoints.databases.get(account)
    if override is None:
        return settings.host, settings.port
    host, _, port = override.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"endpoints.databases.{account} is not HOST:PORT", hint="e.g. 127.0.0.3:3306")
    return host, int(port)


# -- the package --------------------------------------------------------------------------


def _package(
    store: PackageStore, account: str, version: str | None, expected: str | None = None
) -> StoredPackage:
    """The version (default: the current one) in ``account``'s own bucket; ``expected``: the
    SHA-256 it must have (an approved reset plan's)."""
    if version is None:
        current = store.current()
        if current is None:
            raise InputError(
                f"{account!r} has no current deployment package",
                hint=f"promote a release into {account!r} first, or name --version",
            )
        version, expected = current["version"], current["sha256"].removeprefix("sha256:")
    stored = store.stored(validate_version(version))  # the pointer is bucket text: a version, or refused
    if stored is None:
        raise InputError(
            f"package {version} is not in {account!r}'s bucket",
            hint=f"promote it into {account!r} first (`cloudops promote package --to {account}`)",
        )
    if expected is not None and stored.sha256 != expected:
        raise DatabaseRefused(
            f"package {version} in {account!r} is {stored.sha256[:16]}…, not the "
            f"{expected[:16]}… it should be",
            hint="promote the package again to repair the account",
        )
    return stored


def _download(store: PackageStore, account: str, stored: StoredPackage, path: Path) -> None:
    """Stream the version to ``path`` hashing it; refused unless it is the bytes recorded."""
    with path.open("wb") as out:
        sha256, size = store.read_back_sha256(stored.key, out)
    if sha256 != stored.sha256 or size != stored.size:
        raise DatabaseRefused(
            f"package {stored.version} in {account!r}'s bucket does not match its SHA-256 "
            f"({sha256[:16]}…, recorded {stored.sha256[:16]}…): not run",
            hint=f"promote the package into {account!r} again",
        )


def _unpack(package: Path, into: Path) -> Path:
    """The tool and the change logs, and nothing else, into ``into``; every member name
    was checked by inspect_package (no absolute path, no '..', no link)."""
    inspect_package(package)
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(UNPACKED):
                continue
            target = (into / name).resolve()
            if into.resolve() not in target.parents:
                raise DatabaseRefused(f"package member {name[:200]!r} would unpack outside its folder")
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with archive.open(info) as source, target.open("wb") as out:
                for block in iter(lambda: source.read(READ_BLOCK), b""):
                    out.write(block)
    launcher = into / LAUNCHER
    if not launcher.is_file():
        raise InputError(
            f"the package has no Data Population Tool ({LAUNCHER})",
            hint="publish a deployment package built with the tool",
        )
    return launcher


def _write_properties(path: Path, host: str, port: int, settings: DbSettings) -> None:
    lines = [
        "# Written by cloudops for one run; removed with its folder.",
        f"data.population.host={host}",
        f"data.population.port={port}",
        f"data.population.schemaname={settings.name}",
        f"data.population.username={settings.user}",
        f"data.population.password={_escape_property(settings.password)}",
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def _escape_property(value: str) -> str:
    """Java .properties escaping of a value: backslashes, and leading spaces."""
    escaped = value.replace("\\", "\\\\")
    return "\\ " + escaped[1:] if escaped.startswith(" ") else escaped


# -- running it ---------------------------------------------------------------------------


def plan_database(
    context: PipelineContext, account: str, version: str | None = None, *, package_from: str | None = None
) -> DbResult:
    """The change sets `update-db` would apply, and applied ones whose checksum changed.
    ``package_from``: take the package from that account's bucket instead (a release plan
    shows what promoting it would do to the database before the package is there)."""
    return _run(context, account, version, "plan", package_from=package_from)


def has_database(context: PipelineContext, account: str) -> bool:
    """Whether the account's config names a database at all."""
    path = context.pipeline.config_dir / account / CONFIG_SUBDIR / ENV_FILE
    return path.is_file() and bool(read_env_file(path).values().get("EP_DB_HOSTNAME"))


def update_database(context: PipelineContext, account: str, version: str | None = None) -> DbResult:
    return _run(context, account, version, "update-db")


def reset_plan(context: PipelineContext, account: str, version: str | None = None) -> PromotionPlan:
    """The plan an approver approves before a protected stage's database is reset: the
    account, and the package version (with its SHA-256) whose tool would repopulate it.
    `cloudops approve` records approvals of it as of any plan."""
    pipeline = context.pipeline
    account_id = pipeline.account(account).account_id
    arn = require_account(context.session(account), purpose=f"plan a database reset in {account!r}")
    settings = database_settings(context, account)
    stored = _package(store_for(context, account), account, version)
    route = PlanRoute(
        release=f"db-reset {stored.version}",
        source=account,
        source_id=account_id,
        destination=account,
        destination_id=account_id,
        purpose="db-reset",
    )
    facts = PromotionFacts(
        route,
        (),
        PackageFacts(stored.version, stored.sha256, stored.size, stored.sha256),
        (
            f"account guard {account} ({account_id}): {arn}",
            f"database {settings.describe()}: reset drops every table, then populates it",
        ),
    )
    return build_plan(facts, planned_at=datetime.now(UTC), planned_by=arn)


def reset_database(
    context: PipelineContext,
    account: str,
    version: str | None = None,
    *,
    plan: PromotionPlan | None = None,
) -> DbResult:
    """`reset-db`. A protected stage's database (pipeline.protected_databases()) is reset
    only where databases.allow_reset names the stage, and only with ``plan`` (reset_plan)
    approved as the stage's approval rule says: another identity than who resets."""
    pipeline = context.pipeline
    pipeline.account(account)
    if account in pipeline.protected_databases():
        if account not in pipeline.databases.allow_reset:
            raise DatabaseRefused(
                f"the database of {account!r} is protected: `db reset` drops every table",
                hint="reset only unprotected stages; pipeline.yaml databases.allow_reset lists the "
                "protected ones where it is allowed (with an approval)",
            )
        if plan is None:
            raise DatabaseRefused(
                f"resetting the database of protected {account!r} needs an approved reset plan",
                hint=f"cloudops db reset --account {account} --out RESET.json; an approver runs "
                "`cloudops approve RESET.json`; then "
                f"cloudops db reset --account {account} --plan RESET.json",
            )
        version, sha256 = _approved_reset(context, account, plan)
        return _run(context, account, version, "reset-db", expected_sha256=sha256)
    return _run(context, account, version, "reset-db")


def _approved_reset(context: PipelineContext, account: str, plan: PromotionPlan) -> tuple[str, str]:
    """The version and SHA-256 an approved reset plan names (the reset runs those bytes)."""
    from cloudops.release_gates import require_approval

    if plan.route.purpose != "db-reset" or plan.route.destination != account or plan.package is None:
        raise InputError(
            f"that plan is not a database reset of {account!r}",
            hint=f"cloudops db reset --account {account} --out RESET.json",
        )
    arn = require_account(context.session(account), purpose=f"reset the database of {account!r}")
    require_approval(context, plan, arn)
    if plan.package.source_sha256 is None:
        raise InputError("the reset plan names no package SHA-256", hint="plan the reset again")
    return plan.package.version, plan.package.source_sha256


def _run(
    context: PipelineContext,
    account: str,
    version: str | None,
    command: Command,
    *,
    package_from: str | None = None,
    expected_sha256: str | None = None,
) -> DbResult:
    session = context.session(account)
    arn = require_account(session, purpose=f"run the Data Population Tool in {account!r}")
    settings = database_settings(context, account)  # the host rule, before anything else
    host, port = _endpoint(context, account, settings)
    holder = account
    if package_from is not None and package_from != account:
        require_account(context.session(package_from), purpose=f"read the package from {package_from!r}")
        holder = package_from
    store = store_for(context, holder)
    stored = _package(store, holder, version, expected_sha256)
    result = DbResult(account, command, stored.version, settings.describe())
    started = time.monotonic()
    error: BaseException | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="cloudops-db-") as temporary:
            folder = Path(temporary)
            package = folder / "package.zip"
            _download(store, holder, stored, package)
            launcher = _unpack(package, folder / "package")
            config = folder / "config"
            config.mkdir(mode=0o700)
            _write_properties(config / "database.properties", host, port, settings)
            bucket = store_for(context, account).bucket if holder != account else store.bucket
            with _lock(bucket, account, command):
                output = _tool(launcher, command, config, settings)
        result.pending = [c.model_dump(exclude_none=True) for c in output.pending]
        result.changed = [c.model_dump(exclude_none=True) for c in output.changed]
        result.applied = list(output.applied)
        result.applied_count = output.applied_count
        return result
    except BaseException as exc:  # recorded as failed whatever it was, then raised
        error = exc
        raise
    finally:
        result.seconds = time.monotonic() - started
        if command != "plan":
            _record(context, account, arn, result, error)


@contextlib.contextmanager
def _lock(bucket: AccountBucket, account: str, command: Command) -> Iterator[None]:
    if command == "plan":
        yield
        return
    with KeyLock(bucket.client, bucket.name, LOCK_KEY, what=f"the database of {account!r}"):
        yield


class _ChangeSet(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: _ToolText
    author: _ToolText
    filename: _ToolText
    applied_checksum: _ToolText | None = None


class _ToolOutput(BaseModel):
    """The tool's summary line: it comes from a program inside a package read from a
    bucket, so it is validated and bounded like any record read back."""

    model_config = ConfigDict(extra="ignore")

    pending: list[_ChangeSet] = Field(default=[], max_length=MAX_CHANGE_SETS)
    changed: list[_ChangeSet] = Field(default=[], max_length=MAX_CHANGE_SETS)
    applied: list[_ToolText] = Field(default=[], max_length=MAX_CHANGE_SETS)
    applied_count: Annotated[int, Field(ge=0, le=10**9)] = 0


def _tool(launcher: Path, command: Command, config: Path, settings: DbSettings) -> _ToolOutput:
    argv = [sys.executable, str(launcher), command, "--config-dir", str(config)]
    if command == "plan":
        argv.append("--json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUDOPS_", "COSIGN_"))}
    # Output to files, read back bounded: the tool may print more than memory holds.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            code = subprocess.run(argv, stdout=out, stderr=err, timeout=TOOL_SECONDS, env=env, check=False)
        except subprocess.TimeoutExpired:
            raise DatabaseToolError(
                f"the Data Population Tool ran over {TOOL_SECONDS:.0f} s", hint="look at the database"
            ) from None
        stdout, stderr = _tail(out), _tail(err)
    document = _last_json(stdout)
    if code.returncode == 0 and document is not None:
        try:
            return _ToolOutput.model_validate(document)
        except ValidationError:
            raise DatabaseToolError(
                f"the Data Population Tool ({command}) printed a summary that is not one",
                hint="the package's tool is not the one cloudops runs; publish a package built with it",
            ) from None
    said = (document or {}).get("error") or _last_line(stderr) or f"exit {code.returncode}"
    said = str(said).replace(settings.password, "***") if settings.password else str(said)
    message = f"the Data Population Tool ({command}) failed: {said[:500]}"
    if code.returncode == 3:
        raise DatabaseRefused(message, hint="nothing was applied; see docs/database.md")
    if code.returncode == 2:
        raise InputError(message, hint="check the account's database settings and change logs")
    raise DatabaseToolError(message, hint=_failure_hint((document or {}).get("connect_error"), settings))


# MariaDB error numbers (mariadb.com/kb/en/mariadb-error-codes) the tool reports as
# "connect_error" when it could not connect: each needs its own fix.
_LOGIN_REFUSED = frozenset({1045, 1698})  # wrong user or password; no password login for the user
_NOT_ALLOWED = frozenset({1044, 1130})  # no grant on the database; the user may not log in from here
_UNKNOWN_DATABASE = 1049
_UNREACHABLE = frozenset({2002, 2003, 2005, 2013})  # socket, refused/unroutable, unknown host, lost


def _failure_hint(connect_error: object, settings: DbSettings) -> str:
    """What to do, by the error number the tool reported when it could not connect (read
    from its summary line: anything but a positive int is no number)."""
    number = connect_error if isinstance(connect_error, int) and not isinstance(connect_error, bool) else None
    where = settings.source
    if number in _LOGIN_REFUSED:
        return (
            f"the database refused the login: set EP_DB_USER and EP_DB_PASS in {where} to the "
            "account's database user (nothing was applied)"
        )
    if number in _NOT_ALLOWED:
        return (
            f"the user may not use this database from here: check EP_DB_USER and EP_DB_NAME in "
            f"{where}, and the user's grants and allowed host (nothing was applied)"
        )
    if number == _UNKNOWN_DATABASE:
        return f"no such database: set EP_DB_NAME in {where} to the account's database (nothing was applied)"
    if number in _UNREACHABLE:
        return (
            f"check EP_DB_HOSTNAME and EP_DB_PORT in {where} (and endpoints.databases in "
            "pipeline.yaml) and that the database is up; a rerun is safe"
        )
    return "see the tool's message; a rerun is safe: it applies only what is still missing"


def _tail(handle: IO[bytes]) -> bytes:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - MAX_OUTPUT))
    return handle.read(MAX_OUTPUT)


def _last_json(stdout: bytes) -> dict[str, Any] | None:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _record(
    context: PipelineContext, account: str, arn: str, result: DbResult, error: BaseException | None
) -> None:
    pipeline = context.pipeline
    account_id = pipeline.account(account).account_id
    if error is None:
        outcome = "reset" if result.command == "reset-db" else "updated"
    else:
        outcome = "refused" if isinstance(error, CloudopsError) and error.kind == "refused" else "failed"
    applied = ", ".join(result.applied)
    reason = f"{len(result.applied)} change sets applied" + (f": {applied}" if applied else "")
    with contextlib.suppress(CloudopsError):
        history.append(
            context,
            PromotionRecord.new(
                kind="database",
                who=history.who_am_i(arn),
                source_account=account,
                source_account_id=account_id,
                destination_account=account,
                destination_account_id=account_id,
                version=result.version,
                seconds=result.seconds,
                result=outcome,
                reason=reason[:500],
                error=_error_text(error),
            ),
        )
        result.recorded = True


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    return str(error) if isinstance(error, CloudopsError) else f"interrupted: {type(error).__name__}"
