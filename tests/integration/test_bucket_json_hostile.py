"""The small JSON objects cloudops reads from a bucket (the package's current.json, a
transfer lock's holder) are hostile input, on the sandbox's moto server: planted with
boto3 past cloudops, as anyone allowed to write the bucket could. `status`, `audit` and
`promote package` answer with their documented exit codes and a clear message, never a
traceback or "internal error" (aws/s3_json.py reads them bounded and validated)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cloudops.aws.s3_lock import KeyLock, TransferInProgressError
from cloudops.package import publish_package
from cloudops.package_store import PackageStore, store_for
from cloudops.pipeline.context import PipelineContext
from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops

POINTER = "deployment-package/current.json"
HOSTILE = {
    "too-large": b"[" * 100_000,  # was a RecursionError, read whole
    "deep": b"[" * 60_000,  # under the size bound: the parser's RecursionError
    "not-utf8": b"\xff\xfe\x00{",
    "huge-int": b"1" * 5000,  # past Python's int digit limit
    "wrong-shape": json.dumps({"version": 5, "sha256": ["x"]}).encode(),
    "empty": b"",
}
LOCKS = {
    **HOSTILE,
    "bad-fields": json.dumps({"started": "yesterday", "pid": "one", "host": "h"}).encode(),
    "pid-zero": json.dumps({"started": time.time(), "pid": 0, "host": "h", "token": "t"}).encode(),
}


def _plant(ctx: PipelineContext, account: str, key: str, body: bytes) -> None:
    ctx.session(account).client("s3").put_object(Bucket=ctx.pipeline.bucket(account), Key=key, Body=body)


def _publish(ctx: PipelineContext, tmp_path: Path, version: str = "1.0") -> None:
    package = tmp_path / f"package-{version}.zip"
    build_package(package, version, size=16 * 1024)
    assert publish_package(ctx, package, version).ok


def _no_crash(result: Any) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream and "internal error" not in stream, result.stderr


@pytest.mark.parametrize("kind", ["too-large", "deep", "wrong-shape"])
def test_status_shows_an_invalid_pointer_as_unreadable(
    ctx: PipelineContext, tmp_path: Path, kind: str
) -> None:
    _publish(ctx, tmp_path)
    _plant(ctx, "build", POINTER, HOSTILE[kind])
    result = cloudops("status", "--json")
    _no_crash(result)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f"s3://{ctx.pipeline.bucket('build')}/{POINTER} is not a valid package pointer" in text
    assert "current pointer unreadable" in text
    human = cloudops("status")
    _no_crash(human)
    assert human.returncode == 0, human.stderr


@pytest.mark.parametrize("kind", ["too-large", "deep", "not-utf8"])
def test_audit_reports_an_invalid_pointer_as_a_finding(ctx: PipelineContext, kind: str) -> None:
    _plant(ctx, "qa", POINTER, HOSTILE[kind])
    result = cloudops("audit", "--json")
    _no_crash(result)
    assert result.returncode == 4, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert any(
        f["rule"] == "deployment-package"
        and f["account"] == "qa"
        and "is not a valid package pointer" in f["what"]
        for f in findings
    ), findings


@pytest.mark.parametrize("kind", ["too-large", "deep", "huge-int", "empty"])
def test_promote_from_an_invalid_source_pointer_is_an_input_error(ctx: PipelineContext, kind: str) -> None:
    _plant(ctx, "build", POINTER, HOSTILE[kind])
    result = cloudops("promote", "package", "--to", "qa")
    assert_clean_failure(result, 2, "no valid current deployment package", "not a valid package pointer")
    _no_crash(result)


def test_an_invalid_destination_pointer_is_moved_over(ctx: PipelineContext, tmp_path: Path) -> None:
    _publish(ctx, tmp_path, "1.0")
    _plant(ctx, "qa", POINTER, HOSTILE["deep"])
    result = cloudops("promote", "package", "--to", "qa", "--version", "1.0")
    _no_crash(result)
    assert result.returncode == 0, result.stderr
    assert store_for(ctx, "qa").current() == store_for(ctx, "build").current()


def _lock_key(ctx: PipelineContext, account: str, version: str) -> str:
    return store_for(ctx, account).version_key(version) + ".lock"


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_a_lock_held_by_an_invalid_holder_refuses_promote(
    ctx: PipelineContext, tmp_path: Path, kind: str
) -> None:
    """Not stolen on what it claims: refused (exit 3) until S3's LastModified is older
    than the lease."""
    _publish(ctx, tmp_path, "1.0")
    _plant(ctx, "qa", _lock_key(ctx, "qa", "1.0"), LOCKS[kind])
    result = cloudops("promote", "package", "--to", "qa", "--version", "1.0")
    _no_crash(result)
    assert_clean_failure(result, 3, "invalid holder")
    assert store_for(ctx, "qa").stored("1.0") is None


def test_an_invalid_lock_is_taken_over_once_its_lease_ran_out_by_s3s_clock(ctx: PipelineContext) -> None:
    store: PackageStore = store_for(ctx, "qa")
    key = _lock_key(ctx, "qa", "9.9")
    _plant(ctx, "qa", key, HOSTILE["deep"])
    with pytest.raises(TransferInProgressError, match="invalid holder"):
        KeyLock(store.client, store.bucket.name, key, what="test").acquire()
    time.sleep(1.1)  # LastModified has second precision
    lock = KeyLock(store.client, store.bucket.name, key, what="test", lease=0.5)
    lock.acquire()  # stale by LastModified: replaced by our own
    body = json.loads(store.client.get_object(Bucket=store.bucket.name, Key=key)["Body"].read())
    assert body["pid"] > 0 and body["token"]
    lock.release()


def test_a_valid_lock_claiming_a_future_start_does_not_outlive_its_lease(ctx: PipelineContext) -> None:
    store = store_for(ctx, "qa")
    key = _lock_key(ctx, "qa", "9.8")
    future = {"token": "t", "host": "elsewhere", "pid": 4242, "started": time.time() + 10**9}
    _plant(ctx, "qa", key, json.dumps(future).encode())
    with pytest.raises(TransferInProgressError, match="another run is already writing"):
        KeyLock(store.client, store.bucket.name, key, what="test").acquire()
    time.sleep(1.1)
    lock = KeyLock(store.client, store.bucket.name, key, what="test", lease=0.5)
    lock.acquire()  # the lease runs from S3's LastModified, not the claimed start
    lock.release()
