"""Building test images and pushing them with a tiny, independent uploader (plain sync
httpx, no cloudops code), so that the copy engine is never tested against itself."""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field

import httpx

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Blob:
    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


def random_layer(size: int, *, oci: bool = False, seed: int | None = None) -> Blob:
    data = random.Random(seed).randbytes(size) if seed is not None else os.urandom(size)
    return Blob(data, OCI_LAYER if oci else DOCKER_LAYER)


@dataclass
class TestImage:
    __test__ = False  # a test fixture type, not a test class

    """A single-platform image (manifest + config + layers) or an index of them."""

    manifest: bytes
    media_type: str
    blobs: list[Blob] = field(default_factory=list)
    children: list[TestImage] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def all_blobs(self) -> list[Blob]:
        found = list(self.blobs)
        for child in self.children:
            found.extend(child.all_blobs())
        return found


def make_image(layers: list[Blob], *, oci: bool = False, arch: str = "amd64", label: str = "") -> TestImage:
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": {"test": label}},
            "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
        },
        sort_keys=True,
    ).encode()
    config_blob = Blob(config, OCI_CONFIG if oci else DOCKER_CONFIG)
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config_blob.descriptor(),
            "layers": [b.descriptor() for b in layers],
        },
        indent=3,
    ).encode()
    return TestImage(manifest, media_type, [config_blob, *layers])


def make_index(children: list[tuple[TestImage, str]], *, oci: bool = False) -> TestImage:
    media_type = OCI_INDEX if oci else DOCKER_LIST
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": c.media_type,
                "digest": c.digest,
                "size": len(c.manifest),
                "platform": {"architecture": arch, "os": "linux"},
            }
            for c, arch in children
        ],
    }
    return TestImage(json.dumps(doc, indent=2).encode(), media_type, [], [c for c, _ in children])


class Pusher:
    """Push blobs and manifests with plain HTTP calls (monolithic POST+PUT uploads)."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None):
        self.client = httpx.Client(base_url=base_url, auth=auth, timeout=60)

    def push_blob(self, repository: str, blob: Blob) -> None:
        if self.client.head(f"/v2/{repository}/blobs/{blob.digest}").status_code == 200:
            return
        started = self.client.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        url = httpx.URL(location).copy_merge_params({"digest": blob.digest})
        done = self.client.put(url, content=blob.data, headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text

    def push_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> None:
        response = self.client.put(
            f"/v2/{repository}/manifests/{reference}", content=raw, headers={"Content-Type": media_type}
        )
        assert response.status_code == 201, response.text

    def push(self, repository: str, tag: str | None, image: TestImage) -> str:
        for child in image.children:
            self.push(repository, None, child)
        for blob in image.blobs:
            self.push_blob(repository, blob)
        self.push_manifest(repository, tag or image.digest, image.manifest, image.media_type)
        return image.digest

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        accept = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
        response = self.client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept})
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return digest_of(response.content)

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self.client.head(f"/v2/{repository}/blobs/{digest}").status_code == 200

    def tags(self, repository: str) -> list[str]:
        response = self.client.get(f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return []
        return list(response.json().get("tags") or [])
