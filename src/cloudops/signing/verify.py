"""Checking an image's cosign signatures in a registry (the I/O half of
simple_signing.py): find the signature manifests that refer to the digest (OCI 1.1
referrers, the tag schema, cosign's ``.sig`` tag: copy/referrers.py), read each payload
blob (bounded), and verify it against the trusted keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cloudops.copy.referrers import ReferrerLookup
from cloudops.oci import ImageManifest, sha256_digest
from cloudops.registry.client import RegistryReader
from cloudops.signing.keys import PublicKey
from cloudops.signing.simple_signing import MAX_PAYLOAD_BYTES, check_signature, signature_layers

MAX_SIGNATURES = 64
"""Signatures looked at per image: a registry holding more cannot make a check run long."""


@dataclass(frozen=True)
class Verification:
    digest: str
    ok: bool
    reason: str
    """"signed by <key>" when ok, else what was missing or wrong (short, for a person)."""
    key: PublicKey | None = None
    signatures: int = 0
    """How many signatures were looked at."""

    @property
    def state(self) -> Literal["signed", "unsigned", "invalid"]:
        """signed / unsigned / invalid: what status shows per cell."""
        if self.ok:
            return "signed"
        return "unsigned" if self.signatures == 0 else "invalid"

    def as_dict(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "state": self.state,
            "reason": self.reason,
            "key": self.key.name if self.key else None,
            "key_id": self.key.key_id if self.key else None,
            "signatures": self.signatures,
        }


async def verify_image(
    reader: RegistryReader,
    repository: str,
    digest: str,
    keys: Sequence[PublicKey],
    *,
    lookup: ReferrerLookup | None = None,
) -> Verification:
    """Whether a cosign signature that names exactly ``digest`` verifies under one of
    ``keys``. Registry failures raise; what the registry holds never does (it is judged)."""
    found = await (lookup or ReferrerLookup()).find(reader, repository, [digest], max_depth=1)
    layers = [
        layer
        for referrer in found.referrers
        if referrer.subject == digest and isinstance(referrer.root, ImageManifest)
        for layer in signature_layers(referrer.root)
    ][:MAX_SIGNATURES]
    if not layers:
        return Verification(digest, False, "no cosign signature refers to it")
    reasons: list[str] = []
    for layer in layers:
        payload = await _payload(reader, repository, layer.payload_digest, layer.payload_size)
        if payload is None:
            reasons.append(f"a signature payload is over {MAX_PAYLOAD_BYTES} bytes or not what it claims")
            continue
        verdict = check_signature(payload, layer, digest, keys)
        if verdict.ok and verdict.key is not None:
            return Verification(digest, True, f"signed by {verdict.key.name}", verdict.key, len(layers))
        reasons.append(verdict.reason)
    return Verification(digest, False, "; ".join(dict.fromkeys(reasons)), None, len(layers))


async def _payload(reader: RegistryReader, repository: str, digest: str, size: int) -> bytes | None:
    """The payload blob, read to at most its declared size (itself bounded); None when it
    is larger or does not hash to its digest."""
    if not 0 <= size <= MAX_PAYLOAD_BYTES:
        return None
    data = bytearray()
    async with reader.open_blob(repository, digest) as chunks:
        async for chunk in chunks:
            data += chunk
            if len(data) > size:
                return None
    if sha256_digest(bytes(data)) != digest:
        return None
    return bytes(data)
