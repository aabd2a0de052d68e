"""The Data Population Tool against a real private MariaDB (cloudops.sandbox.mariadb), run
as the deployment package runs it: the tool's files and the change logs laid out as in the
unpacked zip, ``python3 tools/data-population-cli/bin/data-population COMMAND --config-dir``.

Two "accounts" share the server, each on its own loopback address with its own database
and user (allowed only from that address)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from cloudops.dbtool import changelog
from cloudops.dbtool.cli import tool_files
from cloudops.sandbox.changelogs import changelogs_for
from cloudops.sandbox.mariadb import MariaDbServer, mariadb_binaries, provision, start_mariadb
from cloudops.sandbox.processes import SandboxError

LAUNCHER = "tools/data-population-cli/bin/data-population"
ADDRESS_A = "127.0.0.2"
ADDRESS_B = "127.0.0.3"


@dataclass
class Account:
    name: str
    database: str
    user: str
    password: str
    address: str
    port: int

    def properties(self, **overrides: str) -> str:
        keys = {
            "host": self.address,
            "port": str(self.port),
            "schemaname": self.database,
            "username": self.user,
            "password": self.password,
            **overrides,
        }
        return "".join(f"data.population.{key}={value}\n" for key, value in keys.items())


@dataclass
class World:
    server: MariaDbServer
    a: Account
    b: Account
    passwords: tuple[str, ...]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    try:
        mariadb_binaries()
    except SandboxError:
        pytest.skip("mariadbd is not installed (Debian package mariadb-server)")
    server = start_mariadb(tmp_path_factory.mktemp("mariadb"), [ADDRESS_A, ADDRESS_B], detach=False)
    try:
        a = Account("qa", "ep_qa", "dpt_qa", "pw-" + secrets.token_hex(12), ADDRESS_A, server.port)
        b = Account("prod", "ep_prod", "dpt_prod", "pw-" + secrets.token_hex(12), ADDRESS_B, server.port)
        for account in (a, b):
            provision(server, account.database, account.user, account.password, account.address)
        yield World(server, a, b, (a.password, b.password))
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _empty_databases(world: World) -> None:
    for account in (world.a, world.b):
        _wipe(world.server, account.database)


def _admin_query(server: MariaDbServer, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    connection = server.admin()
    try:
        cursor = connection.cursor()
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    finally:
        connection.close()


def _wipe(server: MariaDbServer, database: str) -> None:
    names = _tables(server, database)
    connection = server.admin()
    try:
        cursor = connection.cursor()
        cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        for (name,) in names:
            cursor.execute(f"DROP TABLE IF EXISTS `{database}`.`{name}`")
    finally:
        connection.close()


def _tables(server: MariaDbServer, database: str) -> list[tuple[str]]:
    rows = _admin_query(
        server, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,)
    )
    return [(str(row[0]),) for row in rows]


def _table_names(server: MariaDbServer, database: str) -> set[str]:
    return {name for (name,) in _tables(server, database)}


def _changelog_rows(server: MariaDbServer, database: str) -> list[tuple[str, str]]:
    if "DATABASECHANGELOG" not in _table_names(server, database):
        return []
    rows = _admin_query(
        server, f"SELECT ID, MD5SUM FROM `{database}`.DATABASECHANGELOG ORDER BY ORDEREXECUTED"
    )
    return [(str(r[0]), str(r[1])) for r in rows]


def _lock(server: MariaDbServer, database: str) -> tuple[int, str | None]:
    rows = _admin_query(
        server, f"SELECT `LOCKED`, LOCKEDBY FROM `{database}`.DATABASECHANGELOGLOCK WHERE ID = 1"
    )
    return int(rows[0][0]), rows[0][1]


@dataclass
class Run:
    code: int
    summary: dict[str, Any]
    stdout: str
    stderr: str


class Package:
    """An unpacked deployment package: the tool and ``database/changelog/``."""

    def __init__(self, root: Path, world: World, changelogs: dict[str, str]):
        self.root = root
        self.world = world
        for path, content in tool_files().items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        self.set_changelogs(changelogs)

    def set_changelogs(self, changelogs: dict[str, str]) -> None:
        directory = self.root / "database" / "changelog"
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.sql"):
            old.unlink()
        for path, text in changelogs.items():
            (self.root / path).write_text(text)

    def config(self, account: Account, **overrides: str) -> Path:
        directory = self.root.parent / f"config-{account.name}-{secrets.token_hex(4)}"
        directory.mkdir()
        (directory / "database.properties").write_text(account.properties(**overrides))
        return directory

    def command(self, command: str, config: Path, *extra: str) -> list[str]:
        return [sys.executable, str(self.root / LAUNCHER), command, "--config-dir", str(config), *extra]

    def run(self, command: str, account: Account, *extra: str, **overrides: str) -> Run:
        done = subprocess.run(
            self.command(command, self.config(account, **overrides), *extra),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root.parent,
            env=_clean_env(),
        )
        return _checked(self.world, done.returncode, done.stdout, done.stderr)


def _clean_env() -> dict[str, str]:
    """The tool runs with the venv's interpreter (PyMySQL) and nothing of cloudops on its path."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _checked(world: World, code: int, stdout: str, stderr: str) -> Run:
    for password in world.passwords:  # on every run, whatever the outcome
        assert password not in stdout and password not in stderr
    lines = stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return Run(code, summary, stdout, stderr)


def _ids(version: str) -> list[str]:
    return [c.id for c in changelog.load_changelogs(changelogs_for(version))]


@pytest.fixture
def package(tmp_path: Path, world: World) -> Package:
    return Package(tmp_path / "unpacked", world, changelogs_for("8.5.0"))


# --- update ------------------------------------------------------------------------------


def test_update_applies_exactly_the_missing_change_sets_then_nothing(world: World, package: Package) -> None:
    first = package.run("update-db", world.a)
    assert first.code == 0, first.stderr
    assert first.summary["command"] == "update-db" and first.summary["ok"] is True
    assert first.summary["applied"] == _ids("8.5.0")
    expected = {c.id: c.checksum for c in changelog.load_changelogs(changelogs_for("8.5.0"))}
    assert dict(_changelog_rows(world.server, world.a.database)) == expected
    assert {"TCATALOG", "TPRODUCT", "TPRODUCTSKU", "TBASEAMOUNT", "TSETTINGDEFINITION"} <= _table_names(
        world.server, world.a.database
    )
    assert _lock(world.server, world.a.database) == (0, None)

    again = package.run("update-db", world.a)
    assert again.code == 0 and again.summary["applied"] == []

    # A row lost (say, by hand): exactly that change set runs again, and nothing else.
    _admin_query(world.server, f"DELETE FROM {world.a.database}.DATABASECHANGELOG WHERE ID = '8.5.0-price'")
    repair = package.run("update-db", world.a)
    assert repair.code == 0 and repair.summary["applied"] == ["8.5.0-price"]
    assert _admin_query(world.server, f"SELECT COUNT(*) FROM {world.a.database}.TBASEAMOUNT") == [(2,)]
    assert _table_names(world.server, world.b.database) == set()  # the other account untouched


def test_850_then_860_applies_exactly_two_more(world: World, package: Package) -> None:
    assert package.run("update-db", world.a).code == 0
    package.set_changelogs(changelogs_for("8.6.0"))

    plan = package.run("plan", world.a, "--json")
    assert plan.code == 0
    assert [p["id"] for p in plan.summary["pending"]] == ["8.6.0-product-brand", "8.6.0-price-sku-index"]
    assert plan.summary["changed"] == [] and plan.summary["applied_count"] == 4

    update = package.run("update-db", world.a)
    assert update.code == 0, update.stderr
    assert update.summary["applied"] == ["8.6.0-product-brand", "8.6.0-price-sku-index"]
    assert [row_id for row_id, _ in _changelog_rows(world.server, world.a.database)] == _ids("8.6.0")
    columns = _admin_query(
        world.server,
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'TPRODUCT'",
        (world.a.database,),
    )
    assert ("BRAND_CODE",) in columns
    assert package.run("plan", world.a, "--json").summary["up_to_date"] is True


def test_a_tampered_applied_change_set_is_refused_and_nothing_applied(world: World, package: Package) -> None:
    assert package.run("update-db", world.a).code == 0
    _admin_query(
        world.server,
        f"UPDATE {world.a.database}.DATABASECHANGELOG SET MD5SUM = '9:00000000000000000000000000000000'"
        " WHERE ID = '8.5.0-catalog'",
    )
    package.set_changelogs(changelogs_for("8.6.0"))

    plan = package.run("plan", world.a, "--json")
    assert [c["id"] for c in plan.summary["changed"]] == ["8.5.0-catalog"]

    refused = package.run("update-db", world.a)
    assert refused.code == 3
    assert refused.summary["ok"] is False and refused.summary["applied"] == []
    assert "Validation Failed: 1 change sets check sum" in refused.summary["error"]
    assert len(_changelog_rows(world.server, world.a.database)) == 4  # neither 8.6.0 change set
    columns = _admin_query(
        world.server,
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = %s AND COLUMN_NAME = 'BRAND_CODE'",
        (world.a.database,),
    )
    assert columns == []
    assert _lock(world.server, world.a.database) == (0, None)  # released on the way out


def test_a_lock_held_by_another_run_is_refused_until_released(world: World, package: Package) -> None:
    assert package.run("update-db", world.a).code == 0
    package.set_changelogs(changelogs_for("8.6.0"))
    _admin_query(
        world.server,
        f"UPDATE {world.a.database}.DATABASECHANGELOGLOCK SET `LOCKED` = 1, LOCKGRANTED = NOW(),"
        " LOCKEDBY = 'jenkins-agent-7 (pid 4242)' WHERE ID = 1",
    )
    held = package.run("update-db", world.a)
    assert held.code == 3 and held.summary["applied"] == []
    assert "Could not acquire change log lock" in held.summary["error"]
    assert "jenkins-agent-7 (pid 4242)" in held.summary["error"]
    assert len(_changelog_rows(world.server, world.a.database)) == 4

    released = package.run("release-locks", world.a)
    assert released.code == 0 and released.summary["released"] == "jenkins-agent-7 (pid 4242)"
    assert package.run("update-db", world.a).summary["applied"] == _ids("8.6.0")[4:]


# --- isolation and secrets ---------------------------------------------------------------


def test_an_account_cannot_reach_another_accounts_database(world: World, package: Package) -> None:
    through_b = package.run("update-db", world.a, host=world.b.address)
    assert through_b.code == 1
    assert f"Access denied for user '{world.a.user}'@'{world.b.address}'" in through_b.summary["error"]

    into_b = package.run("update-db", world.a, schemaname=world.b.database)
    assert into_b.code == 1
    assert f"to database '{world.b.database}'" in into_b.summary["error"]

    # Straight from PyMySQL too: A's user from A's address sees only A's database.
    connection = pymysql.connect(
        host=world.a.address,
        port=world.a.port,
        user=world.a.user,
        password=world.a.password,
        bind_address=world.a.address,
    )
    try:
        cursor = connection.cursor()
        cursor.execute("SHOW DATABASES")
        assert {row[0] for row in cursor.fetchall()} == {"information_schema", world.a.database}
    finally:
        connection.close()
    assert _table_names(world.server, world.b.database) == set()

    b = package.run("update-db", world.b)  # B's own credentials work, on B's address
    assert b.code == 0 and b.summary["applied"] == _ids("8.5.0")


def test_the_password_never_appears_in_the_tools_output(world: World, package: Package) -> None:
    runs = [
        package.run("update-db", world.a),
        package.run("plan", world.a),
        package.run("plan", world.a, "--json"),
        package.run("filter-data", world.a),
        package.run("update-db", world.a, password=world.b.password),  # wrong password
        package.run("update-db", world.a, port="1"),  # nothing listens
        package.run("update-db", world.a, schemaname="no such db"),  # configuration error
    ]
    assert [run.code for run in runs] == [0, 0, 0, 0, 1, 1, 2]
    # _checked asserted on every run that neither password appears; the failures say why
    assert "Access denied" in runs[4].summary["error"]
    assert "(using password: YES)" in runs[4].summary["error"]


# --- reset -------------------------------------------------------------------------------


def test_reset_db_drops_every_table_and_recreates_the_schema(world: World, package: Package) -> None:
    assert package.run("update-db", world.a).code == 0
    database = world.a.database
    _admin_query(world.server, f"CREATE TABLE {database}.TLEFTOVER (X INT)")
    _admin_query(
        world.server, f"INSERT INTO {database}.TCATALOG (UIDPK, CATALOG_CODE, NAME) VALUES (7, 'x', 'y')"
    )

    reset = package.run("reset-db", world.a)
    assert reset.code == 0, reset.stderr
    assert reset.summary["applied"] == _ids("8.5.0")
    assert "TLEFTOVER" in reset.summary["dropped"] and "DATABASECHANGELOGLOCK" not in reset.summary["dropped"]
    assert "TLEFTOVER" not in _table_names(world.server, database)
    assert _admin_query(world.server, f"SELECT UIDPK FROM {database}.TCATALOG") == [(1,)]
    assert [row_id for row_id, _ in _changelog_rows(world.server, database)] == _ids("8.5.0")
    assert _lock(world.server, database) == (0, None)
    assert package.run("update-db", world.a).summary["applied"] == []


# --- kill -9 -----------------------------------------------------------------------------

SLOW = """\
--liquibase formatted sql

--changeset test:slow-1
CREATE TABLE IF NOT EXISTS TSLOW_BEFORE (X INT);
SELECT SLEEP(3);
CREATE TABLE IF NOT EXISTS TSLOW_AFTER (X INT);

--changeset test:after-slow
CREATE TABLE IF NOT EXISTS TAFTER (X INT);
"""


def _slow_update(world: World, package: Package) -> subprocess.Popen[bytes]:
    """update-db of account a started on the 8.5.0 change logs plus SLOW, which sleeps."""
    package.set_changelogs({**changelogs_for("8.5.0"), "database/changelog/0009-slow.sql": SLOW})
    return subprocess.Popen(
        package.command("update-db", package.config(world.a)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_clean_env(),
    )


def test_kill_9_during_an_update_then_a_rerun_completes_consistently(world: World, package: Package) -> None:
    database = world.a.database
    tool = _slow_update(world, package)
    try:
        _wait_for_sleep(world.server, deadline=time.monotonic() + 30)
        tool.send_signal(signal.SIGKILL)
    finally:
        stdout, stderr = tool.communicate(timeout=30)  # reaped: no zombie holds the pid
    _checked(world, 0, stdout.decode(), stderr.decode())
    assert tool.returncode == -signal.SIGKILL

    # Killed inside slow-1: the 8.5.0 change sets have rows, slow-1 has none (its first
    # table exists: DDL commits at once), and the lock is left with the dead pid.
    rows = [row_id for row_id, _ in _changelog_rows(world.server, database)]
    assert rows == _ids("8.5.0")
    assert "TSLOW_BEFORE" in _table_names(world.server, database)
    assert "TSLOW_AFTER" not in _table_names(world.server, database)
    locked, holder = _lock(world.server, database)
    assert locked == 1 and holder is not None and f"(pid {tool.pid})" in holder

    rerun = package.run("update-db", world.a)
    assert rerun.code == 0, rerun.stderr
    assert "cleared a stale change log lock" in rerun.stderr
    assert rerun.summary["applied"] == ["slow-1", "after-slow"]
    # Consistent: every change set has its row once, and every table they create exists.
    rows = [row_id for row_id, _ in _changelog_rows(world.server, database)]
    assert rows == [*_ids("8.5.0"), "slow-1", "after-slow"]
    assert {"TSLOW_BEFORE", "TSLOW_AFTER", "TAFTER"} <= _table_names(world.server, database)
    assert _lock(world.server, database) == (0, None)


def _wait_for_sleep(server: MariaDbServer, deadline: float) -> None:
    """Until the tool's connection is inside SELECT SLEEP (slow-1 half done)."""
    while time.monotonic() < deadline:
        running = _admin_query(
            server, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'"
        )
        if running[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError("the update never reached SELECT SLEEP")


def test_sigterm_during_an_update_rolls_back_and_releases_the_lock(world: World, package: Package) -> None:
    tool = _slow_update(world, package)
    try:
        _wait_for_sleep(world.server, deadline=time.monotonic() + 30)
        tool.send_signal(signal.SIGTERM)
    finally:
        stdout, stderr = tool.communicate(timeout=30)
    run = _checked(world, tool.returncode, stdout.decode(), stderr.decode())
    assert run.code == 1 and run.summary["ok"] is False and "SIGTERM" in run.summary["error"]
    assert _lock(world.server, world.a.database) == (0, None)  # released by a fresh session
    assert [row_id for row_id, _ in _changelog_rows(world.server, world.a.database)] == _ids("8.5.0")


def test_the_server_keeps_its_temporary_files_in_its_own_folder(world: World) -> None:
    """mariadbd deletes every #sql* file of its tmpdir when it starts: with /tmp shared, a
    second sandbox's server (a second test worker) deleted this one's live temporary tables
    and broke its bootstrap. Each server's tmpdir is its own, the bootstrap's too."""
    (tmpdir,) = _admin_query(world.server, "SELECT @@tmpdir")[0]
    assert Path(str(tmpdir)).resolve() == (world.server.root / "tmp").resolve()
