"""A corrupt blob is stopped by cloudops itself, not by the destination registry.

distribution checks ``PUT ?digest=`` on its own, so against it a copier without any check
of its own looks safe. Here the destination is a permissive registry (the fault proxy's
``accept_any_digest``: an upload whose every declared byte arrived is committed under the
sha256 of what arrived, whatever the client claimed), and the source serves altered bytes
of the right length. What may stop the blob is then only cloudops' own sha256 and its
held-back last chunk (copy/relay.py): the upload must never arrive whole, and nothing
may be committed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Registry
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.images import Blob, Pusher, TestImage, make_image, random_layer
from tests.support.run import assert_clean_failure, cloudops

MiB = 1024 * 1024
UPLOAD_PUT = r"/blobs/uploads/.*digest="
FLIP_AT = 3 * MiB + 12345  # in the fourth 1 MiB chunk of the big layer: not the last one
RETRIES = {"CLOUDOPS_RETRY_ATTEMPTS": "2", "CLOUDOPS_RETRY_SECONDS": "10"}


@pytest.fixture
def image(registry: Registry) -> TestImage:
    built = make_image([random_layer(6 * MiB + 777, oci=True), random_layer(64 * 1024, oci=True)], oci=True)
    Pusher(registry.url).push("ep/cortex", "1", built)
    return built


@pytest.fixture
def src_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with fault_proxy(registry.url) as proxy:
        yield proxy


@pytest.fixture
def permissive(registry2: Registry) -> Iterator[FaultProxy]:
    """registry2 behind a proxy that commits whatever arrives whole."""
    with fault_proxy(registry2.url) as proxy:
        proxy.add(Rule("accept_any_digest", path=UPLOAD_PUT, method="PUT", times=-1))
        yield proxy


def _copy_args(src: FaultProxy, dst: FaultProxy) -> list[str]:
    return [
        "copy",
        f"{src.host}/ep/cortex:1",
        f"{dst.host}/ep/cortex:1",
        "--insecure-registry",
        src.host,
        "--insecure-registry",
        dst.host,
    ]


def _blob_status(registry: Registry, repository: str, digest: str) -> int:
    """HEAD the blob on the registry itself, not through any proxy."""
    return httpx.head(f"{registry.url}/v2/{repository}/blobs/{digest}").status_code


def _flipped(blob: Blob, offset: int) -> str:
    data = bytearray(blob.data)
    data[offset] ^= 0x01
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_the_permissive_destination_really_commits_a_blob_under_a_false_digest(
    registry2: Registry, permissive: FaultProxy
) -> None:
    """The premise: behind this proxy the registry no longer refuses a lying ``digest=``,
    so in the test below nothing but cloudops stands between a corrupt blob and a commit."""
    body = b"bytes that are not what the digest says" * 100
    claimed = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    with httpx.Client(base_url=permissive.url) as client:
        started = client.post("/v2/ep/cortex/blobs/uploads/")
        assert started.status_code == 202, started.text
        url = httpx.URL(started.headers["location"]).copy_merge_params({"digest": claimed})
        done = client.put(url, content=body, headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    assert done.headers["docker-content-digest"] == claimed  # it says what the client claimed
    assert _blob_status(registry2, "ep/cortex", actual) == 200  # and stored what arrived
    assert [u.actual for u in permissive.committed] == [actual]


def test_corrupt_source_blob_is_refused_by_cloudops_own_check_and_never_committed(
    image: TestImage, registry2: Registry, src_proxy: FaultProxy, permissive: FaultProxy
) -> None:
    layer = image.blobs[1]
    assert len(layer.data) > FLIP_AT + 2 * MiB
    corrupt = _flipped(layer, FLIP_AT)
    served = src_proxy.add(
        Rule("corrupt", path=f"/blobs/{layer.digest}$", method="GET", after_bytes=FLIP_AT, times=-1)
    )
    result = cloudops(*_copy_args(src_proxy, permissive), env=RETRIES)
    assert served.hits >= 1, "the source never served the corrupt bytes"
    # The layer's upload started (the other blobs went through the permissive path too) ...
    layer_puts = [u for u in permissive.uploads if u.claimed == layer.digest]
    assert layer_puts, "cloudops never started the layer's upload"
    # ... but never arrived whole: the last chunk was held back, so nothing was committed.
    assert not any(u.complete for u in layer_puts), layer_puts
    assert all(u.received < len(layer.data) for u in layer_puts)
    assert corrupt not in {u.actual for u in permissive.committed}
    assert _blob_status(registry2, "ep/cortex", corrupt) == 404
    assert _blob_status(registry2, "ep/cortex", layer.digest) == 404
    assert Pusher(registry2.url).manifest_digest("ep/cortex", "1") is None
    # cloudops names the mismatch: the blob it wanted and the digest the bytes really have.
    assert_clean_failure(result, 1, layer.digest[:19], f"bytes that hash to {corrupt[:19]}")
    assert "0/1 images done" in result.stderr
    # No line of the log claims the image is there (a Jenkins log is read by people).
    assert "already at" not in result.stderr and "✓" not in result.stderr, result.stderr


def test_source_blob_longer_than_declared_is_cut_off_before_its_upload_completes(
    image: TestImage, registry2: Registry, src_proxy: FaultProxy, permissive: FaultProxy
) -> None:
    """The source serves the blob's size in altered bytes, then more. The declared size is
    what the PUT's Content-Length promises, so sending every chunk but the last would
    already complete the upload: the read must stop at the first byte past the size."""
    layer = image.blobs[1]
    corrupt = _flipped(layer, FLIP_AT)
    extra = os.urandom(2 * MiB)
    served = src_proxy.add(
        Rule(
            "corrupt", path=f"/blobs/{layer.digest}$", method="GET", after_bytes=FLIP_AT, body=extra, times=-1
        )
    )
    result = cloudops(*_copy_args(src_proxy, permissive), env=RETRIES)
    assert served.hits >= 1, "the source never served the long body"
    layer_puts = [u for u in permissive.uploads if u.claimed == layer.digest]
    assert layer_puts, "cloudops never started the layer's upload"
    assert not any(u.complete for u in layer_puts), layer_puts
    assert corrupt not in {u.actual for u in permissive.committed}
    assert _blob_status(registry2, "ep/cortex", corrupt) == 404
    assert _blob_status(registry2, "ep/cortex", layer.digest) == 404
    assert Pusher(registry2.url).manifest_digest("ep/cortex", "1") is None
    # ... and cloudops says why: the read stopped at the first byte past the size.
    assert_clean_failure(result, 1, layer.digest[:19], f"more than its {len(layer.data)} bytes")
