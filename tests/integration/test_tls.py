"""TLS: verified by default; an unverified certificate or plain HTTP only for named hosts."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudops.sandbox.processes import ServerProcess, start_registry
from tests.conftest import Registry
from tests.support.certs import write_self_signed
from tests.support.images import Pusher, make_image, random_layer
from tests.support.run import assert_clean_failure, cloudops


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    cert, key = write_self_signed(tmp_path)
    process = start_registry(tmp_path / "tls-registry", tls=(cert, key))
    yield process, cert
    process.stop()
    shutil.rmtree(tmp_path / "tls-registry", ignore_errors=True)


def test_self_signed_registry_is_refused_then_trusted_by_ca_bundle_or_by_name(
    tls_registry: tuple[ServerProcess, Path], registry: Registry
) -> None:
    process, cert = tls_registry
    host = process.url.split("://", 1)[1]
    image = make_image([random_layer(20 * 1024)])
    Pusher(registry.url).push("ep/cortex", "1", image)
    source = f"{registry.host}/ep/cortex:1"

    refused = cloudops("copy", source, f"{host}/ep/cortex:1", "--insecure-registry", registry.host)
    assert_clean_failure(refused, 2, f"the TLS certificate of {host} could not be verified", "--ca-bundle")

    trusted = cloudops(
        "copy", source, f"{host}/ep/cortex:1", "--insecure-registry", registry.host, "--ca-bundle", str(cert)
    )
    assert trusted.returncode == 0, trusted.stderr

    named = cloudops(
        "copy",
        source,
        f"{host}/ep/cortex:2",
        "--insecure-registry",
        registry.host,
        "--insecure-registry",
        host,
    )
    assert named.returncode == 0, named.stderr
    import httpx

    accept = "application/vnd.docker.distribution.manifest.v2+json"
    trusted_ca = ssl.create_default_context(cafile=str(cert))
    for tag in ("1", "2"):
        answer = httpx.get(
            f"https://{host}/v2/ep/cortex/manifests/{tag}", verify=trusted_ca, headers={"Accept": accept}
        )
        assert answer.status_code == 200 and answer.content == image.manifest
