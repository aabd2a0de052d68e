"""Signatures, SBOMs and attestations travel with the image: real distribution 2.8
registries (no referrers API: the tag schema fallback, and cosign's tags)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import Registry
from tests.support.faults import Rule, fault_proxy
from tests.support.images import OCI_INDEX, Pusher, TestImage, make_image, make_index, random_layer
from tests.support.referrers import (
    SBOM_TYPE,
    SIG_TYPE,
    fallback_digests,
    fallback_index,
    make_cosign_signature,
    make_referrer,
    push_referrer,
    tag_of,
)
from tests.support.run import cloudops, copy_images

KiB = 1024
REPO = "ep/cortex"


@pytest.fixture
def signed(registry: Registry) -> tuple[TestImage, dict[str, TestImage]]:
    """An image with an SBOM, a signature on the image, a signature on the SBOM (depth 2)
    and a cosign ``.sig`` tag."""
    image = make_image([random_layer(200 * KiB), random_layer(30 * KiB)])
    pusher = Pusher(registry.url)
    pusher.push(REPO, "1.0", image)
    sbom = make_referrer(image, SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}')
    sig = make_referrer(image, SIG_TYPE, b'{"critical":{}}', annotations={"note": "image signature"})
    sbom_sig = make_referrer(sbom, SIG_TYPE, b'{"critical":{"sbom":true}}')
    push_referrer(pusher, REPO, sbom, image.digest)
    push_referrer(pusher, REPO, sig, image.digest)
    push_referrer(pusher, REPO, sbom_sig, sbom.digest)
    cosign = make_cosign_signature(b'{"critical":{"legacy":true}}')
    pusher.push(REPO, tag_of(image.digest, "sig"), cosign)
    return image, {"sbom": sbom, "sig": sig, "sbom_sig": sbom_sig, "cosign": cosign}


def _copy(registry: Registry, registry2: Registry) -> dict[str, object]:
    report = copy_images(
        [(f"{registry.host}/{REPO}:1.0", f"{registry2.host}/{REPO}:1.0")], [registry.host, registry2.host]
    )
    assert report.ok, report.as_dict()
    [result] = report.as_dict()["images"]  # type: ignore[misc]
    return result  # type: ignore[no-any-return]


def test_every_referrer_travels_by_digest_with_its_subject(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    image, refs = signed
    result = _copy(registry, registry2)

    dest = Pusher(registry2.url)
    assert dest.manifest_digest(REPO, "1.0") == image.digest
    for name in ("sbom", "sig", "sbom_sig"):
        assert dest.manifest_digest(REPO, refs[name].digest) == refs[name].digest, name
        assert all(dest.blob_exists(REPO, b.digest) for b in refs[name].blobs)
    # The destination has no API either: its fallback index lists them, as at the source.
    assert fallback_digests(dest, REPO, image.digest) == {refs["sbom"].digest, refs["sig"].digest}
    assert fallback_digests(dest, REPO, refs["sbom"].digest) == {refs["sbom_sig"].digest}
    assert dest.manifest_digest(REPO, tag_of(image.digest, "sig")) == refs["cosign"].digest
    carried = {(r["digest"], r["via"], r["status"]) for r in result["referrers"]}  # type: ignore[attr-defined]
    assert carried == {
        (refs["sbom"].digest, "tag-schema", "copied"),
        (refs["sig"].digest, "tag-schema", "copied"),
        (refs["sbom_sig"].digest, "tag-schema", "copied"),
        (refs["cosign"].digest, "cosign-tag", "copied"),
    }


def test_a_rerun_writes_nothing_and_a_new_signature_follows_an_image_already_there(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    image, _ = signed
    _copy(registry, registry2)
    again = _copy(registry, registry2)
    assert again["status"] == "up-to-date" and again["manifests_pushed"] == 0
    assert {r["status"] for r in again["referrers"]} == {"present"}  # type: ignore[attr-defined]

    late = make_referrer(image, SIG_TYPE, b'{"critical":{"late":true}}')
    push_referrer(Pusher(registry.url), REPO, late, image.digest)
    third = _copy(registry, registry2)
    assert third["status"] == "up-to-date"
    assert [r["digest"] for r in third["referrers"] if r["status"] == "copied"] == [late.digest]  # type: ignore[attr-defined]
    assert late.digest in fallback_digests(Pusher(registry2.url), REPO, image.digest)


@pytest.mark.parametrize("second", ["2.0", "by-digest"])
def test_an_image_already_there_under_another_name_gets_no_referrer_written_again(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]], second: str
) -> None:
    """The image is at the destination (under 1.0): promoted under a new tag, or copied
    again to its digest, its referrers are found listed and present, nothing of theirs is
    written or uploaded again."""
    image, _ = signed
    _copy(registry, registry2)
    target = (
        f"{registry2.host}/{REPO}@{image.digest}" if second == "by-digest" else f"{registry2.host}/{REPO}:2.0"
    )
    report = copy_images([(f"{registry.host}/{REPO}:1.0", target)], [registry.host, registry2.host])
    assert report.ok, report.as_dict()
    [result] = report.as_dict()["images"]  # type: ignore[misc]
    assert {r["status"] for r in result["referrers"]} == {"present"}  # type: ignore[index]
    assert result["blobs"]["uploaded"] == 0  # type: ignore[index]
    assert result["manifests_pushed"] == (1 if second == "2.0" else 0)  # the new tag only


def test_the_destinations_own_referrers_stay_in_its_index(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    image, refs = signed
    dest = Pusher(registry2.url)
    theirs = make_referrer(image, "application/vnd.example.scan+json", b'{"scan":"clean"}')
    push_referrer(dest, REPO, theirs, image.digest)  # before the image itself is there

    _copy(registry, registry2)

    assert fallback_digests(dest, REPO, image.digest) == {
        theirs.digest,
        refs["sbom"].digest,
        refs["sig"].digest,
    }


def test_referrers_of_each_platform_travel_with_the_index(registry: Registry, registry2: Registry) -> None:
    amd = make_image([random_layer(50 * KiB, oci=True)], oci=True, arch="amd64")
    arm = make_image([random_layer(60 * KiB, oci=True)], oci=True, arch="arm64")
    index = make_index([(amd, "amd64"), (arm, "arm64")], oci=True)
    pusher = Pusher(registry.url)
    pusher.push(REPO, "1.0", index)
    attestation = make_referrer(arm, "application/vnd.in-toto+json", b'{"predicateType":"slsa"}')
    push_referrer(pusher, REPO, attestation, arm.digest)

    result = _copy(registry, registry2)

    assert [r["subject"] for r in result["referrers"]] == [arm.digest]  # type: ignore[attr-defined]
    assert fallback_digests(Pusher(registry2.url), REPO, arm.digest) == {attestation.digest}


def test_an_index_entry_whose_subject_is_another_manifest_is_reported_not_copied(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    """A fallback index is written by clients, so it can be wrong: an entry that does not
    name the image as its subject is not carried as the image's (distribution refuses an
    index naming manifests it lacks, so this is the stale entry it lets through)."""
    image, refs = signed
    pusher = Pusher(registry.url)
    stray = refs["sbom_sig"]  # its subject is the SBOM, not the image
    listed = [
        *fallback_index(pusher, REPO, image.digest),
        {"mediaType": stray.media_type, "digest": stray.digest, "size": len(stray.manifest)},
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed}
    pusher.push_manifest(REPO, tag_of(image.digest), json.dumps(index).encode(), OCI_INDEX)

    result = _copy(registry, registry2)

    warning = f"lists {stray.digest[:19]} as a referrer of {image.digest[:19]}, but its subject is another"
    assert any(warning in w for w in result["warnings"])  # type: ignore[attr-defined]
    dest = Pusher(registry2.url)
    assert fallback_digests(dest, REPO, image.digest) == {refs["sbom"].digest, refs["sig"].digest}
    assert fallback_digests(dest, REPO, refs["sbom"].digest) == {stray.digest}  # under its own subject


def test_no_referrers_copies_the_image_alone(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    image, refs = signed
    result = cloudops(
        "copy",
        f"{registry.host}/{REPO}:1.0",
        f"{registry2.host}/{REPO}:1.0",
        "--no-referrers",
        "--json",
        "--insecure-registry",
        registry.host,
        "--insecure-registry",
        registry2.host,
    )
    assert result.returncode == 0, result.stderr
    [copied] = json.loads(result.stdout)["images"]
    assert copied["referrers"] == []
    dest = Pusher(registry2.url)
    assert dest.manifest_digest(REPO, "1.0") == image.digest
    assert dest.manifest_digest(REPO, refs["sig"].digest) is None
    assert dest.manifest_digest(REPO, tag_of(image.digest, "sig")) is None


def test_no_tag_is_written_before_every_referrer_is_in(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    _, refs = signed
    with fault_proxy(registry2.url) as proxy:
        proxy.add(
            Rule("status", path=f"/manifests/{refs['sbom_sig'].digest}", method="PUT", status=500, times=-1)
        )
        report = copy_images(
            [(f"{registry.host}/{REPO}:1.0", f"{proxy.host}/{REPO}:1.0")], [registry.host, proxy.host]
        )
    [result] = report.results
    assert result.status == "failed" and "500" in str(result.error)
    dest = Pusher(registry2.url)
    assert dest.manifest_digest(REPO, "1.0") is None  # the tag waits for its referrers

    assert _copy(registry, registry2)["status"] == "copied"  # and a re-run completes
    assert dest.manifest_digest(REPO, refs["sbom_sig"].digest) == refs["sbom_sig"].digest


def test_referrers_go_in_before_their_subject_and_after_it_where_the_registry_wants_that(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    """The spec lets a referrer go in before its subject, so cloudops pushes referrers while
    the image's blobs still move. A registry that refuses that (GitLab's did, with 400
    MANIFEST_BLOB_UNKNOWN: gitlab-org/container-registry#2375) gets them again after the
    subject, pushed by digest: the copy completes, the tag last."""
    image, refs = signed
    refused = b'{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}'
    with fault_proxy(registry2.url) as proxy:
        rule = proxy.add(
            Rule("body", path=f"/manifests/{refs['sig'].digest}", method="PUT", status=400, body=refused)
        )
        report = copy_images(
            [(f"{registry.host}/{REPO}:1.0", f"{proxy.host}/{REPO}:1.0")], [registry.host, proxy.host]
        )
        log = [(e.method, e.path, e.status) for e in proxy.log]
    assert report.ok, report.as_dict()
    assert rule.hits == 1
    puts = [
        path.split("/manifests/")[1]
        for method, path, status in log
        if method == "PUT" and status == 201 and "/manifests/" in path
    ]
    # Tried once before the image was in, then again after the image by digest, the tag last.
    assert puts.index(image.digest) < puts.index(refs["sig"].digest) < puts.index("1.0") == len(puts) - 1
    early = [p for method, p, _ in log if method == "PUT" and "/manifests/" in p]
    assert early.index(f"/v2/{REPO}/manifests/{refs['sbom'].digest}") < early.index(
        f"/v2/{REPO}/manifests/{image.digest}"
    )
    dest = Pusher(registry2.url)
    assert dest.manifest_digest(REPO, "1.0") == image.digest
    assert fallback_digests(dest, REPO, image.digest) == {refs["sbom"].digest, refs["sig"].digest}
    assert dest.manifest_digest(REPO, refs["sbom_sig"].digest) == refs["sbom_sig"].digest


def test_a_copy_killed_among_its_referrers_leaves_no_tag_and_a_rerun_completes(
    registry: Registry, registry2: Registry, signed: tuple[TestImage, dict[str, TestImage]]
) -> None:
    """kill -9 while the referrers are being written (one of them stalled): no tag, and a
    re-run carries every referrer and then writes the tag."""
    image, refs = signed
    with fault_proxy(registry2.url) as proxy:
        stall = proxy.add(
            Rule("stall", path=f"/manifests/{refs['sbom_sig'].digest}", method="PUT", seconds=60)
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cloudops",
                "copy",
                "-q",
                f"{registry.host}/{REPO}:1.0",
                f"{proxy.host}/{REPO}:1.0",
                "--insecure-registry",
                registry.host,
                "--insecure-registry",
                proxy.host,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while stall.hits == 0 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert stall.hits == 1, "the copy never reached the referrer's push"
    dest = Pusher(registry2.url)
    assert dest.manifest_digest(REPO, "1.0") is None
    assert dest.manifest_digest(REPO, refs["sbom"].digest) == refs["sbom"].digest  # some were in

    rerun = _copy(registry, registry2)
    assert rerun["status"] == "copied"
    assert dest.manifest_digest(REPO, "1.0") == image.digest
    assert fallback_digests(dest, REPO, refs["sbom"].digest) == {refs["sbom_sig"].digest}
