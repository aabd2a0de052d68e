"""Referrers made and pushed the way other tools do (oras, cosign), with the tests' own
HTTP client, never cloudops': OCI 1.1 artifacts with a ``subject`` indexed in the
referrers tag schema (a registry without the API), and cosign's ``sha256-<hex>.sig`` tags."""

from __future__ import annotations

import json

from tests.support.images import OCI_INDEX, OCI_MANIFEST, Blob, Pusher, TestImage, digest_of

EMPTY_CONFIG = Blob(b"{}", "application/vnd.oci.empty.v1+json")
SBOM_TYPE = "application/spdx+json"
SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def make_referrer(
    subject: TestImage, artifact_type: str, payload: bytes, *, annotations: dict[str, str] | None = None
) -> TestImage:
    """An OCI 1.1 artifact whose subject is ``subject``."""
    layer = Blob(payload, artifact_type)
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_CONFIG.descriptor(),
        "layers": [layer.descriptor()],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)},
    }
    if annotations:
        doc["annotations"] = annotations
    return TestImage(json.dumps(doc).encode(), OCI_MANIFEST, [EMPTY_CONFIG, layer])


def make_cosign_signature(payload: bytes, signature: str = "MEUCIQ==") -> TestImage:
    """cosign's legacy signature manifest (the one under ``sha256-<hex>.sig``): no subject."""
    layer = Blob(payload, SIMPLE_SIGNING)
    config = Blob(
        b'{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}',
        "application/vnd.oci.image.config.v1+json",
    )
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [{**layer.descriptor(), "annotations": {"dev.cosignproject.cosign/signature": signature}}],
    }
    return TestImage(json.dumps(doc).encode(), OCI_MANIFEST, [config, layer])


def tag_of(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-") + (f".{suffix}" if suffix else "")


def push_referrer(pusher: Pusher, repository: str, referrer: TestImage, subject: str) -> str:
    """Push by digest, then add it to the subject's fallback index as a client must when
    the registry has no referrers API (distribution 2.8)."""
    pusher.push(repository, None, referrer)
    entry = {
        "mediaType": referrer.media_type,
        "digest": referrer.digest,
        "size": len(referrer.manifest),
        "artifactType": json.loads(referrer.manifest)["artifactType"],
    }
    listed = fallback_index(pusher, repository, subject)
    manifests = [*listed, entry] if entry["digest"] not in {e["digest"] for e in listed} else listed
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    pusher.push_manifest(repository, tag_of(subject), index, OCI_INDEX)
    return referrer.digest


def fallback_index(pusher: Pusher, repository: str, subject: str) -> list[dict[str, object]]:
    response = pusher.client.get(
        f"/v2/{repository}/manifests/{tag_of(subject)}", headers={"Accept": OCI_INDEX}
    )
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return list(response.json()["manifests"])


def fallback_digests(pusher: Pusher, repository: str, subject: str) -> set[str]:
    return {str(e["digest"]) for e in fallback_index(pusher, repository, subject)}


__all__ = ["digest_of"]
