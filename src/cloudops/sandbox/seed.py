"""Synthetic Elastic Path images for the sandbox's build account: real gzipped tar layers
(a shared Amazon Linux + Java base, a shared Tomcat layer for the web applications, one
application layer each), real OCI configs with diff_ids, built reproducibly so that
publishing twice gives the same digests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import zipfile
from dataclasses import dataclass

from cloudops.dbtool.cli import tool_files
from cloudops.oci import OCI_MANIFEST, sha256_digest
from cloudops.registry.client import RegistryWriter
from cloudops.sandbox.changelogs import changelogs_for

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WEBAPPS = {"ep/cortex", "ep/search", "ep/batch", "ep/integration", "ep/cm"}


@dataclass(frozen=True)
class Layer:
    data: bytes
    diff_id: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)


def _layer(files: dict[str, bytes]) -> Layer:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(content), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return Layer(gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest())


def _payload(name: str, size: int) -> bytes:
    return random.Random(name).randbytes(size)


def build_image(repository: str, version: str, *, scale: float = 1.0) -> tuple[bytes, bytes, list[Layer]]:
    """(manifest, config, layers) of one synthetic image."""
    mib = int(1024 * 1024 * scale)
    layers = [
        _layer(
            {
                "etc/system-release": b"Amazon Linux release 2023\n",
                "usr/lib/jvm/java-17/release": b'JAVA_VERSION="17.0.9"\n',
                "usr/lib/jvm/java-17/lib/modules": _payload("java-base", 3 * mib),
            }
        )
    ]
    if repository in WEBAPPS:
        layers.append(
            _layer(
                {
                    "usr/local/tomcat/lib/catalina.jar": _payload("tomcat-9", 2 * mib),
                    "usr/local/tomcat/VERSION": b"9.0.83\n",
                }
            )
        )
    app = repository.split("/")[-1]
    layers.append(
        _layer(
            {
                f"ep/{app}/VERSION": f"{version}\n".encode(),
                f"ep/{app}/{app}.war": _payload(f"{repository}:{version}", mib),
            }
        )
    )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"com.elasticpath.image": repository, "com.elasticpath.version": version}},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": layer.digest, "size": len(layer.data)} for layer in layers
            ],
        },
        indent=2,
    ).encode()
    return manifest, config, layers


async def publish_image(writer: RegistryWriter, repository: str, version: str, *, scale: float = 1.0) -> str:
    """Push one synthetic image under ``version``; returns its digest. Idempotent."""
    manifest, config, layers = build_image(repository, version, scale=scale)
    for blob in [config, *(layer.data for layer in layers)]:
        digest = sha256_digest(blob)
        if await writer.blob_size(repository, digest) is None:
            await writer.upload_blob(repository, digest, blob)
    digest = sha256_digest(manifest)
    current = await writer.head_manifest(repository, version)
    if current is None:
        await writer.put_manifest(repository, version, manifest, OCI_MANIFEST)
    return digest


def build_package(path: str | os.PathLike[str], version: str, *, size: int = 2 * 1024 * 1024) -> None:
    """A synthetic deployment package zip: webapps/, database/changelog/ (Liquibase
    formatted SQL) and tools/ with the Data Population Tool (update-db, reset-db,
    filter-data, plan: cloudops/dbtool). ``size`` bytes of
    incompressible webapp content, written in blocks (never held whole in memory)."""
    block = 1024 * 1024
    rng = random.Random(f"package-{version}")

    def entry(name: str) -> zipfile.ZipInfo:
        # A fixed timestamp makes the zip reproducible: building it twice gives one sha256.
        return zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open(entry("webapps/ep-cortex.war"), "w", force_zip64=True) as war:
            left = size
            while left > 0:
                chunk = rng.randbytes(min(block, left))
                war.write(chunk)
                left -= len(chunk)
        # The Data Population Tool (a working stand-in for Elastic Path's, dbtool/) and the
        # release's Liquibase change logs (8.5.0 creates the schema, 8.6.0 adds to it).
        for name, text in changelogs_for(version).items():
            archive.writestr(entry(name), text)
        for name, data in tool_files().items():
            member = entry(name)
            member.external_attr = (0o755 if "/bin/" in name else 0o644) << 16
            archive.writestr(member, data)
        archive.writestr(entry("tools/data-population-cli/VERSION"), f"{version}\n")
