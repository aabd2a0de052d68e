"""ReferrerLookup's decisions on what a registry lists, with a stand-in reader (the
integration tests run the same code against real registries; these cases are ones a
real distribution 2.8 refuses to store, so they cannot be set up there)."""

from __future__ import annotations

import asyncio
import json

from cloudops.copy.referrers import ReferrerLookup
from cloudops.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    ImageIndex,
    Manifest,
    ManifestError,
    parse_manifest,
    sha256_digest,
)

SUBJECT = "sha256:" + "a" * 64
EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2}


def _manifest(subject: str) -> Manifest:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": EMPTY,
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 10},
    }
    return parse_manifest(json.dumps(doc).encode())


class _Reader:
    """Serves a referrers API listing and manifests by digest; a digest mapped to an
    exception raises it, as RegistryReader does for bytes it cannot parse."""

    host = "registry.test"

    def __init__(self, listing: list[str], manifests: dict[str, Manifest | Exception]):
        self.listing = listing
        self.manifests = manifests

    async def referrers(self, repository: str, digest: str) -> ImageIndex | None:
        if digest != SUBJECT:
            return parse_manifest(
                json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
            )  # type: ignore[return-value]
        entries = [{"mediaType": OCI_MANIFEST, "digest": d, "size": 1} for d in self.listing]
        index = parse_manifest(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        )
        assert isinstance(index, ImageIndex)
        return index

    async def list_tags(self, repository: str, *, limit: int | None = None) -> list[str]:
        return ["1.0"]  # no referrer tags: only the API lists referrers here

    async def find_manifest(self, repository: str, reference: str) -> Manifest | None:
        found = self.manifests.get(reference)
        if isinstance(found, Exception):
            raise found
        return found


def test_a_referrer_of_a_kind_not_copied_is_named_and_the_others_carried() -> None:
    good = _manifest(SUBJECT)
    bad = "sha256:" + "b" * 64
    reader = _Reader(
        [good.digest, bad], {good.digest: good, bad: ManifestError("unsupported manifest media type")}
    )

    found = asyncio.run(ReferrerLookup().find(reader, "ep/cortex", [SUBJECT]))  # type: ignore[arg-type]

    assert [r.digest for r in found.referrers] == [good.digest]
    assert len(found.warnings) == 1 and bad[:19] in found.warnings[0] and "not copied" in found.warnings[0]


def test_a_registry_failure_while_looking_is_not_hidden() -> None:
    from cloudops.registry.errors import RegistryError

    bad = "sha256:" + "c" * 64
    reader = _Reader([bad], {bad: RegistryError("HTTP 500 from registry.test")})
    try:
        asyncio.run(ReferrerLookup().find(reader, "ep/cortex", [SUBJECT]))  # type: ignore[arg-type]
    except RegistryError as error:
        assert "500" in str(error)
    else:
        raise AssertionError("a registry failure must fail the lookup, not drop the referrer")
