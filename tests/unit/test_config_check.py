"""`cloudops config check` and `config diff` on fixture trees (tests/fixtures/config-*):
each kind of leak found with file and line, secrets never printed, bad input a finding
or a clear error, never a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudops.cli.main import cli
from cloudops.config import check_config, diff_accounts
from cloudops.config.check import ConfigReport
from cloudops.config.envfile import read_env_file
from cloudops.config.hosts import hosts_in
from cloudops.config.secrets import is_secret_key, mask, shown
from cloudops.errors import InputError
from cloudops.pipeline.model import load_pipeline

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LEAKY_SECRETS = [
    "qa-live-S3cret-91c2",
    "mailer-Sh4red-pw",
    "prod-author-pw-never-closed",
    "qa-author-pw-7f3a",
]


def cloudops(*args: str) -> Result:
    """The CLI in this process (a subprocess costs seconds of imports per call)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_clean_failure(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def _copy(name: str, tmp_path: Path) -> Path:
    """A writable copy of a fixture; returns its pipeline.yaml."""
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target, symlinks=True)
    return target / "pipeline.yaml"


def _check(pipeline_file: Path) -> ConfigReport:
    return check_config(load_pipeline(pipeline_file))


def _found(report: ConfigReport) -> set[tuple[str, str | None, str | None, int | None]]:
    return {(f.kind, f.account, f.file, f.line) for f in report.findings}


def test_clean_config_has_no_findings() -> None:
    report = _check(FIXTURES / "config-clean" / "pipeline.yaml")
    assert report.findings == []
    assert report.files_parsed == 6 and report.ok


def test_each_kind_of_leak_is_found_with_file_and_line() -> None:
    report = _check(FIXTURES / "config-leaky" / "pipeline.yaml")
    live, author, smtp = (f"prod/AWS/Config/{n}" for n in ("live.env", "author.env", "smtp.env"))
    assert _found(report) >= {
        ("missing", "build", "build/AWS/Config/live.env", None),
        ("syntax", "prod", author, 3),  # the unterminated quote
        ("syntax", "prod", author, 5),  # EP_DB_USER set twice
        ("cross-account", "prod", live, 2),  # QA's database host
        ("shared-secret", "prod", live, 5),  # QA's password
        ("cross-account", "prod", live, 9),  # QA's registry
        ("cross-account", "prod", live, 10),  # the build account's bucket
        ("cross-account", "prod", live, 11),  # QA's account id in an ARN
        ("identical-file", "prod", smtp, None),
        ("shared-secret", "prod", smtp, 4),
        ("unknown-folder", None, "staging", None),
    }
    by_line = {(f.file, f.line): f for f in report.findings}
    assert by_line[(live, 2)].message == "EP_DB_HOSTNAME points at qa-db.example.internal, account qa's host"
    assert "qa's registry 222222222222.dkr.ecr" in by_line[(live, 9)].message
    assert "build's bucket ep-cloudops-111111111111" in by_line[(live, 10)].message
    assert "same secret as EP_DB_PASS of account qa (qa/AWS/Config/live.env:5)" in by_line[(live, 5)].message
    assert by_line[(author, 3)].severity == "error" and by_line[(author, 5)].severity == "warning"
    # The clean accounts' own values are never reported against them.
    assert not [f for f in report.findings if f.account == "qa" and f.severity == "error"]


def test_links_between_accounts_are_found_once(tmp_path: Path) -> None:
    pipeline_file = _copy("config-clean", tmp_path)
    config = pipeline_file.parent / "config"
    prod = config / "prod" / "AWS" / "Config"
    (prod / "live.env").unlink()
    (prod / "live.env").symlink_to(config / "qa" / "AWS" / "Config" / "live.env")
    (prod / "author.env").unlink()
    os.link(config / "qa" / "AWS" / "Config" / "author.env", prod / "author.env")
    (config / "build" / "AWS" / "Config" / "extra").symlink_to(config / "qa" / "AWS" / "Config")

    report = _check(pipeline_file)

    assert _found(report) == {
        ("shared-file", "prod", "prod/AWS/Config/live.env", None),
        ("shared-file", "prod", "prod/AWS/Config/author.env", None),
        ("shared-file", "build", "build/AWS/Config/extra", None),
    }, report.findings
    messages = {f.file: f.message for f in report.findings}
    assert "symlink to account qa's qa/AWS/Config/live.env" in messages["prod/AWS/Config/live.env"]
    assert "hard link to qa/AWS/Config/author.env" in messages["prod/AWS/Config/author.env"]


def test_an_account_folder_that_is_a_link_to_another(tmp_path: Path) -> None:
    pipeline_file = _copy("config-clean", tmp_path)
    config = pipeline_file.parent / "config"
    shutil.rmtree(config / "prod")
    (config / "prod").symlink_to(config / "qa")
    report = _check(pipeline_file)
    assert [(f.kind, f.account, f.file) for f in report.findings] == [("shared-file", "prod", "prod")]


def test_identical_copies_are_found_but_not_as_links(tmp_path: Path) -> None:
    pipeline_file = _copy("config-clean", tmp_path)
    config = pipeline_file.parent / "config"
    shutil.copy(
        config / "qa" / "AWS" / "Config" / "live.env", config / "prod" / "AWS" / "Config" / "live.env"
    )
    report = _check(pipeline_file)
    kinds = {(f.kind, f.line) for f in report.findings if f.file == "prod/AWS/Config/live.env"}
    assert ("identical-file", None) in kinds
    assert ("shared-secret", 5) in kinds  # the copied password
    assert ("cross-account", 2) in kinds  # qa's database host
    assert not [f for f in report.findings if f.kind == "shared-file"]


def test_missing_folders_and_files(tmp_path: Path) -> None:
    pipeline_file = _copy("config-clean", tmp_path)
    config = pipeline_file.parent / "config"
    shutil.rmtree(config / "qa")
    (config / "prod" / "AWS" / "Config" / "author.env").unlink()
    assert _found(_check(pipeline_file)) == {
        ("missing", "qa", "qa", None),
        ("missing", "prod", "prod/AWS/Config/author.env", None),
    }
    shutil.rmtree(config)
    [finding] = _check(pipeline_file).findings
    assert (finding.kind, finding.message) == ("missing", "the config folder does not exist")


def test_config_root_or_account_that_is_a_file(tmp_path: Path) -> None:
    pipeline_file = _copy("config-clean", tmp_path)
    config = pipeline_file.parent / "config"
    shutil.rmtree(config / "build")
    (config / "build").write_text("not a folder\n")
    assert _found(_check(pipeline_file)) == {("unreadable", "build", "build", None)}
    shutil.rmtree(config)
    config.write_text("a file\n")
    [finding] = _check(pipeline_file).findings
    assert (finding.kind, finding.message) == ("unreadable", "the config path is not a folder")


def test_unreadable_folder_and_file_are_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod 000 does not stop a read: make the OS say no instead.
    pipeline_file = _copy("config-clean", tmp_path)
    qa_folder = pipeline_file.parent / "config" / "qa" / "AWS"
    real_walk = os.walk

    def walk(top: str | os.PathLike[str], **kwargs: Any) -> Iterator[tuple[str, list[str], list[str]]]:
        for dirpath, dirnames, filenames in real_walk(top, **kwargs):
            if Path(dirpath) == qa_folder:
                kwargs["onerror"](PermissionError(13, "Permission denied", str(qa_folder)))
                dirnames.clear()
                continue
            yield dirpath, dirnames, filenames

    monkeypatch.setattr("cloudops.config.tree.os.walk", walk)
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "author.env" and "prod" in self.parts:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    found = {(f.kind, f.file, f.message) for f in _check(pipeline_file).findings}
    assert ("unreadable", "qa/AWS", "cannot be read (PermissionError)") in found
    assert (
        "unreadable",
        "prod/AWS/Config/author.env",
        "cannot be read (PermissionError: Permission denied)",
    ) in found


def test_binary_and_non_utf8_files(tmp_path: Path) -> None:
    pipeline_file = _copy("config-clean", tmp_path)
    folder = pipeline_file.parent / "config" / "qa" / "AWS" / "Config"
    (folder / "live.env").write_bytes(b"PK\x03\x04\x00\x00binary zip\x00")
    (folder / "author.env").write_bytes(b"EP_DB_USER=ok\nEP_DB_NAME=caf\xe9\n")
    found = {(f.kind, f.file, f.line, f.message) for f in _check(pipeline_file).findings}
    assert found == {
        (
            "unreadable",
            "qa/AWS/Config/live.env",
            None,
            "is a binary file (contains NUL bytes), not KEY=value text",
        ),
        ("unreadable", "qa/AWS/Config/author.env", 2, "is not UTF-8 text (save it as UTF-8)"),
    }


def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    pipeline_file = _copy("config-clean", tmp_path)
    os.mkfifo(pipeline_file.parent / "config" / "qa" / "AWS" / "Config" / "extra.env")
    found = {(f.kind, f.file, f.message) for f in _check(pipeline_file).findings}
    assert found == {("unreadable", "qa/AWS/Config/extra.env", "is not a regular file")}


ENV_WITH_ERRORS = """\
# comment
export EP_DB_HOSTNAME=db.example.internal   # inline comment

EP_DB_PASS='single quoted # not a comment'
EP_WELCOME="two
lines"
EP_DB_USER=first
EP_DB_URL="jdbc:mysql://db:3306/x
EP_DB USER=has a space
hunter2-pasted-password
EP_DB_USER=second
EP_EMPTY=
"""


def test_dotenv_syntax_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "live.env"
    path.write_text(ENV_WITH_ERRORS)
    env = read_env_file(path)
    values = env.values()
    assert values["EP_DB_HOSTNAME"] == "db.example.internal"  # export and comment handled
    assert values["EP_DB_PASS"] == "single quoted # not a comment"
    assert values["EP_WELCOME"] == "two\nlines"
    assert values["EP_DB_USER"] == "second" and values["EP_EMPTY"] == ""
    assert env.line_of("EP_DB_HOSTNAME") == 2 and env.line_of("EP_DB_PASS") == 4
    assert env.line_of("EP_DB_USER") == 11  # after the two-line value, lines still count right
    problems = {p.line: p.message for p in env.problems}
    assert problems[8].startswith("cannot be parsed (the line starting with EP_DB_URL")
    assert problems[9].startswith("cannot be parsed")
    assert problems[10].startswith("a line (not shown: it may be a secret) has no '='")
    assert problems[11] == "EP_DB_USER is set again (first on line 7); the last wins"
    assert "hunter2" not in json.dumps(problems)


def test_hosts_secrets_and_masking() -> None:
    assert hosts_in("EP_DB_URL", "jdbc:mysql://u:p@DB.Example.internal:3306/x") == {"db.example.internal"}
    assert hosts_in("EP_JMS_URL", "failover:(tcp://a.jms:61616,tcp://b.jms:61616)") == {"a.jms", "b.jms"}
    assert hosts_in("EP_DB_HOSTNAME", "mysql-1.internal:3306") == {"mysql-1.internal"}
    assert hosts_in("EP_SMTP_HOST", "localhost") == set() and hosts_in("EP_X", "http://127.0.0.1:80") == set()
    assert hosts_in("EP_DB_NAME", "commerce") == set()  # not a host key, not a URL
    assert all(is_secret_key(k) for k in ("EP_DB_PASS", "EP_SMTP_PASSWORD", "API_KEY", "X_SECRET", "TOKEN"))
    assert not is_secret_key("EP_DB_HOSTNAME")
    assert mask("short") == "****" and mask("a-long-secret-value") == "****"  # not one character
    assert shown("EP_DB_URL", "jdbc:mysql://ep:pw123@db:3306/x") == "jdbc:mysql://ep:****@db:3306/x"
    assert shown("EP_DB_PASS", "hunter2hunter2") == "****"


def test_diff_shows_keys_and_masks_secrets() -> None:
    pipeline = load_pipeline(FIXTURES / "config-leaky" / "pipeline.yaml")
    diff = diff_accounts(pipeline, "qa", "prod")
    live = next(f for f in diff.files if f.file == "AWS/Config/live.env")
    statuses = {k.key: (k.status, k.a, k.b) for k in live.changed}
    assert statuses["EP_DB_USER"] == ("differs", "ep_qa", "ep_prod")
    assert statuses["EP_IMAGE_REGISTRY"][0] == "extra"
    assert statuses["EP_DB_PASS"] == ("same", "****", "****")  # a shared secret is shown, masked
    author = next(f for f in diff.files if f.file == "AWS/Config/author.env")
    assert {k.key: k.status for k in author.changed}["EP_DB_PASS"] == "missing"  # prod's line is broken
    assert any("prod: line 3: cannot be parsed" in p for p in author.problems)
    with pytest.raises(InputError, match="unknown account 'nope'"):
        diff_accounts(pipeline, "qa", "nope")
    with pytest.raises(InputError, match="two different accounts"):
        diff_accounts(pipeline, "qa", "qa")


def test_cli_check_and_diff_never_print_a_secret(tmp_path: Path) -> None:
    leaky = str(FIXTURES / "config-leaky" / "pipeline.yaml")
    check = cloudops("config", "check", "--json", "--pipeline", leaky)
    assert check.exit_code == 4, check.stderr
    document = json.loads(check.stdout)
    assert document["ok"] is False and document["files_parsed"] == 7
    assert set(document["findings"][0]) == {
        "kind",
        "severity",
        "account",
        "file",
        "line",
        "key",
        "message",
        "fix",
    }
    human = cloudops("config", "check", "--pipeline", leaky)
    diff = cloudops("config", "diff", "qa", "prod", "--pipeline", leaky)
    diff_json = cloudops("config", "diff", "qa", "prod", "--json", "--pipeline", leaky)
    assert human.exit_code == 4 and diff.exit_code == 0 and diff_json.exit_code == 0
    for result in (check, human, diff, diff_json):
        assert "Traceback" not in result.stderr
        for secret in LEAKY_SECRETS:
            assert secret not in result.stdout + result.stderr
    assert re.search(r"prod/AWS/Config/live\.env:2: EP_DB_HOSTNAME points at qa-db", human.stderr)

    clean = cloudops("config", "check", "--pipeline", str(FIXTURES / "config-clean" / "pipeline.yaml"))
    assert clean.exit_code == 0 and "config is separate" in clean.stderr


def test_cli_bad_input_is_one_clear_message(tmp_path: Path) -> None:
    leaky = str(FIXTURES / "config-leaky" / "pipeline.yaml")
    assert_clean_failure(
        cloudops("config", "diff", "qa", "staging", "--pipeline", leaky), 2, "unknown account"
    )
    assert_clean_failure(
        cloudops("config", "check", "--pipeline", str(tmp_path / "none.yaml")), 2, "does not exist"
    )
    pipeline_file = _copy("config-clean", tmp_path)
    shutil.rmtree(pipeline_file.parent / "config" / "prod")
    assert_clean_failure(
        cloudops("config", "diff", "qa", "prod", "--pipeline", str(pipeline_file)),
        2,
        "no usable config folder",
    )
    result = cloudops("config", "check", "--pipeline", str(pipeline_file))
    assert result.exit_code == 4 and "Traceback" not in result.stderr
    assert "prod: the account's config folder does not exist" in result.stderr


def test_config_is_never_promoted() -> None:
    """No promote subcommand copies config; `config` itself only reads (check, diff)."""
    import click

    context = click.Context(cli)
    promote, config = cli.get_command(context, "promote"), cli.get_command(context, "config")
    assert isinstance(promote, click.Group) and isinstance(config, click.Group)
    assert not [name for name in promote.commands if "config" in name]
    assert sorted(config.commands) == ["check", "diff"]
