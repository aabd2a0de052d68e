"""The copy engine against real distribution registries, and skopeo as the peer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import Registry
from tests.support.images import Pusher, make_image, make_index, random_layer
from tests.support.run import assert_clean_failure, cloudops, copy_images

KiB = 1024
MiB = 1024 * 1024


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=True)


def test_single_platform_docker_image_keeps_its_digest(registry: Registry, registry2: Registry) -> None:
    image = make_image([random_layer(300 * KiB), random_layer(50 * KiB)])
    digest = Pusher(registry.url).push("ep/cortex", "1.0", image)

    report = copy_images(
        [(f"{registry.host}/ep/cortex:1.0", f"{registry2.host}/ep/cortex:1.0")],
        [registry.host, registry2.host],
    )

    assert report.ok, report.as_dict()
    [result] = report.results
    assert result.status == "copied" and result.digest == digest
    assert result.blobs_uploaded == 3 and result.bytes_uploaded == sum(len(b.data) for b in image.blobs)
    dest = Pusher(registry2.url)
    assert dest.manifest_digest("ep/cortex", "1.0") == digest
    assert all(dest.blob_exists("ep/cortex", b.digest) for b in image.blobs)


@pytest.mark.parametrize("oci", [False, True], ids=["docker-manifest-list", "oci-index"])
def test_multi_platform_index_copies_every_platform_by_digest(
    registry: Registry, registry2: Registry, oci: bool
) -> None:
    base = random_layer(200 * KiB, oci=oci)
    amd = make_image([base, random_layer(100 * KiB, oci=oci)], oci=oci, arch="amd64")
    arm = make_image([base, random_layer(120 * KiB, oci=oci)], oci=oci, arch="arm64")
    index = make_index([(amd, "amd64"), (arm, "arm64")], oci=oci)
    Pusher(registry.url).push("ep/search", "2.0", index)

    report = copy_images(
        [(f"{registry.host}/ep/search:2.0", f"{registry2.host}/ep/search:2.0")],
        [registry.host, registry2.host],
    )

    assert report.ok, report.as_dict()
    dest = Pusher(registry2.url)
    assert dest.manifest_digest("ep/search", "2.0") == index.digest
    for child in (amd, arm):
        assert dest.manifest_digest("ep/search", child.digest) == child.digest
    assert report.results[0].manifests_pushed == 3
    # the shared base layer moves once although both platforms use it
    assert report.results[0].blobs_uploaded == 5
    # skopeo reads our copy byte for byte
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry2.host}/ep/search:2.0").stdout
    assert raw.encode() == index.manifest


def test_batch_deduplicates_shared_layers_and_mounts_within_the_destination(
    registry: Registry, registry2: Registry
) -> None:
    base = [random_layer(256 * KiB), random_layer(128 * KiB)]
    images = {f"ep/app{i}": make_image([*base, random_layer(64 * KiB)], label=str(i)) for i in range(4)}
    pusher = Pusher(registry.url)
    for repo, image in images.items():
        pusher.push(repo, "1", image)

    report = copy_images(
        [(f"{registry.host}/{r}:1", f"{registry2.host}/{r}:1") for r in images],
        [registry.host, registry2.host],
    )

    assert report.ok, report.as_dict()
    uploaded_bytes = report.bytes_uploaded
    unique = {b.digest: len(b.data) for img in images.values() for b in img.blobs}
    assert uploaded_bytes == sum(unique.values())  # every unique blob crossed the wire once
    assert sum(r.blobs_mounted for r in report.results) == 2 * (len(images) - 1)
    dest = Pusher(registry2.url)
    for repo, image in images.items():
        assert dest.manifest_digest(repo, "1") == image.digest
        assert all(dest.blob_exists(repo, b.digest) for b in image.blobs)


def test_rerunning_a_copy_writes_nothing(registry: Registry, registry2: Registry) -> None:
    image = make_image([random_layer(100 * KiB)])
    Pusher(registry.url).push("ep/batch", "3", image)
    pair = [(f"{registry.host}/ep/batch:3", f"{registry2.host}/ep/batch:3")]
    hosts = [registry.host, registry2.host]
    assert copy_images(pair, hosts).ok

    storage = registry2.root / "storage"
    before = {p: p.stat().st_mtime_ns for p in storage.rglob("*")}
    again = copy_images(pair, hosts)

    assert again.ok
    [result] = again.results
    assert result.status == "up-to-date" and result.digest == image.digest
    assert (result.bytes_uploaded, result.manifests_pushed, result.blobs_uploaded) == (0, 0, 0)
    after = {p: p.stat().st_mtime_ns for p in storage.rglob("*")}
    assert after == before  # not one file of the destination registry changed


def test_we_read_what_skopeo_wrote_and_skopeo_reads_what_we_wrote(
    registry: Registry, registry2: Registry, make_registry
) -> None:  # type: ignore[no-untyped-def]
    amd = make_image([random_layer(64 * KiB, oci=True)], oci=True, arch="amd64")
    arm = make_image([random_layer(64 * KiB, oci=True)], oci=True, arch="arm64")
    index = make_index([(amd, "amd64"), (arm, "arm64")], oci=True)
    Pusher(registry.url).push("ep/cm", "src", index)
    third = make_registry()

    _skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{registry.host}/ep/cm:src",
        f"docker://{registry2.host}/ep/cm:by-skopeo",
    )
    report = copy_images(
        [(f"{registry2.host}/ep/cm:by-skopeo", f"{third.host}/ep/cm:by-cloudops")],
        [registry2.host, third.host],
    )
    assert report.ok, report.as_dict()
    _skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{third.host}/ep/cm:by-cloudops",
        f"docker://{registry.host}/ep/cm:round-trip",
    )

    assert Pusher(registry.url).manifest_digest("ep/cm", "round-trip") == index.digest
    inspected = json.loads(
        _skopeo("inspect", "--tls-verify=false", f"docker://{third.host}/ep/cm:by-cloudops").stdout
    )
    assert inspected["Digest"] in (index.digest, amd.digest)  # skopeo resolves to this host's platform


def test_corrupt_source_blob_is_refused_and_nothing_is_tagged(
    registry: Registry, registry2: Registry
) -> None:
    layer = random_layer(200 * KiB)
    image = make_image([layer])
    Pusher(registry.url).push("ep/integration", "1", image)
    hex_ = layer.digest.split(":")[1]
    data = registry.root / "storage/docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"
    corrupted = bytearray(data.read_bytes())
    corrupted[1000] ^= 0xFF
    data.write_bytes(bytes(corrupted))

    report = copy_images(
        [(f"{registry.host}/ep/integration:1", f"{registry2.host}/ep/integration:1")],
        [registry.host, registry2.host],
    )

    [result] = report.results
    assert result.status == "failed"
    assert "corrupt" in str(result.error) and layer.digest[:19] in str(result.error)
    dest = Pusher(registry2.url)
    assert dest.manifest_digest("ep/integration", "1") is None
    assert not dest.blob_exists("ep/integration", layer.digest)


def test_tag_move_is_refused_when_not_allowed(registry: Registry, registry2: Registry) -> None:
    first, second = make_image([random_layer(10 * KiB)]), make_image([random_layer(10 * KiB)])
    Pusher(registry.url).push("ep/a", "1", first)
    Pusher(registry.url).push("ep/a", "2", second)
    Pusher(registry2.url).push("ep/a", "1", second)

    report = copy_images(
        [(f"{registry.host}/ep/a:1", f"{registry2.host}/ep/a:1")],
        [registry.host, registry2.host],
        allow_tag_move=False,
    )

    [result] = report.results
    assert result.status == "refused" and "tags never move" in str(result.error)
    assert Pusher(registry2.url).manifest_digest("ep/a", "1") == second.digest


def test_authenticated_registries_with_credentials_from_the_environment(make_registry) -> None:  # type: ignore[no-untyped-def]
    src = make_registry(auth=("builder", "s3cret-src-Pw"))
    dst = make_registry(auth=("promoter", "s3cret-dst-Pw"))
    image = make_image([random_layer(30 * KiB)])
    Pusher(src.url, auth=src.auth).push("ep/activemq", "5", image)

    result = cloudops(
        "copy",
        f"{src.host}/ep/activemq:5",
        f"{dst.host}/ep/activemq:5",
        "--json",
        "--insecure-registry",
        src.host,
        "--insecure-registry",
        dst.host,
        env={"CLOUDOPS_SRC_CREDS": "builder:s3cret-src-Pw", "CLOUDOPS_DEST_CREDS": "promoter:s3cret-dst-Pw"},
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["images"][0]["digest"] == image.digest
    assert Pusher(dst.url, auth=dst.auth).manifest_digest("ep/activemq", "5") == image.digest


def test_killed_copy_leaves_no_dangling_tag_and_a_rerun_completes(
    registry: Registry, registry2: Registry
) -> None:
    image = make_image([random_layer(4 * MiB, seed=i) for i in range(12)])
    Pusher(registry.url).push("ep/data-pop-tool", "9", image)
    args = [
        sys.executable,
        "-m",
        "cloudops",
        "copy",
        "-q",
        "--concurrency",
        "1",
        f"{registry.host}/ep/data-pop-tool:9",
        f"{registry2.host}/ep/data-pop-tool:9",
        "--insecure-registry",
        registry.host,
        "--insecure-registry",
        registry2.host,
    ]
    blobs_dir = registry2.root / "storage/docker/registry/v2/blobs"
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if blobs_dir.exists() and len(list(blobs_dir.rglob("data"))) >= 3:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()

    dest = Pusher(registry2.url)
    tagged = dest.manifest_digest("ep/data-pop-tool", "9")
    present = [dest.blob_exists("ep/data-pop-tool", b.digest) for b in image.blobs]
    assert tagged is None or all(present)  # never a tag over missing blobs
    assert tagged is None, "the kill came too late to test an interruption"
    assert any(present)

    rerun = cloudops(*args[3:])
    assert rerun.returncode == 0, rerun.stderr
    assert dest.manifest_digest("ep/data-pop-tool", "9") == image.digest


class TestBadInput:
    def test_malformed_reference(self) -> None:
        result = cloudops("copy", "not a ref", "localhost:5000/x:1")
        assert_clean_failure(result, 2, "invalid image reference")

    def test_reference_without_registry_host(self) -> None:
        result = cloudops("copy", "ep/cortex:1", "localhost:5000/x:1")
        assert_clean_failure(result, 2, "names no registry host")

    def test_unknown_host(self) -> None:
        result = cloudops(
            "copy",
            "no-such-host.invalid/ep/x:1",
            "localhost:5000/x:1",
            "--insecure-registry",
            "no-such-host.invalid",
        )
        assert_clean_failure(result, 2, "cannot resolve registry host no-such-host.invalid")

    def test_missing_repository_or_tag(self, registry: Registry, registry2: Registry) -> None:
        Pusher(registry.url).push("ep/cortex", "1", make_image([random_layer(1 * KiB)]))
        for ref in ("ep/nothing:1", "ep/cortex:no-such-tag"):
            result = cloudops(
                "copy",
                f"{registry.host}/{ref}",
                f"{registry2.host}/x:1",
                "--insecure-registry",
                registry.host,
                "--insecure-registry",
                registry2.host,
            )
            assert_clean_failure(result, 2, "does not exist")

    def test_wrong_password_is_named_and_never_printed(self, make_registry) -> None:  # type: ignore[no-untyped-def]
        src = make_registry(auth=("builder", "right-Password-1"))
        result = cloudops(
            "copy",
            f"{src.host}/ep/x:1",
            "localhost:1/x:1",
            "--insecure-registry",
            src.host,
            env={"CLOUDOPS_SRC_CREDS": "builder:Wrong-Password-42"},
        )
        assert_clean_failure(result, 2, "refused the credentials")
        assert "Wrong-Password-42" not in result.stderr + result.stdout

    def test_missing_credentials(self, make_registry) -> None:  # type: ignore[no-untyped-def]
        src = make_registry(auth=("builder", "pw"))
        result = cloudops(
            "copy",
            f"{src.host}/ep/x:1",
            "localhost:1/x:1",
            "--insecure-registry",
            src.host,
            env={"DOCKER_CONFIG": "/nonexistent", "REGISTRY_AUTH_FILE": "/nonexistent"},
        )
        assert_clean_failure(result, 2, "requires credentials")

    def test_plain_http_registry_needs_the_insecure_flag(self, registry: Registry) -> None:
        result = cloudops("copy", f"{registry.host}/ep/x:1", f"{registry.host}/ep/y:1")
        assert_clean_failure(result, 2, "does not speak HTTPS", f"--insecure-registry {registry.host}")
