"""OCI and Docker image manifest models, media types and digests. No I/O.

Parsing keeps the exact bytes: a manifest's digest is the sha256 of its bytes, so a copy
must push the very bytes it read (re-serialising would change the digest).

Specs: https://github.com/opencontainers/image-spec/blob/main/manifest.md,
image-index.md, and Docker's "Image Manifest V2, Schema 2".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cloudops.errors import InputError
from cloudops.refs import ReferenceError, validate_digest

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_BYTES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageIndex",
    "ImageManifest",
    "ManifestError",
    "Platform",
    "parse_manifest",
    "sha256_digest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_MEDIA_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})

# Sent on every manifest GET/HEAD. distribution 2.8 answers 404 for an OCI manifest when the
# OCI type is missing, and converts a manifest list to schema 1 (another digest) when the
# list type is missing (ECR-NOTES.md).
ACCEPT_MANIFESTS = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

# ECR's manifest size quota; we refuse larger manifests before reading them whole.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# Layers that registries may not hold (Windows base layers): copied by reference only.
NON_DISTRIBUTABLE = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


class ManifestError(InputError):
    """Bytes that are not a manifest or index this tool understands."""

    kind = "failed"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    """String annotations, in document order (a cosign signature lives in one)."""
    artifact_type: str | None = None
    """An index entry's artifactType (the referrers API lists one per referrer)."""

    def annotation(self, key: str) -> str | None:
        return next((v for k, v in self.annotations if k == key), None)

    @property
    def distributable(self) -> bool:
        """False for foreign layers that live outside registries (they are not copied)."""
        return not (self.media_type in NON_DISTRIBUTABLE and self.urls)


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """A single-platform image (or artifact): config plus layers."""

    media_type: str
    digest: str
    raw: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Every blob the registry must hold before this manifest can be pushed."""
        return (self.config, *(layer for layer in self.layers if layer.distributable))


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A multi-platform index (OCI image index or Docker manifest list)."""

    media_type: str
    digest: str
    raw: bytes
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None


Manifest = ImageManifest | ImageIndex


def _fail(what: str) -> ManifestError:
    return ManifestError(
        f"invalid manifest: {what}", hint="the registry served bytes that are not a valid image manifest"
    )


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _fail(f"{where} is not an object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _fail(f"{where}.mediaType is missing")
    if not isinstance(digest, str):
        raise _fail(f"{where}.digest is missing")
    try:
        validate_digest(digest)
    except ReferenceError:
        raise _fail(f"{where}.digest {digest[:80]!r} is not a digest") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _fail(f"{where}.size is not a non-negative integer")
    platform = None
    raw_platform = value.get("platform")
    if raw_platform is not None:
        if not isinstance(raw_platform, dict):
            raise _fail(f"{where}.platform is not an object")
        os_name, arch = raw_platform.get("os"), raw_platform.get("architecture")
        variant = raw_platform.get("variant")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise _fail(f"{where}.platform lacks os/architecture")
        if variant is not None and not isinstance(variant, str):
            raise _fail(f"{where}.platform.variant is not a string")
        platform = Platform(os_name, arch, variant)
    urls = value.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise _fail(f"{where}.urls is not a list of strings")
    annotations = value.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise _fail(f"{where}.annotations is not a map of strings")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _fail(f"{where}.artifactType is not a string")
    return Descriptor(
        media_type, digest, size, platform, tuple(urls), tuple(annotations.items()), artifact_type
    )


def _optional_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(f"{key} is not a string")
    return value


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    """Parse manifest bytes. ``content_type`` is the registry's Content-Type header, used
    when the document itself carries no mediaType (allowed by OCI 1.0)."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES} byte limit",
            hint="ECR refuses manifests over 4 MiB",
        )
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise _fail("not JSON") from None
    if not isinstance(doc, dict):
        raise _fail("not a JSON object")
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise _fail("mediaType is not a string")
    header_type = (content_type or "").split(";")[0].strip() or None
    media_type = body_type or header_type
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or doc.get("schemaVersion") == 1:
        raise ManifestError(
            "Docker schema 1 manifests are not supported",
            hint="schema 1 is deprecated and refused by ECR; rebuild the image with a current builder",
        )
    if doc.get("schemaVersion") != 2:
        raise _fail("schemaVersion is not 2")
    if media_type is None:
        # OCI 1.0 allowed mediaType to be absent: tell the kinds apart by shape.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    digest = sha256_digest(raw)
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = _optional_str(doc, "artifactType")

    if media_type in INDEX_MEDIA_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise _fail("manifests is not a list")
        children = tuple(_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries))
        return ImageIndex(media_type, digest, raw, children, subject, artifact_type)
    if media_type in MANIFEST_MEDIA_TYPES:
        if "config" not in doc:
            raise _fail("config is missing")
        config = _descriptor(doc["config"], "config")
        layers_raw = doc.get("layers")
        if not isinstance(layers_raw, list):
            raise _fail("layers is not a list")
        layers = tuple(_descriptor(e, f"layers[{i}]") for i, e in enumerate(layers_raw))
        return ImageManifest(media_type, digest, raw, config, layers, subject, artifact_type)
    raise ManifestError(
        f"unsupported manifest media type {media_type!r}",
        hint="cloudops copies Docker v2 schema 2 and OCI manifests and indexes",
    )
