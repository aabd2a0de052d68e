"""`package publish` of a hostile zip on moto server: refused with exit 2, the member
named, and nothing written to the build account's bucket (issue 12, "Also")."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.run import assert_clean_failure, cloudops

MiB = 1024 * 1024
GOOD = {
    "webapps/ep-cortex.war": b"war",
    "database/ep-schema.sql": b"CREATE TABLE t (x INT);\n",
    "tools/data-population-cli/bin/data-population.sh": b"#!/bin/sh\n",
}


def _hostile(path: Path, kind: str) -> str:
    """Write a package with one hostile member; returns how the refusal names it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in GOOD.items():
            archive.writestr(name, data)
        if kind == "absolute":
            archive.writestr("/etc/cron.d/ep", b"* * * * * root sh\n")
            return "'/etc/cron.d/ep' has an absolute path"
        if kind == "dotdot":
            archive.writestr("webapps/../../../root/.ssh/authorized_keys", b"ssh-ed25519 AAAA\n")
            return "'webapps/../../../root/.ssh/authorized_keys' has a '..' path segment"
        if kind == "symlink":
            link = zipfile.ZipInfo("tools/data-population-cli/lib")
            link.create_system = 3
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "/")
            return "'tools/data-population-cli/lib' is a symbolic link"
        archive.writestr("database/dump.sql", bytes(8 * MiB))  # ~8000:1
        return "'database/dump.sql' declares 8388608 bytes"


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "bomb"])
def test_a_hostile_package_is_refused_before_anything_is_uploaded(
    ctx: Any, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / f"{kind}.zip"
    needle = _hostile(path, kind)
    result = cloudops("package", "publish", str(path), "--version", "8.5.0")
    assert_clean_failure(result, 2)
    assert needle in " ".join(result.stderr.split()), result.stderr
    bucket = ctx.session("build").client("s3").list_objects_v2(Bucket=ctx.pipeline.bucket("build"))
    assert bucket.get("Contents") is None
