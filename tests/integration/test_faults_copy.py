"""Image copies under injected faults: each test asserts the outcome AND the state left
behind (never a tag over missing content; a throttled run never reports success)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cloudops.registry.retry import RetryPolicy
from tests.conftest import Registry
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.images import Pusher, TestImage, make_image, make_index, random_layer
from tests.support.run import assert_clean_failure, cloudops, copy_images, interruptible

FAST = RetryPolicy(attempts=4, total_seconds=30, base_delay=0.05, max_delay=0.5)
MiB = 1024 * 1024


@pytest.fixture
def image(registry: Registry) -> TestImage:
    amd = make_image([random_layer(2 * MiB), random_layer(300 * 1024)], oci=True, arch="amd64")
    arm = make_image([random_layer(1 * MiB), random_layer(200 * 1024)], oci=True, arch="arm64")
    index = make_index([(amd, "amd64"), (arm, "arm64")], oci=True)
    Pusher(registry.url).push("ep/cortex", "1", index)
    return index


@pytest.fixture
def src_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with fault_proxy(registry.url) as proxy:
        yield proxy


@pytest.fixture
def dst_proxy(registry2: Registry) -> Iterator[FaultProxy]:
    with fault_proxy(registry2.url) as proxy:
        yield proxy


def _copy(src: FaultProxy, dst: FaultProxy, retry: RetryPolicy = FAST):  # type: ignore[no-untyped-def]
    return copy_images(
        [(f"{src.host}/ep/cortex:1", f"{dst.host}/ep/cortex:1")], [src.host, dst.host], retry=retry
    )


def _cli_copy(src: FaultProxy, dst: FaultProxy) -> list[str]:
    """`cloudops copy` arguments for the test image, through both proxies."""
    return [
        "copy",
        f"{src.host}/ep/cortex:1",
        f"{dst.host}/ep/cortex:1",
        "--insecure-registry",
        src.host,
        "--insecure-registry",
        dst.host,
    ]


def _consistent(registry: Registry, image: TestImage) -> str | None:
    """The destination tag's digest; asserts that whatever it names is fully present."""
    dest = Pusher(registry.url)
    tagged = dest.manifest_digest("ep/cortex", "1")
    if tagged is not None:
        assert tagged == image.digest
        for child in image.children:
            assert dest.manifest_digest("ep/cortex", child.digest) == child.digest
        assert all(dest.blob_exists("ep/cortex", b.digest) for b in image.all_blobs())
    return tagged


FAULTS = {
    "429-retry-after-on-blob-put": (
        "dst",
        Rule("status", path="/blobs/uploads/.+digest=", method="PUT", status=429, retry_after="1", times=2),
    ),
    "500-on-manifest-get": (
        "src",
        Rule("status", path="/manifests/sha256", method="GET", status=500, times=2),
    ),
    "502-on-blob-head": ("dst", Rule("status", path="/blobs/sha256", method="HEAD", status=502, times=3)),
    "503-on-manifest-put": ("dst", Rule("status", path="/manifests/", method="PUT", status=503, times=1)),
    "drop-source-blob-after-bytes": (
        "src",
        Rule("drop_response", path="/blobs/sha256", method="GET", after_bytes=300_000, times=2),
    ),
    "drop-upload-after-bytes": (
        "dst",
        Rule("drop_request", path="/blobs/uploads/.+digest=", method="PUT", after_bytes=500_000, times=2),
    ),
    "drop-manifest-get-mid-body": (
        "src",
        Rule("drop_response", path="/manifests/sha256", method="GET", after_bytes=100, times=2),
    ),
    "stall-blob-get": ("src", Rule("stall", path="/blobs/sha256", method="GET", seconds=2.0, times=1)),
    "stall-upload-post": ("dst", Rule("stall", path="/blobs/uploads/$", method="POST", seconds=1.0, times=1)),
    "403-token-expired-once": ("src", Rule("expired", path="/manifests/sha256", method="GET", times=1)),
    # distribution's answer while another writer re-pushes a blob the manifest names (it
    # rewrites the blob's link file in place): seen with two promotions of one image at once.
    "400-manifest-blob-unknown-on-push": (
        "dst",
        Rule(
            "body",
            path="/manifests/",
            method="PUT",
            status=400,
            body=b'{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}',
            times=1,
        ),
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_copy_survives_bounded_faults_with_identical_digests(
    name: str, image: TestImage, registry2: Registry, src_proxy: FaultProxy, dst_proxy: FaultProxy
) -> None:
    side, rule = FAULTS[name]
    (src_proxy if side == "src" else dst_proxy).add(rule)
    started = time.monotonic()

    report = _copy(src_proxy, dst_proxy)

    assert report.ok, report.as_dict()
    assert rule.hits >= 1, "the fault was never injected"
    assert _consistent(registry2, image) == image.digest
    if rule.retry_after:
        assert time.monotonic() - started >= float(rule.retry_after) * 0.9  # Retry-After honoured


def test_throttling_that_never_ends_fails_loudly_and_writes_no_tag(
    image: TestImage, registry2: Registry, src_proxy: FaultProxy, dst_proxy: FaultProxy
) -> None:
    rule = dst_proxy.add(
        Rule("status", path="/blobs/uploads/", method="POST", status=429, retry_after="0.2", times=-1)
    )
    policy = RetryPolicy(attempts=3, total_seconds=5, base_delay=0.05)
    report = _copy(src_proxy, dst_proxy, policy)
    [result] = report.results
    assert not report.ok and result.status == "failed"
    assert "429" in str(result.error) and "throttled" in str(result.error)
    assert rule.hits <= 3 * len(image.all_blobs())  # bounded: attempts per blob, never multiplied
    assert _consistent(registry2, image) is None


def test_cli_names_the_fault_and_exits_1(
    image: TestImage, src_proxy: FaultProxy, dst_proxy: FaultProxy
) -> None:
    dst_proxy.add(Rule("status", path="/manifests/", method="PUT", status=503, times=-1))
    result = cloudops(
        *_cli_copy(src_proxy, dst_proxy),
        env={"CLOUDOPS_RETRY_ATTEMPTS": "2", "CLOUDOPS_RETRY_SECONDS": "5"},
    )
    assert_clean_failure(result, 1, "HTTP 503", "retries ran out")
    assert "0/1 images done" in result.stderr


def test_corrupt_blob_served_by_the_source_is_refused(
    image: TestImage, registry: Registry, registry2: Registry, src_proxy: FaultProxy, dst_proxy: FaultProxy
) -> None:
    blob = image.children[0].blobs[1]
    src_proxy.add(
        Rule(
            "body",
            path=f"/blobs/{blob.digest}",
            method="GET",
            status=200,
            body=bytes(len(blob.data)),
            times=-1,
        )
    )
    report = _copy(src_proxy, dst_proxy)
    assert not report.ok and "corrupt" in str(report.results[0].error)
    assert _consistent(registry2, image) is None
    assert not Pusher(registry2.url).blob_exists("ep/cortex", blob.digest)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_manifest_over_four_mib_is_refused_before_being_read_whole(
    registry: Registry, registry2: Registry, src_proxy: FaultProxy, dst_proxy: FaultProxy, chunked: bool
) -> None:
    """A 256 MiB manifest, streamed by the proxy, is refused as over the 4 MiB limit: by its
    Content-Length, or while it is read when only reading can tell (chunked): the transport
    reads at most 4 MiB + 1 byte of it (and any other non-blob answer at most 8 MiB + 1,
    http.MAX_BODY). What the proxy managed
    to send shows it was not read whole (the rest of the bound is the sockets' buffers)."""
    total = 256 * MiB
    chunk = b" " * MiB
    rules = [
        src_proxy.add(
            Rule(
                "body",
                path=path,
                status=200,
                body=chunk,
                repeat=total // len(chunk),
                chunked=chunked,
                times=-1,
                headers=headers,
            )
        )
        for path, headers in (
            (
                "/manifests/big",
                {
                    "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                    "Docker-Content-Digest": "sha256:" + "0" * 64,
                },
            ),
            ("/manifests/sha256:0000", {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}),
        )
    ]
    result = cloudops(
        "copy",
        f"{src_proxy.host}/ep/x:big",
        f"{dst_proxy.host}/ep/x:big",
        "--insecure-registry",
        src_proxy.host,
        "--insecure-registry",
        dst_proxy.host,
    )
    assert_clean_failure(result, 1, "4 MiB")
    assert sum(rule.hits for rule in rules) >= 1
    sent = sum(rule.sent for rule in rules)
    assert sent < 64 * MiB, f"{sent / MiB:.0f} MiB of the manifest were read"


@pytest.mark.parametrize("path", ["/blobs/sha256", "/manifests/sha256"])
def test_interrupt_during_a_stalled_request_exits_at_once_and_writes_no_tag(
    path: str, image: TestImage, registry2: Registry, src_proxy: FaultProxy, dst_proxy: FaultProxy
) -> None:
    """Requests run on worker threads (registry/http.py); Ctrl-C must not wait for a
    stalled one to time out, and must leave nothing tagged."""
    rule = src_proxy.add(Rule("stall", path=path, method="GET", seconds=120, times=-1))
    process = interruptible(
        [sys.executable, "-m", "cloudops", *_cli_copy(src_proxy, dst_proxy), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while rule.hits == 0 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert rule.hits >= 1, "the copy never reached the stalled request"
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert took < 5, f"took {took:.1f}s to stop after SIGINT"
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert _consistent(registry2, image) is None
