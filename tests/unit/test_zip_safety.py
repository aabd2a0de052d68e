"""`package publish` treats the zip as hostile input (issue 12, "Also"): member names that
would unpack outside their folder, symlinks, too many members and zip bombs (declared
and actual sizes, compression ratio) are refused with exit 2, the member named safely,
before anything is sent anywhere."""

from __future__ import annotations

import stat
import zipfile
from contextlib import nullcontext
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloudops import package_archive
from cloudops.cli.main import cli
from cloudops.package_archive import PackageError, inspect_package
from cloudops.sandbox.seed import build_package

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MiB = 1024 * 1024
GOOD = {
    "webapps/ep-cortex.war": b"war",
    "database/ep-schema.sql": b"CREATE TABLE t (x INT);\n",
    "tools/data-population-cli/bin/data-population.sh": b"#!/bin/sh\n",
}


def _zip(path: Path, extra: dict[str, bytes] | None = None, *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**GOOD, **(extra or {})}.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        if symlink is not None:
            link = zipfile.ZipInfo(symlink, date_time=(2026, 1, 1, 0, 0, 0))
            link.create_system = 3
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "/etc/passwd")
    return path


def _publish(path: Path, version: str = "8.5.0") -> Result:
    pipeline = str(FIXTURES / "config-clean" / "pipeline.yaml")
    return CliRunner().invoke(
        cli,
        ["package", "publish", str(path), "--version", version, "--pipeline", pipeline],
        catch_exceptions=False,
    )


def test_a_real_package_passes(tmp_path: Path) -> None:
    build_package(tmp_path / "ok.zip", "8.5.0", size=2 * MiB)
    assert inspect_package(tmp_path / "ok.zip").size > 2 * MiB
    assert inspect_package(_zip(tmp_path / "small.zip")).sha256


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/cron.d/evil", "absolute path"),
        ("C:\\Windows\\evil.dll", "absolute path"),
        ("c:evil", "absolute path"),
        ("\\\\server\\share\\evil", "absolute path"),
        ("webapps/../../../root/.ssh/authorized_keys", "'..' path segment"),
        ("tools\\..\\..\\evil.sh", "'..' path segment"),
        ("..", "'..' path segment"),
    ],
)
def test_names_that_escape_their_folder_are_refused(tmp_path: Path, name: str, why: str) -> None:
    path = _zip(tmp_path / "evil.zip", {name: b"x"})
    with pytest.raises(PackageError, match=why) as caught:
        inspect_package(path)
    assert repr(name) in str(caught.value)


def test_a_symlink_member_is_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "link.zip", symlink="webapps/passwd")
    with pytest.raises(PackageError, match="'webapps/passwd' is a symbolic link"):
        inspect_package(path)


def test_a_highly_compressed_member_is_a_zip_bomb(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.zip", {"database/zeros.sql": bytes(4 * MiB)})
    with pytest.raises(PackageError, match=r"'database/zeros.sql' declares 4194304 bytes .* zip bomb"):
        inspect_package(path)


def test_the_total_declared_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.zip"
    build_package(path, "8.5.0", size=3 * MiB)  # incompressible: passes the ratio rule
    monkeypatch.setattr(package_archive, "MAX_TOTAL_UNCOMPRESSED", 2 * MiB)
    with pytest.raises(
        PackageError, match=r"'webapps/ep-cortex\.war' takes the declared uncompressed size over"
    ):
        inspect_package(path)


def test_bytes_are_counted_while_read_not_taken_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _zip(tmp_path / "bomb.zip", {"database/zeros.sql": bytes(4 * MiB)})
    monkeypatch.setattr(package_archive, "_check_members", lambda *_: None)  # as if the header had lied
    with pytest.raises(PackageError, match=r"'database/zeros\.sql' inflates over 100:1 while read"):
        inspect_package(path)
    build_package(path, "8.5.0", size=3 * MiB)
    monkeypatch.setattr(package_archive, "MAX_TOTAL_UNCOMPRESSED", 2 * MiB)
    with pytest.raises(PackageError, match=r"'webapps/ep-cortex\.war' takes the uncompressed size over"):
        inspect_package(path)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("tools/data-population-cli/run.sh", "tools/data-population-cli/run.sh"),
        ("webapps/ep-cortex.war", "WebApps/EP-Cortex.war"),  # one file on a case-folding disk
        ("tools/data-population-cli/run.sh", "tools\\data-population-cli\\run.sh"),
    ],
)
def test_two_members_of_the_same_name_are_refused(tmp_path: Path, first: str, second: str) -> None:
    # Which copy is unpacked would depend on the unzip tool (and the disk): refused.
    path = tmp_path / "twice.zip"
    with pytest.warns(UserWarning, match="Duplicate name") if first == second else nullcontext():
        _zip(path, {first: b"#!/bin/sh\necho good\n"})
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(
                zipfile.ZipInfo(second, date_time=(2026, 1, 1, 0, 0, 0)), b"#!/bin/sh\necho evil\n"
            )
    with pytest.raises(PackageError, match="has the same name as another member") as caught:
        inspect_package(path)
    assert repr(second) in str(caught.value)
    result = _publish(path)
    assert result.exit_code == 2 and "same name as another member" in " ".join(result.stderr.split())


def test_too_many_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _zip(tmp_path / "many.zip", {f"webapps/f{i}": b"" for i in range(20)})
    monkeypatch.setattr(package_archive, "MAX_MEMBERS", 10)
    with pytest.raises(PackageError, match="has 23 members"):
        inspect_package(path)


def test_a_hostile_name_is_refused_and_printed_without_control_characters(tmp_path: Path) -> None:
    name = "webapps/\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07\r[link=http://x]y[/link]\u202e.war"
    result = _publish(_zip(tmp_path / "ansi.zip", {name: b"x"}))
    assert result.exit_code == 2, result.stderr
    assert "control characters" in result.stderr
    assert not {"\x1b", "\x07", "\r", "\u202e"} & set(result.stderr)


@pytest.mark.parametrize(
    ("extra", "symlink", "needle"),
    [
        ({"/abs": b"x"}, None, "'/abs' has an absolute path"),
        ({"webapps/../../x": b"x"}, None, "'webapps/../../x' has a '..' path segment"),
        ({}, "tools/link", "'tools/link' is a symbolic link"),
        ({"database/zeros.sql": bytes(4 * MiB)}, None, "'database/zeros.sql' declares"),
    ],
)
def test_publish_refuses_with_exit_2_naming_the_member(
    tmp_path: Path, extra: dict[str, bytes], symlink: str | None, needle: str
) -> None:
    result = _publish(_zip(tmp_path / "evil.zip", extra, symlink=symlink))
    assert result.exit_code == 2, result.stderr
    assert needle in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
