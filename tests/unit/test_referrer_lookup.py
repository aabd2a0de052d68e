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


class _Counting(_Reader):
    """Counts referrers-API calls and how many run at once; answers 404 (no API), after a
    failure first when ``fail_first``."""

    def __init__(self, fail_first: bool):
        super().__init__([], {})
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.fail_first = fail_first

    async def referrers(self, repository: str, digest: str) -> ImageIndex | None:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0.01)
            if self.fail_first and self.calls == 1:
                from cloudops.registry.errors import ServerError

                raise ServerError("registry.test failed the referrers with HTTP 503")
            return None
        finally:
            self.running -= 1


def _subjects(n: int) -> list[str]:
    return ["sha256:" + format(i, "064x") for i in range(n)]


def test_one_probe_per_host_finds_out_that_it_has_no_referrers_api() -> None:
    reader = _Counting(fail_first=False)
    lookup = ReferrerLookup()

    async def all_at_once() -> None:
        await asyncio.gather(*(lookup.find(reader, "ep/cortex", [s]) for s in _subjects(8)))  # type: ignore[arg-type]

    asyncio.run(all_at_once())
    assert reader.calls == 1


def test_a_failed_probe_lets_every_lookup_ask_for_itself_at_once() -> None:
    """The probe's failure is the first lookup's; the others do not queue behind one
    another for it (each would wait a whole retry policy)."""
    reader = _Counting(fail_first=True)
    lookup = ReferrerLookup()

    async def all_at_once() -> list[object]:
        return await asyncio.gather(
            *(lookup.find(reader, "ep/cortex", [s]) for s in _subjects(8)),  # type: ignore[arg-type]
            return_exceptions=True,
        )

    outcomes = asyncio.run(all_at_once())
    assert sum(isinstance(o, Exception) for o in outcomes) == 1
    assert reader.most_at_once > 1  # the seven others asked together, not one by one
