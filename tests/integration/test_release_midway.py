"""What a long apply meets halfway (issue 14, review): the source's package replaced after
the plan was checked, a rejection made while images were being copied, and object names
in the bucket that would drive a terminal. Each is refused or shown escaped; nothing the
plan did not name is copied, and neither the package pointer nor current.json moves for a
rejected release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudops.package import promote_package
from cloudops.release import load_release
from cloudops.release_current import CURRENT_KEY
from cloudops.release_gates import approvals_prefix, reject_release
from cloudops.release_plan import execute_plan, plan_release
from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import ecr_tags, publish

POINTER = "deployment-package/current.json"


def _published(ctx: Any, tmp_path: Path, version: str = "8.5.0") -> Path:
    publish(ctx, "build", "ep/cortex", version)
    package = tmp_path / f"package-{version}.zip"
    build_package(package, version, size=128 * 1024)
    assert cloudops("package", "publish", str(package), "--version", version).returncode == 0
    release = tmp_path / f"release-{version}.yaml"
    release.write_text(
        f'release: "{version}"\nimages:\n  - {{repository: ep/cortex, tag: "{version}"}}\n'
        f'package: {{version: "{version}"}}\n'
    )
    return release


def _keys(ctx: Any, account: str) -> list[str]:
    s3 = ctx.session(account).client("s3")
    return sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=ctx.pipeline.bucket(account)).get("Contents", [])
    )


def test_a_package_whose_source_bytes_are_not_the_planned_ones_is_never_copied(
    ctx: Any, tmp_path: Path
) -> None:
    _published(ctx, tmp_path)
    planned = "0" * 64  # what a plan named before the source was replaced
    result = promote_package(ctx, "qa", version="8.5.0", of_release=True, expected_sha256=planned)
    assert result.status == "refused" and "not the 000000000000" in str(result.error)
    assert [k for k in _keys(ctx, "qa") if k.startswith("deployment-package/")] == []


def test_a_release_rejected_while_it_was_copied_moves_neither_the_pointer_nor_current_json(
    ctx: Any, tmp_path: Path
) -> None:
    release = _published(ctx, tmp_path)
    plan, arn = plan_release(ctx, "qa", load_release(release))  # the gates passed here
    reject_release(ctx, "qa", "8.5.0", "found broken while it was copied")
    result = execute_plan(ctx, plan, arn, started=0.0)
    assert not result.ok and "was rejected in qa" in str(result.current_error)
    keys = _keys(ctx, "qa")
    assert CURRENT_KEY not in keys and POINTER not in keys  # nothing names it
    assert ecr_tags(ctx, "qa", "ep/cortex") != {}  # the copied parts stay (tags never move anyway)
    records = json.loads(cloudops("history", "--account", "qa", "--json").stdout)["records"]
    assert [r["result"] for r in records if r["kind"] == "release"] == ["failed"]


def test_object_names_that_would_drive_a_terminal_are_shown_escaped_never_a_crash(
    ctx: Any, tmp_path: Path
) -> None:
    release = _published(ctx, tmp_path)
    for stage in ("qa", "preprod"):
        assert cloudops("promote", "release", "--to", stage, "--release", str(release)).returncode == 0
    plan_file = tmp_path / "plan.json"
    assert (
        cloudops("plan", "--to", "prod", "--release", str(release), "--out", str(plan_file)).returncode == 0
    )
    plan_hash = json.loads(plan_file.read_text())["plan_hash"]
    s3 = ctx.session("prod").client("s3")
    evil = "\x1b]8;;http://evil\x07click\x1b]8;;\x07.json"
    s3.put_object(Bucket=ctx.pipeline.bucket("prod"), Key=approvals_prefix(plan_hash) + evil, Body=b"{}")
    s3.put_object(Bucket=ctx.pipeline.bucket("prod"), Key="releases/rejected/\x1b[2J.json", Body=b"{}")
    refused = cloudops("apply", str(plan_file))
    assert_clean_failure(refused, 3, "none recorded", "not counted: \\x1b]8;;http://evil\\x07click")
    status = cloudops("status", "--json")
    assert status.returncode == 0, status.stderr
    prod = json.loads(status.stdout)["accounts"]["prod"]
    assert "\\x1b[2J.json" in prod["rejected_releases_error"] and "\x1b" not in status.stdout
