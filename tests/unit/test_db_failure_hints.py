"""A Data Population Tool run that cannot connect tells cloudops MariaDB's error number
(``connect_error``), and cloudops picks the fix by that number, never by the message text;
whatever else the tool's summary line holds is no number (it is read as hostile input)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pymysql
import pytest

from cloudops.db_population import DbSettings, _failure_hint
from cloudops.dbtool import cli as dbtool
from cloudops.dbtool.database import error_number

SETTINGS = DbSettings(
    "db.qa.internal", 3306, "commerce_qa", "ep_qa", "Sentinel", Path("config/qa/AWS/Config/live.env")
)


@pytest.mark.parametrize(
    ("error", "number"),
    [
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), 2003),
        (pymysql.err.OperationalError(1045, "Access denied for user"), 1045),
        (pymysql.err.InterfaceError(0, ""), None),  # PyMySQL's "not connected": no number
        (pymysql.err.OperationalError(True, "x"), None),
        (pymysql.err.OperationalError("2003", "x"), None),
        (pymysql.err.MySQLError(), None),
    ],
)
def test_error_number_is_a_positive_int_or_none(error: BaseException, number: int | None) -> None:
    assert error_number(error) == number


@pytest.mark.parametrize(
    ("connect_error", "names"),
    [
        (1045, ["EP_DB_USER", "EP_DB_PASS", "refused the login"]),
        (1698, ["EP_DB_USER", "EP_DB_PASS"]),
        (1044, ["EP_DB_NAME", "grants"]),
        (1130, ["EP_DB_USER", "allowed host"]),
        (1049, ["EP_DB_NAME", "no such database"]),
        (2003, ["EP_DB_HOSTNAME", "EP_DB_PORT", "endpoints.databases"]),
        (2013, ["EP_DB_HOSTNAME"]),
    ],
)
def test_each_connect_error_names_what_to_fix_and_where(connect_error: int, names: list[str]) -> None:
    hint = _failure_hint(connect_error, SETTINGS)
    assert all(name in hint for name in names), hint
    assert "live.env" in hint and "Sentinel" not in hint


@pytest.mark.parametrize("hostile", [None, [1045], {"a": 1}, "1045", True, 1045.0, -1, 99999])
def test_anything_else_in_the_summary_gets_the_general_hint_and_no_crash(hostile: object) -> None:
    hint = _failure_hint(hostile, SETTINGS)
    assert "rerun is safe" in hint and "EP_DB_PASS" not in hint


def test_the_tool_reports_the_number_when_the_server_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config"
    config.mkdir()
    (config / "database.properties").write_text(
        f"data.population.host=127.0.0.1\ndata.population.port={port}\n"
        "data.population.schemaname=commerce_qa\ndata.population.username=ep_qa\n"
        "data.population.password=SentinelPw\n"
    )
    changelogs = tmp_path / "changelog"
    changelogs.mkdir()
    (changelogs / "0001.sql").write_text("--liquibase formatted sql\n--changeset ep:one\nSELECT 1;\n")
    code = dbtool.main(["update-db", "--config-dir", str(config), "--changelog-dir", str(changelogs)])
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert code == 1 and summary["ok"] is False and summary["connect_error"] == 2003, summary
    assert "SentinelPw" not in out.out + out.err
