"""TLS: verified by default; an unverified certificate or plain HTTP only for named hosts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudops.sandbox.processes import ServerProcess, start_registry
from tests.conftest import Registry
from tests.support.certs import self_signed
from tests.support.images import Pusher, make_image, random_layer
from tests.support.run import assert_clean_failure, cloudops


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed("cloudops-test-registry", key, ip="127.0.0.1")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    cert, key = _self_signed(tmp_path)
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
    for tag in ("1", "2"):
        answer = httpx.get(
            f"https://{host}/v2/ep/cortex/manifests/{tag}", verify=str(cert), headers={"Accept": accept}
        )
        assert answer.status_code == 200 and answer.content == image.manifest
