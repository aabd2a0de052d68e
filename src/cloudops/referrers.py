"""What refers to an image (signatures, SBOMs, attestations): the three conventions in
use, as pure data. No I/O.

1. OCI 1.1 referrers API, ``GET /v2/<name>/referrers/<digest>``: an image index listing
   every manifest whose ``subject`` is that digest (ECR, distribution 3);
2. the referrers tag schema, the spec's fallback for registries without the API: the tag
   ``sha256-<hex>`` holds such an index, which writers update themselves;
3. cosign's own tags ``sha256-<hex>.sig`` / ``.att`` / ``.sbom`` (manifests without
   ``subject``; the tag is the only link).

Spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
("Listing Referrers", "Referrers Tag Schema", "Pushing Manifests with Subject").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cloudops.oci import OCI_INDEX, ImageIndex, ImageManifest, Manifest

__all__ = [
    "COSIGN_SUFFIXES",
    "MAX_REFERRERS",
    "MAX_REFERRER_DEPTH",
    "Referrer",
    "ReferrerSource",
    "cosign_tags",
    "fallback_tag",
    "index_entry",
    "is_referrer_tag",
    "merged_fallback_index",
]

ReferrerSource = Literal["api", "tag-schema", "cosign-tag"]

COSIGN_SUFFIXES = ("sig", "att", "sbom")

MAX_REFERRER_DEPTH = 3
"""A signature on an SBOM on an image is depth 2; deeper chains are cut here (a registry
could otherwise make a copy follow referrers forever)."""

MAX_REFERRERS = 256
"""Per image, across every depth: a registry listing more is refused, not followed."""


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest that refers to ``subject``, with every manifest below it (children
    before parents, its own last), found by ``via``."""

    subject: str
    manifests: tuple[Manifest, ...]
    via: ReferrerSource
    tag: str | None = None
    """The cosign tag it was found under: written under the same tag at the destination."""
    depth: int = 1

    @property
    def root(self) -> Manifest:
        return self.manifests[-1]

    @property
    def digest(self) -> str:
        return self.root.digest

    @property
    def artifact_type(self) -> str | None:
        return artifact_type(self.root)

    def as_dict(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "subject": self.subject,
            "artifact_type": self.artifact_type,
            "via": self.via,
            "tag": self.tag,
        }


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: ``<alg>-<ref>``, the algorithm cut to 32 characters and
    the encoded part to 64 (the spec's truncation rule)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"


def cosign_tags(digest: str) -> tuple[str, ...]:
    """cosign's tags for ``digest``: signatures, attestations, SBOMs."""
    algorithm, _, encoded = digest.partition(":")
    return tuple(f"{algorithm}-{encoded}.{suffix}" for suffix in COSIGN_SUFFIXES)


def is_referrer_tag(tag: str) -> bool:
    """A tag that carries referrers, not an application version (status and backfill
    leave these out)."""
    head, _, suffix = tag.partition(".")
    algorithm, dash, encoded = head.partition("-")
    if not dash or algorithm != "sha256" or len(encoded) != 64:
        return False
    if any(c not in "0123456789abcdef" for c in encoded):
        return False
    return suffix in ("", *COSIGN_SUFFIXES)


def artifact_type(manifest: Manifest) -> str | None:
    """The spec's rule for a referrers index entry: the manifest's artifactType, else an
    image manifest's config media type."""
    if manifest.artifact_type:
        return manifest.artifact_type
    if isinstance(manifest, ImageManifest):
        return manifest.config.media_type
    return None


def index_entry(manifest: Manifest) -> dict[str, Any]:
    """The descriptor a referrers index lists for ``manifest``: media type, digest, size,
    artifactType and the manifest's own annotations."""
    entry: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": len(manifest.raw),
    }
    kind = artifact_type(manifest)
    if kind:
        entry["artifactType"] = kind
    annotations = _annotations(manifest.raw)
    if annotations:
        entry["annotations"] = annotations
    return entry


def merged_fallback_index(existing: ImageIndex | None, entries: Iterable[dict[str, Any]]) -> bytes | None:
    """The fallback tag's new index: every entry already there kept as it was (another
    writer's referrers are never lost), ``entries`` added when their digest is missing.
    None when nothing is missing (no write needed)."""
    kept: list[Any] = []
    if existing is not None:
        doc = json.loads(existing.raw)  # parsed once already: a JSON object with a list
        kept = list(doc.get("manifests") or [])
    present = {e.get("digest") for e in kept if isinstance(e, dict)}
    added: list[dict[str, Any]] = []
    for entry in entries:
        if entry["digest"] not in present:
            present.add(entry["digest"])
            added.append(entry)
    if not added:
        return None
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*kept, *added]}
    return json.dumps(index, separators=(",", ":")).encode()


def listed_digests(index: ImageIndex | None) -> frozenset[str]:
    return frozenset(d.digest for d in index.manifests) if index is not None else frozenset()


def subjects_of(referrers: Sequence[Referrer]) -> tuple[str, ...]:
    """The subjects with referrers linked by ``subject`` (not by a cosign tag), each once."""
    return tuple(dict.fromkeys(r.subject for r in referrers if r.via != "cosign-tag"))


def _annotations(raw: bytes) -> dict[str, str]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    value = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
