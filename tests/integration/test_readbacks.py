"""The read-backs are what marks a write done: the tag read back after a copy must name the
source digest, and a package's new object is read back and hashed before current.json
moves. Here the fault proxy serves wrong bytes on exactly that read-back (armed by the
write it checks), and nothing may be marked done: exit 1, the run reported failed,
current.json unmoved, no success record in the destination's history."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudops.oci import ACCEPT_MANIFESTS
from cloudops.package import publish_package
from cloudops.sandbox import world
from cloudops.sandbox.seed import build_package
from tests.conftest import Registry
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.images import Pusher, TestImage, make_image, random_layer
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import proxied_world, publish, registry_token

MiB = 1024 * 1024
FAST = {"CLOUDOPS_RETRY_ATTEMPTS": "3", "CLOUDOPS_RETRY_SECONDS": "20", "AWS_MAX_ATTEMPTS": "3"}
SMALL_PARTS = {
    "CLOUDOPS_MULTIPART_THRESHOLD_MIB": "5",
    "CLOUDOPS_PART_SIZE_MIB": "5",
    "CLOUDOPS_S3_WORKERS": "2",
}
HISTORY_PREFIX = "cloudops/history/"
POINTER = "deployment-package/current.json"


def _digit_offset(raw: bytes) -> int:
    """The offset of a decimal digit inside the first digest of a manifest: flipped (XOR
    0x01) it stays a digit, so the bytes still parse and only their digest changes."""
    start = raw.index(b"sha256:") + len(b"sha256:")
    return start + next(i for i, c in enumerate(raw[start : start + 64]) if chr(c).isdigit())


# -- the tag read-back of `cloudops copy` ---------------------------------------------------


@pytest.fixture
def image(registry: Registry) -> TestImage:
    built = make_image([random_layer(300 * 1024), random_layer(100 * 1024)], oci=True)
    Pusher(registry.url).push("ep/cortex", "1", built)
    return built


@pytest.fixture
def dst_proxy(registry2: Registry) -> Iterator[FaultProxy]:
    with fault_proxy(registry2.url) as proxy:
        yield proxy


def _copy_json(registry: Registry, dst: FaultProxy) -> subprocess.CompletedProcess[str]:
    return cloudops(
        "copy",
        f"{registry.host}/ep/cortex:1",
        f"{dst.host}/ep/cortex:1",
        "--insecure-registry",
        registry.host,
        "--insecure-registry",
        dst.host,
        "--json",
        env=FAST,
    )


def _assert_copy_reported_failed(result: subprocess.CompletedProcess[str], image: TestImage) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    [entry] = report["images"]
    assert entry["status"] == "failed", entry
    assert "after the copy" in entry["error"] and image.digest in entry["error"], entry["error"]
    _claims_nothing(result.stderr)


def _claims_nothing(stderr: str) -> None:
    """No line of the human log says the image is there (a Jenkins log is read by people)."""
    assert "already at" not in stderr and "✓" not in stderr, stderr


def test_copy_fails_when_the_tag_reads_back_another_digest(
    image: TestImage, registry: Registry, dst_proxy: FaultProxy
) -> None:
    """The registry answers the read-back HEAD of the tag, after the tag PUT, with another
    digest (another writer, or a registry that stored something else)."""
    other = "sha256:" + hashlib.sha256(b"not the image").hexdigest()
    rule = dst_proxy.add(
        Rule(
            "corrupt",
            path=r"/v2/ep/cortex/manifests/1$",
            method="HEAD",
            headers={"Docker-Content-Digest": other},
            armed_by=("PUT", r"/v2/ep/cortex/manifests/1$"),
            times=-1,
        )
    )
    result = _copy_json(registry, dst_proxy)
    assert rule.hits >= 1, "the read-back never happened"
    _assert_copy_reported_failed(result, image)
    assert other in result.stdout


def test_copy_fails_when_the_tag_reads_back_wrong_bytes(
    image: TestImage, registry: Registry, dst_proxy: FaultProxy
) -> None:
    """A registry that sends no digest on HEAD: the read-back GETs the manifest by tag,
    and is served wrong bytes of the right length (no digest header to compare with)."""
    tag = r"/v2/ep/cortex/manifests/1$"
    armed = ("PUT", tag)
    no_digest = {"Docker-Content-Digest": ""}
    dst_proxy.add(Rule("corrupt", path=tag, method="HEAD", headers=no_digest, armed_by=armed, times=-1))
    get = dst_proxy.add(
        Rule(
            "corrupt",
            path=tag,
            method="GET",
            headers=no_digest,
            after_bytes=_digit_offset(image.manifest),
            armed_by=armed,
            times=-1,
        )
    )
    wrong = bytearray(image.manifest)
    wrong[_digit_offset(image.manifest)] ^= 0x01
    result = _copy_json(registry, dst_proxy)
    assert get.hits >= 1, "the read-back GET never happened"
    _assert_copy_reported_failed(result, image)
    assert "sha256:" + hashlib.sha256(wrong).hexdigest() in result.stdout


# -- promotions on the sandbox: the image tag, and the package before current.json -----------


@pytest.fixture(scope="module")
def s3_proxy(sandbox: world.SandboxState) -> Iterator[FaultProxy]:
    with fault_proxy(sandbox.moto_url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def qa_proxy(sandbox: world.SandboxState) -> Iterator[FaultProxy]:
    with fault_proxy(f"http://{sandbox.registries['qa']}") as proxy:
        yield proxy


@pytest.fixture
def setup(sandbox, s3_proxy, qa_proxy, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A clean world, and a pipeline whose AWS endpoint and qa registry go through proxies."""
    return proxied_world(sandbox, s3_proxy, qa_proxy, tmp_path)


def _run(pipeline: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cloudops(*args, "--pipeline", str(pipeline), env={**FAST, **(env or {})})


def _records(ctx: Any, account: str) -> list[dict[str, Any]]:
    """The account's promotion records, read straight from its bucket."""
    s3 = ctx.session(account).client("s3")
    bucket = ctx.pipeline.bucket(account)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=HISTORY_PREFIX).get("Contents", [])
    return [json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listed]


def _object(ctx: Any, account: str, key: str) -> bytes | None:
    s3 = ctx.session(account).client("s3")
    try:
        body: bytes = s3.get_object(Bucket=ctx.pipeline.bucket(account), Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return body


def test_image_promotion_whose_tag_reads_back_wrong_is_recorded_failed(
    setup, sandbox: world.SandboxState, qa_proxy: FaultProxy
) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    digest = publish(ctx, "build", "ep/search", "4.0", scale=0.05)
    other = "sha256:" + hashlib.sha256(b"someone else's image").hexdigest()
    tag = r"/v2/ep/search/manifests/4\.0$"
    rule = qa_proxy.add(
        Rule(
            "corrupt",
            path=tag,
            method="HEAD",
            headers={"Docker-Content-Digest": other},
            armed_by=("PUT", tag),
            times=-1,
        )
    )
    result = _run(pipeline, "promote", "image", "--to", "qa", "--repository", "ep/search", "--tag", "4.0")
    assert rule.hits >= 1, "the read-back never happened"
    assert_clean_failure(result, 1, "after the copy", other[:19])
    _claims_nothing(result.stderr)
    records = _records(ctx, "qa")
    assert [r["result"] for r in records] == ["failed"], records
    assert records[0]["source_digest"] in (digest, None)
    # The tag was written before the read-back (tags last): what the registry really holds
    # is the source digest, yet the run claims nothing.
    head = httpx.head(
        f"http://{sandbox.registries['qa']}/v2/ep/search/manifests/4.0",
        headers={"Accept": ACCEPT_MANIFESTS, "Authorization": _basic(ctx)},
    )
    assert head.headers.get("docker-content-digest") == digest


def _basic(ctx: Any) -> str:
    return "Basic " + base64.b64encode(registry_token(ctx, "qa").encode()).decode()


def _package(ctx: Any, tmp_path: Path, version: str, size: int) -> tuple[Path, str]:
    path = tmp_path / f"p-{version}.zip"
    build_package(path, version, size=size)
    with path.open("rb") as handle:
        sha = hashlib.file_digest(handle, "sha256").hexdigest()
    return path, sha


@pytest.mark.parametrize(
    ("size", "env", "written_by"),
    [
        (2 * MiB, {}, ("PUT", r"/versions/1\.0/[^/?]+\.zip$")),
        (12 * MiB, SMALL_PARTS, ("POST", r"/versions/1\.0/[^/?]+\.zip\?uploadId=")),
    ],
    ids=["single-put", "multipart"],
)
def test_package_promotion_whose_copy_reads_back_wrong_moves_nothing(
    setup, s3_proxy: FaultProxy, tmp_path: Path, size: int, env: dict[str, str], written_by: tuple[str, str]
) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    path, sha = _package(ctx, tmp_path, "1.0", size)
    publish_package(ctx, path, "1.0")
    qa_bucket = re.escape(ctx.pipeline.bucket("qa"))
    version_object = rf"{qa_bucket}/deployment-package/versions/1\.0/[^/?]+\.zip$"
    rule = s3_proxy.add(
        Rule(
            "corrupt",
            path=version_object,
            method="GET",
            after_bytes=size // 2,
            armed_by=(written_by[0], qa_bucket + ".*" + written_by[1]),
            times=-1,
        )
    )
    result = _run(pipeline, "promote", "package", "--to", "qa", "--json", env=env)
    assert rule.hits >= 1, "the read-back never happened"
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "failed" and report["current_moved"] is False, report
    assert "reads back" in report["error"], report["error"]
    assert _object(ctx, "qa", POINTER) is None, "current.json moved over an unproven copy"
    key = "deployment-package/versions/1.0/ext-deployment-package.zip"
    assert _object(ctx, "qa", key) is None, "the copy that read back wrong was kept"
    assert [r["result"] for r in _records(ctx, "qa")] == ["failed"]
    # The fault was only the read-back: a run without it promotes (the bytes stored were right).
    s3_proxy.clear()
    again = _run(pipeline, "promote", "package", "--to", "qa", "--json", env=env)
    assert again.returncode == 0, again.stderr
    pointer = json.loads(_object(ctx, "qa", POINTER) or b"{}")
    assert pointer["sha256"] == sha


def test_package_publish_whose_upload_reads_back_wrong_moves_nothing(
    setup, s3_proxy: FaultProxy, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    path, _ = _package(ctx, tmp_path, "2.0", 2 * MiB)
    build_bucket = re.escape(ctx.pipeline.bucket("build"))
    version_object = rf"{build_bucket}/deployment-package/versions/2\.0/[^/?]+\.zip$"
    rule = s3_proxy.add(
        Rule(
            "corrupt",
            path=version_object,
            method="GET",
            after_bytes=MiB,
            armed_by=("PUT", version_object),
            times=-1,
        )
    )
    result = _run(pipeline, "package", "publish", str(path), "--version", "2.0")
    assert rule.hits >= 1, "the read-back never happened"
    assert_clean_failure(result, 1, "reads back")
    assert _object(ctx, "build", POINTER) is None, "current.json moved over an unproven upload"
    assert _object(ctx, "build", "deployment-package/versions/2.0/ext-deployment-package.zip") is None
