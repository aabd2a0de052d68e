"""The Data Population Tool's pure parts: formatted SQL change logs, Liquibase checksums,
the plan, database.properties, and the demo's change logs."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.dbtool import changelog, cli, database
from cloudops.dbtool.changelog import AppliedRow, ChangelogError, ChangeSet, change_set_checksum
from cloudops.sandbox.changelogs import changelogs_for

SAMPLE = """\
--liquibase formatted sql
-- a comment before the first change set; ignored

--changeset ep:1 runOnChange:false splitStatements:true
--comment: the catalog
CREATE TABLE IF NOT EXISTS TCATALOG (UIDPK BIGINT NOT NULL); -- trailing comment; with a semicolon
/* a block; comment */ INSERT IGNORE INTO TCATALOG VALUES (1);
INSERT IGNORE INTO TNOTE VALUES ('it''s; fine', "a;b", 'back\\'slash;');
--rollback DROP TABLE TCATALOG;

--changeSet "ep team":2
SELECT 1--1
"""


def _liquibase_v9(sql_text: str) -> str:
    """Liquibase 4's version 9 checksum of a one-change formatted SQL change set, written
    out independently: md5 of the SQL without spaces, tabs, CR, LF; then md5 of "9:<that>:"."""
    stripped = "".join(ch for ch in sql_text if ch not in " \t\r\n")
    change = "9:" + hashlib.md5(stripped.encode()).hexdigest()
    return "9:" + hashlib.md5((change + ":").encode()).hexdigest()


# --- parsing -----------------------------------------------------------------------------


def test_parse_reads_identity_statements_and_comments() -> None:
    first, second = changelog.parse(SAMPLE, "database/changelog/0001-x.sql")
    assert (first.id, first.author, first.filename, first.line) == (
        "1",
        "ep",
        "database/changelog/0001-x.sql",
        4,
    )
    assert first.comments == "the catalog"
    assert first.sql == (
        "CREATE TABLE IF NOT EXISTS TCATALOG (UIDPK BIGINT NOT NULL)",
        "/* a block; comment */ INSERT IGNORE INTO TCATALOG VALUES (1)",
        "INSERT IGNORE INTO TNOTE VALUES ('it''s; fine', \"a;b\", 'back\\'slash;')",
    )
    assert (second.id, second.author, second.line) == ("2", "ep team", 11)
    assert second.sql == ("SELECT 1--1",)  # "--" not followed by a space is arithmetic, as in MariaDB
    assert str(first) == "database/changelog/0001-x.sql::1::ep"


def test_checksum_is_liquibase_v9_of_the_sql_without_directives() -> None:
    first, _ = changelog.parse(SAMPLE, "f.sql")
    body = SAMPLE.split("--comment: the catalog\n", 1)[1].split("--rollback", 1)[0]
    assert first.checksum == _liquibase_v9(body)
    assert first.checksum.startswith("9:") and len(first.checksum) == 34  # fits MD5SUM VARCHAR(35)


def test_checksum_ignores_whitespace_and_directives_but_not_sql_or_comments() -> None:
    base = "--liquibase formatted sql\n--changeset a:1\nCREATE TABLE T (X INT);\n"
    spaced = "--liquibase formatted sql\n\n--changeset a:1\n  CREATE   TABLE\tT (X INT) ;\r\n\n"
    directives = base + "--rollback DROP TABLE T;\n--comment: new words\n--validCheckSum: ANY\n"
    (one,) = changelog.parse(base, "f.sql")
    assert changelog.parse(spaced, "f.sql")[0].checksum == one.checksum
    assert changelog.parse(directives, "f.sql")[0].checksum == one.checksum
    assert changelog.parse(base.replace("X INT", "X BIGINT"), "f.sql")[0].checksum != one.checksum
    assert changelog.parse(base + "-- a remark\n", "f.sql")[0].checksum != one.checksum


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "missing header"),
        ("\n\nCREATE TABLE T (X INT);\n", 3, "missing header"),
        (
            "--liquibase formatted sql\nCREATE TABLE T (X INT);\n--changeset a:1\nSELECT 1;\n",
            2,
            "before the first",
        ),
        ("--liquibase formatted sql\n/* only\na comment */\n--changeset a:1\nSELECT 1;\n", None, None),
        ("--liquibase formatted sql\nSELECT 1;\n", 2, "outside any --changeset"),
        (
            "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n--changeset a:1\nSELECT 2;\n",
            4,
            "duplicate",
        ),
        ("--liquibase formatted sql\n--changeset nocolon\nSELECT 1;\n", 2, "malformed --changeset"),
        ("--liquibase formatted sql\n--changeset a:1\n-- nothing here\n--rollback x;\n", 2, "has no SQL"),
        ("--liquibase formatted sql\n--changeset a:1\nSELECT 1;\nSELECT 'open;\n", 4, "unterminated"),
        ("--liquibase formatted sql\n--changeset a:1\nSELECT 1; /* open\n", 3, "unterminated /*"),
    ],
)
def test_malformed_change_logs_name_file_and_line(text: str, line: int | None, words: str | None) -> None:
    if line is None:
        assert changelog.parse(text, "database/changelog/bad.sql")
        return
    with pytest.raises(ChangelogError) as caught:
        changelog.parse(text, "database/changelog/bad.sql")
    assert (caught.value.filename, caught.value.line) == ("database/changelog/bad.sql", line)
    assert words in caught.value.message
    assert str(caught.value).startswith(f"database/changelog/bad.sql:{line}: ")


def test_same_id_by_other_author_is_another_change_set() -> None:
    text = "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n--changeset b:1\nSELECT 2;\n"
    assert [c.key for c in changelog.parse(text, "f.sql")] == [("1", "a", "f.sql"), ("1", "b", "f.sql")]


def test_split_statements_keeps_literals_and_drops_comment_only_pieces() -> None:
    sql = "a 'x;y';\n-- c; d\n\nb \"p;q\" `r;s`; /* only */ ;\nc"
    assert changelog.split_statements(sql) == [(1, "a 'x;y'"), (4, 'b "p;q" `r;s`'), (5, "c")]


# --- the master order --------------------------------------------------------------------


def _log(*ids: str) -> str:
    return "--liquibase formatted sql\n" + "".join(f"--changeset ep:{i}\nSELECT '{i}';\n" for i in ids)


def test_load_changelogs_orders_files_by_base_name_and_skips_other_files() -> None:
    files = {
        "database/changelog/0002-b.sql": _log("b1", "b2"),
        "database/changelog/README.md": "not a change log",
        "database/changelog/0001-a.sql": _log("a1"),
        "database/changelog/0010-c.sql": _log("c1"),
    }
    loaded = changelog.load_changelogs(files)
    assert [c.id for c in loaded] == ["a1", "b1", "b2", "c1"]
    assert loaded[1].filename == "database/changelog/0002-b.sql"


def test_load_changelogs_reports_the_file_of_an_error() -> None:
    with pytest.raises(ChangelogError) as caught:
        changelog.load_changelogs(
            {"database/changelog/0001.sql": _log("a"), "database/changelog/0002.sql": "x"}
        )
    assert caught.value.filename == "database/changelog/0002.sql"


# --- the plan ----------------------------------------------------------------------------


def _row(change_set: ChangeSet, md5sum: str | None = None, order: int = 1) -> AppliedRow:
    return AppliedRow(
        change_set.id, change_set.author, change_set.filename, md5sum or change_set.checksum, order
    )


def test_plan_sorts_pending_changed_and_unknown() -> None:
    sets = changelog.load_changelogs({"database/changelog/0001.sql": _log("1", "2", "3", "4")})
    stranger = AppliedRow("gone", "ep", "database/changelog/0000-old.sql", "9:abc")
    no_checksum = AppliedRow(sets[3].id, sets[3].author, sets[3].filename, None)  # matches any
    rows = [_row(sets[0]), _row(sets[2], md5sum="9:tampered"), stranger, no_checksum]
    result = changelog.plan(sets, rows)
    assert result.pending == [sets[1]]
    assert result.changed == [(sets[2], "9:tampered")]
    assert result.unknown_applied == [stranger]
    assert result.applied_count == 3
    assert not result.up_to_date
    document = json.loads(json.dumps(result.to_dict()))
    assert [p["id"] for p in document["pending"]] == ["2"]
    assert document["changed"][0]["applied_checksum"] == "9:tampered"


def test_plan_of_a_fully_applied_database_is_up_to_date() -> None:
    sets = changelog.load_changelogs({"database/changelog/0001.sql": _log("1", "2")})
    assert changelog.plan(sets, [_row(s) for s in sets]).up_to_date
    assert changelog.plan(sets, []).pending == sets


_IDS = st.lists(
    st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,8}", fullmatch=True), min_size=1, max_size=8, unique=True
)


@given(ids=_IDS, data=st.data())
def test_plan_partitions_the_change_sets(ids: list[str], data: st.DataObject) -> None:
    sets = changelog.load_changelogs({"database/changelog/0001.sql": _log(*ids)})
    applied = data.draw(st.sets(st.sampled_from(range(len(sets)))))
    tampered = data.draw(st.sets(st.sampled_from(sorted(applied)))) if applied else set()
    extra = data.draw(st.integers(0, 3))
    rows = [_row(sets[i], md5sum="9:other" if i in tampered else None) for i in sorted(applied)]
    rows += [AppliedRow(f"extra-{n}", "x", "elsewhere.sql", "9:x") for n in range(extra)]
    result = changelog.plan(sets, rows)
    assert result.pending == [s for i, s in enumerate(sets) if i not in applied]  # in order
    assert [c for c, _ in result.changed] == [s for i, s in enumerate(sets) if i in tampered]
    assert len(result.unknown_applied) == extra
    assert result.applied_count == len(applied)


# --- property: rendering and parsing agree -----------------------------------------------

_WORD = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_LITERAL = st.text(alphabet=st.sampled_from("ab;-'/* \n"), max_size=8).map(
    lambda s: "'" + s.replace("'", "''") + "'"
)
_STATEMENT = st.lists(st.one_of(_WORD, _LITERAL), min_size=1, max_size=6).map(" ".join)
_SPACE = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", " \n  "])


@given(
    change_sets=st.lists(
        st.tuples(_WORD, _WORD, st.lists(_STATEMENT, min_size=1, max_size=4)),
        min_size=1,
        max_size=5,
        unique_by=lambda t: (t[0], t[1]),
    ),
    space=_SPACE,
)
def test_rendered_change_logs_parse_back(change_sets: list[tuple[str, str, list[str]]], space: str) -> None:
    text = "--liquibase formatted sql\n"
    for author, change_id, statements in change_sets:
        text += f"--changeset {author}:{change_id}\n-- a remark; with a semicolon\n"
        text += "".join(f"{s};{space}" for s in statements) + "\n--rollback SELECT 1;\n"
    parsed = changelog.parse(text, "database/changelog/0001.sql")
    assert [(c.author, c.id, list(c.sql)) for c in parsed] == change_sets


@given(statements=st.lists(_STATEMENT, min_size=1, max_size=4), spaces=st.lists(_SPACE, min_size=1))
def test_checksum_survives_whitespace_between_tokens(statements: list[str], spaces: list[str]) -> None:
    plain = ";\n".join(statements) + ";"
    tokens = plain.split(" ")
    respaced = "".join(token + spaces[i % len(spaces)] for i, token in enumerate(tokens))
    # Only whitespace OUTSIDE literals is free to change; these tokens may split a literal,
    # which is fine for the checksum (Liquibase strips all whitespace) though not for the SQL.
    assert change_set_checksum(respaced) == change_set_checksum(plain)
    assert change_set_checksum(plain) == _liquibase_v9(plain)


# --- database.properties -----------------------------------------------------------------


def test_properties_follow_java_syntax() -> None:
    text = (
        "# comment\n! another\n"
        "data.population.host = db.internal\n"
        "data.population.port:3307\n"
        "data.population.username ep\n"
        "data.population.password=p\\u00e4ss\\=word \\\n    continued\n"
        "data.population.schemaname=${prefix}DB\n"
        "prefix=COMMERCE\n"
    )
    properties = database.parse_properties(text)
    assert properties["data.population.password"] == "päss=word continued"
    settings = database.DatabaseSettings.from_properties(properties)
    assert (settings.host, settings.port, settings.user, settings.database) == (
        "db.internal",
        3307,
        "ep",
        "COMMERCEDB",
    )
    assert "päss" not in repr(settings) and "päss" not in settings.describe()
    assert settings.source_address is None


def test_settings_read_the_jdbc_url_when_host_keys_are_absent() -> None:
    settings = database.DatabaseSettings.from_properties(
        {
            "data.population.url": "jdbc:mariadb://127.0.0.3:3310/COMMERCEDB?characterEncoding=UTF-8",
            "data.population.username": "ep",
            "data.population.password": "",
        }
    )
    assert (settings.host, settings.port, settings.database) == ("127.0.0.3", 3310, "COMMERCEDB")
    assert settings.source_address == "127.0.0.3"  # the sandbox rule: an account connects from its address


@pytest.mark.parametrize(
    ("properties", "words"),
    [
        (
            {"data.population.host": "h", "data.population.username": "u", "data.population.password": "p"},
            "schemaname",
        ),
        (
            {"data.population.host": "h", "data.population.schemaname": "d", "data.population.username": "u"},
            "password",
        ),
        (
            {
                "data.population.host": "h",
                "data.population.schemaname": "d; DROP",
                "data.population.username": "u",
                "data.population.password": "p",
            },
            "plain schema name",
        ),
        (
            {
                "data.population.host": "h",
                "data.population.port": "x",
                "data.population.schemaname": "d",
                "data.population.username": "u",
                "data.population.password": "p",
            },
            "not a number",
        ),
        (
            {
                "data.population.host": "h",
                "data.population.schemaname": "d",
                "data.population.username": "u",
                "data.population.password": "p",
                "data.population.database.type": "oracle",
            },
            "MySQL / MariaDB only",
        ),
    ],
)
def test_incomplete_settings_are_configuration_errors(properties: dict[str, str], words: str) -> None:
    with pytest.raises(database.SettingsError) as caught:
        database.DatabaseSettings.from_properties(properties)
    assert words in str(caught.value)
    assert caught.value.exit_code == 2


# --- what ships in the zip ---------------------------------------------------------------


def test_shipped_modules_import_only_the_stdlib_pymysql_and_each_other() -> None:
    files = cli.tool_files()
    assert set(files) == {
        "tools/data-population-cli/bin/data-population",
        "tools/data-population-cli/lib/__init__.py",
        "tools/data-population-cli/lib/changelog.py",
        "tools/data-population-cli/lib/database.py",
        "tools/data-population-cli/lib/cli.py",
    }
    for path, content in files.items():
        tree = ast.parse(content, filename=path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 1 or (node.module or "").split(".")[0] not in ("cloudops",), path
            if isinstance(node, ast.Import):
                assert all(not alias.name.startswith("cloudops") for alias in node.names), path
    assert files["tools/data-population-cli/lib/cli.py"] == Path(cli.__file__).read_bytes()  # verbatim


# --- the demo's change logs --------------------------------------------------------------


def test_demo_changelogs_add_exactly_two_change_sets_after_850() -> None:
    first = changelog.load_changelogs(changelogs_for("8.5.0"))
    second = changelog.load_changelogs(changelogs_for("8.6.0"))
    assert len(first) == 4
    assert second[: len(first)] == first  # the 8.5.0 file is unchanged, checksums included
    assert [c.id for c in second[len(first) :]] == ["8.6.0-product-brand", "8.6.0-price-sku-index"]
    assert changelogs_for("8.10.0") == changelogs_for("8.6.0")
    assert changelogs_for("8.4.0") == changelogs_for("8.5.0")


def test_demo_change_sets_are_rerunnable() -> None:
    rerunnable = (
        "CREATE TABLE IF NOT EXISTS",
        "INSERT IGNORE INTO",
        "CREATE INDEX IF NOT EXISTS",
    )
    for change_set in changelog.load_changelogs(changelogs_for("8.6.0")):
        for statement in change_set.sql:
            assert statement.startswith(rerunnable) or "ADD COLUMN IF NOT EXISTS" in statement, statement
