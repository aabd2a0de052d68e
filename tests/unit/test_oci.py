from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageIndex,
    ImageManifest,
    ManifestError,
    parse_manifest,
    sha256_digest,
)

D = "sha256:" + "0" * 64
E = "sha256:" + "1" * 64


def _desc(
    media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip", digest: str = D, **extra: object
) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": 10, **extra}


def test_docker_manifest_keeps_bytes_and_digest() -> None:
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": _desc(), "layers": [_desc(digest=E)]},
        indent=4,
    ).encode()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, ImageManifest)
    assert manifest.raw == raw and manifest.digest == sha256_digest(raw)
    assert [b.digest for b in manifest.blobs] == [D, E]


def test_oci_manifest_without_media_type_uses_header_then_shape() -> None:
    raw = json.dumps({"schemaVersion": 2, "config": _desc(), "layers": []}).encode()
    assert parse_manifest(raw, OCI_MANIFEST + "; charset=utf-8").media_type == OCI_MANIFEST
    assert parse_manifest(raw).media_type == OCI_MANIFEST
    index_raw = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(parse_manifest(index_raw), ImageIndex)


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST_LIST, OCI_INDEX])
def test_indexes_carry_platforms(media_type: str) -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                _desc(OCI_MANIFEST, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
                _desc(OCI_MANIFEST, E, platform={"os": "linux", "architecture": "amd64"}),
            ],
        }
    ).encode()
    index = parse_manifest(raw)
    assert isinstance(index, ImageIndex)
    assert [str(d.platform) for d in index.manifests] == ["linux/arm64/v8", "linux/amd64"]


def test_artifact_with_subject() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": _desc("application/vnd.oci.empty.v1+json"),
            "layers": [_desc()],
            "subject": _desc(OCI_MANIFEST, E),
        }
    ).encode()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, ImageManifest)
    assert manifest.subject is not None and manifest.subject.digest == E
    assert manifest.artifact_type == "application/vnd.example.sbom"


def test_foreign_layers_are_not_copied() -> None:
    foreign = _desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", E, urls=["https://mcr/x"])
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": _desc(), "layers": [foreign]}
    ).encode()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, ImageManifest)
    assert [b.digest for b in manifest.blobs] == [D]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "schema 1"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(),
            "unsupported manifest media type",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode(),
            "config is missing",
        ),
        (
            json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _desc(digest="md5:x"), "layers": []}
            ).encode(),
            "not a digest",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {**_desc(), "size": -1},
                    "layers": [],
                }
            ).encode(),
            "size",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {"a": 1}}).encode(),
            "manifests is not a list",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_malformed_manifests_raise_manifest_error(doc: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(doc)
    assert message in str(caught.value)


def test_manifests_over_four_mib_are_refused() -> None:
    with pytest.raises(ManifestError, match="over the"):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1))


def test_index_with_ten_thousand_entries_parses() -> None:
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [_desc(OCI_MANIFEST)] * 10_000}
    ).encode()
    index = parse_manifest(raw)
    assert isinstance(index, ImageIndex) and len(index.manifests) == 10_000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests", "subject"]),
        json_values,
    )
)
def test_arbitrary_documents_never_crash_the_parser(doc: dict[str, object]) -> None:
    with contextlib.suppress(ManifestError):
        parse_manifest(json.dumps(doc).encode())
