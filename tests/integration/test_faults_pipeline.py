"""Promotions under faults on the sandbox: S3 (moto) and registry traffic through the
fault proxy; kill -9 at many points; two promotions at once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudops.oci import ACCEPT_MANIFESTS
from cloudops.sandbox import world
from cloudops.sandbox.seed import build_package
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.run import cloudops
from tests.support.sandbox import ecr_tags, proxied_world, publish, registry_token

MiB = 1024 * 1024
FAST = {"CLOUDOPS_RETRY_ATTEMPTS": "4", "CLOUDOPS_RETRY_SECONDS": "20", "AWS_MAX_ATTEMPTS": "4"}
SMALL_PARTS = {
    "CLOUDOPS_MULTIPART_THRESHOLD_MIB": "5",
    "CLOUDOPS_PART_SIZE_MIB": "5",
    "CLOUDOPS_S3_WORKERS": "2",
}


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


def _package(ctx: Any, tmp_path: Path, version: str, size: int) -> str:
    path = tmp_path / f"p-{version}.zip"
    build_package(path, version, size=size)
    from cloudops.package import publish_package

    publish_package(ctx, path, version)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _qa_state(ctx: Any) -> tuple[dict[str, str] | None, list[Any]]:
    s3 = ctx.session("qa").client("s3")
    bucket = ctx.pipeline.bucket("qa")
    try:
        pointer = json.loads(
            s3.get_object(Bucket=bucket, Key="deployment-package/current.json")["Body"].read()
        )
    except s3.exceptions.NoSuchKey:
        pointer = None
    return pointer, s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def _pointer_is_sound(ctx: Any) -> None:
    """current.json, when present, names a version whose bytes are all there and hash right."""
    pointer, _ = _qa_state(ctx)
    if pointer is None:
        return
    s3 = ctx.session("qa").client("s3")
    body = s3.get_object(Bucket=ctx.pipeline.bucket("qa"), Key=pointer["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == pointer["sha256"]


@pytest.mark.parametrize(
    "rule",
    [
        Rule("status", path=r"partNumber=", method="PUT", status=503, times=2),
        Rule("status", path=r"partNumber=", method="PUT", status=500, times=1),
        Rule("drop_response", path=r"/versions/.*\.zip$", method="GET", after_bytes=3 * MiB, times=1),
        Rule("drop_request", path=r"partNumber=", method="PUT", after_bytes=1 * MiB, times=1),
    ],
    ids=["503-on-upload-part", "500-on-upload-part", "drop-source-stream", "drop-part-upload"],
)
def test_package_promotion_survives_s3_faults(
    setup, s3_proxy: FaultProxy, tmp_path: Path, rule: Rule
) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    sha = _package(ctx, tmp_path, "1.0", 12 * MiB)
    s3_proxy.add(rule)
    result = _run(pipeline, "promote", "package", "--to", "qa", "--json", env=SMALL_PARTS)
    assert result.returncode == 0, result.stderr
    assert rule.hits >= 1, "the fault was never injected"
    pointer, uploads = _qa_state(ctx)
    assert pointer is not None and pointer["sha256"] == sha and uploads == []
    _pointer_is_sound(ctx)


def test_package_promotion_that_keeps_failing_exits_1_and_leaves_nothing_open(
    setup, s3_proxy, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    _package(ctx, tmp_path, "1.0", 1 * MiB)
    assert _run(pipeline, "promote", "package", "--to", "qa", "--version", "1.0").returncode == 0
    _package(ctx, tmp_path, "2.0", 12 * MiB)
    s3_proxy.add(Rule("status", path=r"partNumber=", method="PUT", status=503, times=-1))
    result = _run(pipeline, "promote", "package", "--to", "qa", "--version", "2.0", env=SMALL_PARTS)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "package 2.0" in result.stderr and "failed" in result.stderr
    pointer, uploads = _qa_state(ctx)
    assert pointer is not None and pointer["version"] == "1.0" and uploads == []


def test_release_survives_registry_and_s3_faults(setup, s3_proxy, qa_proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    digest = publish(ctx, "build", "ep/cortex", "3.0")
    sha = _package(ctx, tmp_path, "3.0", 2 * MiB)
    release = tmp_path / "release.yaml"
    release.write_text(
        'release: "r3"\nimages:\n  - {repository: ep/cortex, tag: "3.0"}\npackage: {version: "3.0"}\n'
    )
    qa_proxy.add(
        Rule("status", path="/blobs/uploads/", method="POST", status=429, retry_after="0.5", times=2)
    )
    qa_proxy.add(Rule("status", path="/manifests/3.0", method="PUT", status=502, times=1))
    s3_proxy.add(Rule("status", path=r"/versions/", method="PUT", status=503, times=1))
    result = _run(pipeline, "promote", "release", "--to", "qa", "--release", str(release), "--json")
    assert result.returncode == 0, result.stderr
    assert qa_proxy.injected >= 3 and s3_proxy.injected >= 1
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["images"][0]["source_digest"] == digest and doc["package"]["sha256"] == sha
    # Not cloudops' word for it: qa's ECR, its registry and its bucket hold exactly that.
    assert ecr_tags(ctx, "qa", "ep/cortex") == {"3.0": digest}
    assert _tag_is_sound(ctx, "ep/cortex", "3.0") == digest
    pointer, uploads = _qa_state(ctx)
    assert pointer is not None and pointer["version"] == "3.0" and pointer["sha256"] == sha and uploads == []
    _pointer_is_sound(ctx)


def _tag_is_sound(ctx: Any, repository: str, tag: str) -> str | None:
    """The digest under the tag in qa, after checking every blob it names is present."""
    user, password = registry_token(ctx, "qa").split(":", 1)
    base = f"http://{ctx.registry_host('qa')}/v2/{repository}"
    with httpx.Client(auth=(user, password), timeout=30) as client:
        answer = client.get(f"{base}/manifests/{tag}", headers={"Accept": ACCEPT_MANIFESTS})
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        manifest = answer.json()
        for blob in [manifest["config"], *manifest["layers"]]:
            assert client.head(f"{base}/blobs/{blob['digest']}").status_code == 200, "tag over a missing blob"
        return "sha256:" + hashlib.sha256(answer.content).hexdigest()


def _kill_at(proxy: FaultProxy, args: list[str], env: dict[str, str], index: int) -> bool:
    """Stall the index-th request through ``proxy``, kill -9 the process there. False when
    the run ended before reaching that request."""
    proxy.clear()
    proxy.log.clear()
    # The stall holds the request until released (or 10 minutes): the kill point is that
    # request, however slow the machine is to get there.
    stall = proxy.add(Rule("stall", skip=index, times=1, seconds=600))
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudops", *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while stall.hits == 0 and process.poll() is None:
        time.sleep(0.01)
    reached = stall.hits > 0 and process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    proxy.release_stalls()
    return reached


def test_kill_9_at_many_points_of_an_image_promotion_then_a_rerun_completes(setup, qa_proxy) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    digest = publish(ctx, "build", "ep/search", "4.0", scale=0.3)
    args = [
        "promote",
        "image",
        "--to",
        "qa",
        "--repository",
        "ep/search",
        "--tag",
        "4.0",
        "--pipeline",
        str(pipeline),
    ]
    # A clean run through the proxy tells how many registry requests a promotion makes.
    probe = _run(pipeline, *args[:-2], "--dry-run")
    assert probe.returncode == 0, probe.stderr
    total = 20  # HEADs, POST/PUT per blob, manifest PUT, read-back: sample across them
    killed = 0
    for index in range(0, total, 3):
        reached = _kill_at(qa_proxy, args, FAST, index)
        killed += reached
        assert _tag_is_sound(ctx, "ep/search", "4.0") in (None, digest)
    assert killed >= 4
    qa_proxy.clear()
    rerun = _run(pipeline, *args[:-2])
    assert rerun.returncode == 0, rerun.stderr
    assert _tag_is_sound(ctx, "ep/search", "4.0") == digest


def test_kill_9_at_many_points_of_a_package_promotion_then_a_rerun_completes(
    setup, s3_proxy, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    _package(ctx, tmp_path, "1.0", 1 * MiB)
    assert _run(pipeline, "promote", "package", "--to", "qa", "--version", "1.0").returncode == 0
    sha = _package(ctx, tmp_path, "2.0", 12 * MiB)
    args = ["promote", "package", "--to", "qa", "--version", "2.0", "--pipeline", str(pipeline)]
    killed = 0
    for index in range(2, 30, 4):
        killed += _kill_at(s3_proxy, args, {**FAST, **SMALL_PARTS}, index)
        s3_proxy.clear()
        _pointer_is_sound(ctx)
        pointer, _ = _qa_state(ctx)
        assert pointer is not None and pointer["version"] in ("1.0", "2.0")
    assert killed >= 4
    rerun = _run(pipeline, *args[:-2], env=SMALL_PARTS)
    assert rerun.returncode == 0, rerun.stderr
    pointer, uploads = _qa_state(ctx)
    assert pointer is not None and pointer["sha256"] == sha and uploads == []
    _pointer_is_sound(ctx)


def _image_errors(output: str) -> object:
    """What each image of a --json run reports as its error (the whole output when it is
    no JSON): what a failed assertion should show, not a truncated document."""
    try:
        return [image.get("error") for image in json.loads(output)["images"]]
    except (ValueError, KeyError, TypeError):
        return output


def test_two_promotions_of_the_same_image_at_once(setup) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    digest = publish(ctx, "build", "ep/batch", "5.0", scale=0.3)
    args = [
        sys.executable,
        "-m",
        "cloudops",
        "promote",
        "image",
        "--to",
        "qa",
        "--repository",
        "ep/batch",
        "--tag",
        "5.0",
        "--json",
        "--pipeline",
        str(pipeline),
    ]
    runs = [
        subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **FAST}
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    codes = [run.returncode for run in runs]
    assert codes == [0, 0], [(_image_errors(out), err) for out, err in outputs]
    statuses = sorted(json.loads(out)["images"][0]["status"] for out, _ in outputs)
    assert statuses in (["already-promoted", "promoted"], ["promoted", "promoted"])
    assert _tag_is_sound(ctx, "ep/batch", "5.0") == digest
    records = json.loads(cloudops("history", "--account", "qa", "--json").stdout)["records"]
    claimed = [r for r in records if r["result"] == "promoted"]
    assert len(claimed) == statuses.count("promoted") and len(records) == 2


def test_two_package_promotions_at_once(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, pipeline = setup
    sha = _package(ctx, tmp_path, "6.0", 8 * MiB)
    args = [
        sys.executable,
        "-m",
        "cloudops",
        "promote",
        "package",
        "--to",
        "qa",
        "--json",
        "--pipeline",
        str(pipeline),
    ]
    runs = [
        subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **FAST, **SMALL_PARTS},
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    codes = sorted(run.returncode for run in runs)
    # Both succeed, or one is refused because the other holds the transfer's lock.
    assert codes in ([0, 0], [0, 3]), outputs
    if codes == [0, 3]:
        assert any("already writing package 6.0" in err for _, err in outputs), outputs
    pointer, uploads = _qa_state(ctx)
    assert pointer is not None and pointer["sha256"] == sha and uploads == []
    _pointer_is_sound(ctx)
