"""Releases into one account never interleave (issue 14): apply, promote release and
rollback hold releases/apply.lock in the destination's bucket from their second look at
the world to moving current.json. A lock held by a live run refuses the next one (exit 3)
and nothing is written; a killed run's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from cloudops.release_current import CURRENT_KEY, LOCK_KEY
from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import ecr_tags, publish

RELEASE = (
    'release: "2026.11"\nimages:\n  - {repository: ep/cortex, tag: "8.5.0"}\npackage: {version: "8.5.0"}\n'
)


def _hold_lock(ctx: Any, pid: int) -> None:
    """The lock object as a run with ``pid`` on this host writes it (aws/s3_lock.py)."""
    holder = {"token": "f" * 32, "host": socket.gethostname(), "pid": pid, "started": time.time()}
    ctx.session("qa").client("s3").put_object(
        Bucket=ctx.pipeline.bucket("qa"), Key=LOCK_KEY, Body=json.dumps(holder).encode()
    )


def _keys(ctx: Any) -> list[str]:
    listing = ctx.session("qa").client("s3").list_objects_v2(Bucket=ctx.pipeline.bucket("qa"))
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_a_release_into_an_account_another_run_holds_is_refused_then_a_dead_holder_is_taken_over(
    ctx, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    publish(ctx, "build", "ep/cortex", "8.5.0")
    package = tmp_path / "package.zip"
    build_package(package, "8.5.0", size=256 * 1024)
    assert cloudops("package", "publish", str(package), "--version", "8.5.0").returncode == 0
    release = tmp_path / "release.yaml"
    release.write_text(RELEASE)
    plan = tmp_path / "plan.json"
    assert cloudops("plan", "--to", "qa", "--release", str(release), "--out", str(plan)).returncode == 0

    _hold_lock(ctx, os.getpid())  # a live run on this host: this test's own process
    before = _keys(ctx)
    for args in (["apply", str(plan)], ["promote", "release", "--to", "qa", "--release", str(release)]):
        refused = cloudops(*args)
        assert_clean_failure(refused, 3, "another run is already writing a release into 'qa'")
    assert _keys(ctx) == before and ecr_tags(ctx, "qa", "ep/cortex") == {}
    assert CURRENT_KEY not in before

    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that no longer runs: the lock of a killed run
    _hold_lock(ctx, dead)
    applied = cloudops("apply", str(plan))
    assert applied.returncode == 0, applied.stderr
    assert CURRENT_KEY in _keys(ctx) and LOCK_KEY not in _keys(ctx)  # taken over, then released
