"""`cloudops db plan | update | reset` against the sandbox's real MariaDB: each account's
own database, the package from its own bucket, the guard rails before any connection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from cloudops.config.envfile import read_env_file
from cloudops.db_population import DatabaseRefused, plan_database, reset_database, update_database
from cloudops.dbtool.cli import tool_files
from cloudops.package import publish_package
from cloudops.pipeline.context import PipelineContext
from cloudops.sandbox import config_seed, world
from cloudops.sandbox.databases import provision_accounts
from cloudops.sandbox.mariadb import running_mariadb
from cloudops.sandbox.seed import build_package
from tests.support.run import cloudops

pytestmark = pytest.mark.skipif(
    not any(Path(p, "mariadbd").exists() for p in ("/usr/sbin", "/usr/bin")),
    reason="mariadb-server is not installed",
)


@pytest.fixture
def db_ctx(ctx: PipelineContext, sandbox: world.SandboxState, tmp_path: Path) -> PipelineContext:
    """Each account's config and database; package 8.5.0 published in build."""
    config_seed.seed(ctx)
    server = running_mariadb(sandbox.root)
    assert server is not None, "the sandbox's MariaDB is not running"
    provision_accounts(server, ctx.pipeline.config_dir, world.DB_ADDRESSES)
    _publish(ctx, tmp_path, "8.5.0")
    return ctx


def _publish(ctx: PipelineContext, tmp_path: Path, version: str) -> None:
    path = tmp_path / f"package-{version}.zip"
    build_package(path, version, size=64 * 1024)
    publish_package(ctx, path, version)


def _password(ctx: PipelineContext, account: str) -> str:
    env = ctx.pipeline.config_dir / account / "AWS" / "Config" / "live.env"
    value = read_env_file(env).values()["EP_DB_PASS"]
    assert value
    return value


def _admin(sandbox: world.SandboxState):  # type: ignore[no-untyped-def]
    server = running_mariadb(sandbox.root)
    assert server is not None
    return server.admin()


def _tables(sandbox: world.SandboxState, database: str) -> set[str]:
    connection = _admin(sandbox)
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,)
        )
        return {str(row[0]).upper() for row in cursor.fetchall()}
    finally:
        connection.close()


def test_update_applies_exactly_the_missing_change_sets_and_a_rerun_applies_none(
    db_ctx: PipelineContext, sandbox: world.SandboxState, tmp_path: Path
) -> None:
    planned = plan_database(db_ctx, "build")
    assert len(planned.pending) == 4 and planned.applied_count == 0
    first = update_database(db_ctx, "build")
    assert first.applied == ["8.5.0-settings", "8.5.0-catalog", "8.5.0-product", "8.5.0-price"]
    assert update_database(db_ctx, "build").applied == []  # rerun-safe: a no-op
    assert "DATABASECHANGELOG" in _tables(sandbox, "commerce_build")

    _publish(db_ctx, tmp_path, "8.6.0")  # 8.6.0 adds exactly two change sets
    assert [p["id"] for p in plan_database(db_ctx, "build").pending] == [
        "8.6.0-product-brand",
        "8.6.0-price-sku-index",
    ]
    assert update_database(db_ctx, "build").applied == ["8.6.0-product-brand", "8.6.0-price-sku-index"]
    assert plan_database(db_ctx, "build").pending == []
    assert _tables(sandbox, "commerce_qa") == set()  # only build's own database was touched


def test_a_release_plan_shows_the_change_sets_its_package_would_apply_to_the_destination(
    db_ctx: PipelineContext, sandbox: world.SandboxState, tmp_path: Path
) -> None:
    """`cloudops plan` lists, next to the images, what `db update` would apply to the
    DESTINATION's database with the release's package (taken from the source's bucket),
    and writes nothing: neither qa's changelog nor its tables change."""
    from cloudops.package import promote_package
    from tests.support.sandbox import publish

    publish(db_ctx, "build", "ep/cortex", "8.6.0")
    promote_package(db_ctx, "qa", version="8.5.0")
    assert update_database(db_ctx, "qa").applied  # qa runs 8.5.0's four change sets
    _publish(db_ctx, tmp_path, "8.6.0")  # in build only: qa has no 8.6.0 yet
    before = _changelog_and_columns(sandbox, "commerce_qa")
    release = tmp_path / "release.yaml"
    release.write_text(
        'release: "2026.12"\nimages:\n  - {repository: ep/cortex, tag: "8.6.0"}\n'
        'package: {version: "8.6.0"}\n'
    )

    planned = cloudops("plan", "--to", "qa", "--release", str(release))
    assert planned.returncode == 0, planned.stderr
    assert "would apply 2 change sets (4 applied already)" in planned.stderr, planned.stderr
    shown = [line.strip() for line in planned.stderr.splitlines() if line.strip().startswith("+ ")]
    assert [line.split("::")[1] for line in shown] == ["8.6.0-product-brand", "8.6.0-price-sku-index"]
    # Planning applied nothing in qa: its changelog, tables and columns are as they were
    # (8.6.0 adds a column and an index, no table), and 8.6.0's two are still pending there.
    assert _changelog_and_columns(sandbox, "commerce_qa") == before
    again = plan_database(db_ctx, "qa", "8.6.0", package_from="build")
    assert [p["id"] for p in again.pending] == ["8.6.0-product-brand", "8.6.0-price-sku-index"]
    assert again.applied_count == 4


def _changelog_and_columns(sandbox: world.SandboxState, database: str) -> tuple[list[str], set[str]]:
    """The change set ids in the database's DATABASECHANGELOG, in order, and every
    table.column it holds."""
    connection = _admin(sandbox)
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT ID FROM `{database}`.DATABASECHANGELOG ORDER BY ORDEREXECUTED")
        ids = [str(row[0]) for row in cursor.fetchall()]
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
            (database,),
        )
        return ids, {f"{row[0]}.{row[1]}".upper() for row in cursor.fetchall()}
    finally:
        connection.close()


def test_a_tampered_applied_change_set_is_refused_and_nothing_is_applied(
    db_ctx: PipelineContext, sandbox: world.SandboxState, tmp_path: Path
) -> None:
    update_database(db_ctx, "build")
    connection = _admin(sandbox)
    try:
        cursor = connection.cursor()
        cursor.execute(
            "UPDATE commerce_build.DATABASECHANGELOG SET MD5SUM = '9:0' WHERE ID = '8.5.0-catalog'"
        )
        connection.commit()
    finally:
        connection.close()
    _publish(db_ctx, tmp_path, "8.6.0")

    plan = cloudops("db", "plan", "--account", "build", "--json")
    assert plan.returncode == 3, plan.stderr
    assert [c["id"] for c in json.loads(plan.stdout)["changed"]] == ["8.5.0-catalog"]
    update = cloudops("db", "update", "--account", "build")
    assert update.returncode == 3 and "Traceback" not in update.stderr, update.stderr
    assert "check" in update.stderr.lower()  # the checksum named
    assert "PRODUCT_BRAND" not in json.dumps(sorted(_tables(sandbox, "commerce_build")))
    assert len(plan_database(db_ctx, "build").pending) == 2  # nothing of 8.6.0 was applied


def test_reset_is_refused_in_protected_stages_and_allowed_elsewhere(db_ctx: PipelineContext) -> None:
    refused = cloudops("db", "reset", "--account", "prod")
    assert refused.returncode == 3 and "protected" in refused.stderr, refused.stderr
    with pytest.raises(DatabaseRefused):
        reset_database(db_ctx, "preprod")
    update_database(db_ctx, "build")
    done = reset_database(db_ctx, "build")  # build is not protected
    assert len(done.applied) == 4


def test_a_config_pointing_at_another_accounts_database_is_refused_before_connecting(
    db_ctx: PipelineContext, sandbox: world.SandboxState
) -> None:
    env = db_ctx.pipeline.config_dir / "build" / "AWS" / "Config" / "live.env"
    env.write_text(env.read_text().replace("build-db.build.ep.internal", "prod-db.prod.ep.internal", 1))
    result = cloudops("db", "update", "--account", "build")
    assert result.returncode == 3, result.stderr
    assert "prod-db.prod.ep.internal" in result.stderr and "'prod'" in result.stderr
    assert _tables(sandbox, "commerce_prod") == set() and _tables(sandbox, "commerce_build") == set()


def test_the_package_is_verified_before_its_tool_runs(
    db_ctx: PipelineContext, sandbox: world.SandboxState
) -> None:
    from cloudops.package_store import store_for

    store = store_for(db_ctx, "build")
    stored = store.stored("8.5.0")
    assert stored is not None
    body = store.client.get_object(Bucket=store.bucket.name, Key=stored.key)["Body"].read()
    store.client.put_object(
        Bucket=store.bucket.name,
        Key=stored.key,
        Body=body[:-1] + bytes([body[-1] ^ 1]),
        Metadata={"sha256": stored.sha256},
    )
    result = cloudops("db", "update", "--account", "build")
    assert result.returncode == 3 and "SHA-256" in result.stderr, result.stderr
    assert _tables(sandbox, "commerce_build") == set()


def test_a_killed_update_leaves_the_changelog_consistent_and_a_rerun_completes(
    db_ctx: PipelineContext, sandbox: world.SandboxState, tmp_path: Path
) -> None:
    """kill -9 of cloudops and its tool while a slow change set runs."""
    path = tmp_path / "slow.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in tool_files().items():
            archive.writestr(name, data)
        archive.writestr(
            "database/changelog/0001-slow.sql",
            "--liquibase formatted sql\n\n"
            "--changeset ep:first\nCREATE TABLE IF NOT EXISTS TFIRST (UIDPK BIGINT);\n\n"
            "--changeset ep:slow\nCREATE TABLE IF NOT EXISTS TSLOW (UIDPK BIGINT);\nSELECT SLEEP(4);\n\n"
            "--changeset ep:last\nCREATE TABLE IF NOT EXISTS TLAST (UIDPK BIGINT);\n",
        )
        archive.writestr("webapps/ep.war", b"x" * 1024)
    publish_package(db_ctx, path, "9.0.0")
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudops", "db", "update", "--account", "build"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "TSLOW" not in _tables(sandbox, "commerce_build"):
        time.sleep(0.05)
    assert "TSLOW" in _tables(sandbox, "commerce_build"), "the update never reached the slow change set"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    connection = _admin(sandbox)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT ID FROM commerce_build.DATABASECHANGELOG ORDER BY ORDEREXECUTED")
        applied = [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()
    tables = _tables(sandbox, "commerce_build")
    assert applied == ["first"]  # every recorded change set's table exists; none after it ran
    assert "TFIRST" in tables and "TLAST" not in tables

    rerun = update_database(db_ctx, "build")  # the stale locks (bucket, database) are taken over
    assert rerun.applied == ["slow", "last"]
    assert {"TFIRST", "TSLOW", "TLAST"} <= _tables(sandbox, "commerce_build")


def test_no_database_password_in_any_output_or_record(db_ctx: PipelineContext) -> None:
    passwords = [_password(db_ctx, a) for a in ("build", "qa", "prod")]
    runs = [
        cloudops("db", "plan", "--account", "build"),
        cloudops("db", "update", "--account", "build", "--json"),
        cloudops("db", "update", "--account", "qa"),  # no package in qa: a clean failure
        cloudops("db", "reset", "--account", "prod"),
        cloudops("history", "--account", "build", "--json"),
    ]
    assert [r.returncode for r in runs] == [0, 0, 2, 3, 0], [r.stderr for r in runs]
    for run in runs:
        for password in passwords:
            if password in run.stdout + run.stderr:
                pytest.fail(f"a database password leaked into the output of {run.args[3:]}")
        assert "Traceback" not in run.stderr


def test_a_protected_stage_is_reset_only_with_an_approved_reset_plan(
    db_ctx: PipelineContext, sandbox: world.SandboxState, tmp_path: Path
) -> None:
    from cloudops.package import promote_package

    for stage in ("qa", "preprod"):
        promote_package(db_ctx, stage, version="8.5.0")
    pipeline = tmp_path / "pipeline.yaml"
    text = sandbox.pipeline.read_text().replace(
        "config_root: config", f"config_root: {db_ctx.pipeline.config_dir}"
    )
    pipeline.write_text(text + "databases: {allow_reset: [preprod]}\n")
    args = ["--pipeline", str(pipeline)]
    assert cloudops("db", "update", "--account", "preprod", *args).returncode == 0

    without = cloudops("db", "reset", "--account", "preprod", *args)
    assert without.returncode == 3 and "needs an approved reset plan" in without.stderr, without.stderr
    plan = tmp_path / "reset.json"
    written = cloudops("db", "reset", "--account", "preprod", "--out", str(plan), *args)
    assert written.returncode == 0, written.stderr
    assert json.loads(plan.read_text())["route"]["purpose"] == "db-reset"
    unapproved = cloudops("db", "reset", "--account", "preprod", "--plan", str(plan), *args)
    assert unapproved.returncode == 3 and "requires an approval" in unapproved.stderr, unapproved.stderr
    applied = cloudops("apply", str(plan), *args)
    assert applied.returncode == 2 and "db reset" in applied.stderr  # not a release plan

    self_approved = cloudops("approve", str(plan), *args)
    assert self_approved.returncode == 0, self_approved.stderr
    alone = cloudops("db", "reset", "--account", "preprod", "--plan", str(plan), *args)
    assert alone.returncode == 3 and "another approver" in alone.stderr, alone.stderr
    approver = "arn:aws:iam::333333333333:role/release-approver"
    assert cloudops("approve", str(plan), "--role-arn", approver, *args).returncode == 0
    reset = cloudops("db", "reset", "--account", "preprod", "--plan", str(plan), "--json", *args)
    assert reset.returncode == 0, reset.stderr
    assert len(json.loads(reset.stdout)["applied"]) == 4
    assert cloudops("db", "reset", "--account", "prod", *args).returncode == 3  # not allowed there


def test_two_runs_against_one_database_are_serialized(db_ctx: PipelineContext) -> None:
    from cloudops.aws.s3_lock import KeyLock
    from cloudops.db_population import LOCK_KEY
    from cloudops.package_store import store_for

    bucket = store_for(db_ctx, "build").bucket
    with KeyLock(bucket.client, bucket.name, LOCK_KEY, what="the database of 'build'"):  # a live holder
        second = cloudops("db", "update", "--account", "build")
    assert second.returncode == 3 and "Traceback" not in second.stderr, second.stderr
    assert cloudops("db", "update", "--account", "build").returncode == 0  # once it is free
