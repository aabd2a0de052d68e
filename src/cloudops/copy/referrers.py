"""Finding an image's referrers at a source, what a destination already lists, and
writing them there: the I/O half of cloudops/referrers.py.

Reading follows the spec's client rules: the referrers API first, and where the registry
does not serve it (404), the ``sha256-<hex>`` fallback tag; cosign's ``.sig``/``.att``/
``.sbom`` tags always, since cosign writes them on any registry. Writing: a referrer is
pushed by digest; a registry that does not answer ``OCI-Subject`` gets the referrer
added to the subject's fallback index, every entry already there kept, read back after
the write so a concurrent writer's update is not lost without a retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from cloudops.copy.plan import walk_manifests
from cloudops.oci import OCI_INDEX, Descriptor, ImageIndex, Manifest, ManifestError
from cloudops.referrers import (
    MAX_REFERRER_DEPTH,
    MAX_REFERRERS,
    Referrer,
    ReferrerSource,
    cosign_tags,
    fallback_tag,
    is_referrer_tag,
    listed_digests,
    merged_fallback_index,
)
from cloudops.registry.client import RegistryReader, RegistryWriter
from cloudops.registry.errors import RegistryError

T = TypeVar("T")


class Limit(Protocol):
    """Runs one lookup under a bound (the batch's lookup semaphore); its result as is."""

    def __call__(self, call: Awaitable[T], /) -> Awaitable[T]: ...


MAX_TAG_SCAN = 10_000
"""A repository with more tags than this is not listed: its referrer tags are looked up
one by one instead (a listing of that size would cost more than it saves)."""

MAX_INDEX_ROUNDS = 3
"""Read-merge-write rounds of a fallback index before giving up (another writer kept
replacing it)."""


async def _unlimited(call: Awaitable[T]) -> T:
    return await call


async def fetch_tree(
    reader: RegistryReader, repository: str, root: Manifest, limit: Limit = _unlimited
) -> dict[str, Manifest]:
    """Every manifest an index reaches, by digest (``root`` not included), fetched level by
    level, each once."""
    children: dict[str, Manifest] = {}
    frontier: list[Manifest] = [root]
    while frontier:
        wanted = [
            d.digest
            for m in frontier
            if isinstance(m, ImageIndex)
            for d in m.manifests
            if d.digest not in children and d.digest != root.digest
        ]
        fetched: list[Manifest] = list(
            await asyncio.gather(*(limit(reader.get_manifest(repository, d)) for d in dict.fromkeys(wanted)))
        )
        children.update((m.digest, m) for m in fetched)
        frontier = fetched
    return children


@dataclass
class Found:
    referrers: list[Referrer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class ReferrerLookup:
    """Finds referrers, remembering per registry host whether it serves the referrers API
    (one 404 is enough: a batch does not ask again for every digest)."""

    def __init__(self) -> None:
        self._api: dict[str, bool] = {}
        self._probes: dict[str, asyncio.Event] = {}
        self._tags: dict[tuple[str, str], asyncio.Task[frozenset[str] | None]] = {}

    async def _referrer_tags(
        self, reader: RegistryReader, repository: str, limit: Limit
    ) -> frozenset[str] | None:
        """The repository's referrer tags (sha256-<hex>, and cosign's .sig/.att/.sbom), listed
        once per batch and shared by every image of it: most images have none, and one
        listing then replaces four lookups per manifest. None: too many tags to list (or
        the listing failed): each tag is then looked up by itself."""
        key = (reader.host, repository)
        task = self._tags.get(key)
        if task is None:

            async def listing() -> frozenset[str] | None:
                try:
                    tags = await limit(reader.list_tags(repository, limit=MAX_TAG_SCAN))
                except RegistryError:
                    return None
                return None if len(tags) > MAX_TAG_SCAN else frozenset(t for t in tags if is_referrer_tag(t))

            # A task, not a bare future: it always ends (a refusal or a cancellation is
            # raised to every image waiting on it, never left pending).
            task = asyncio.ensure_future(listing())
            self._tags[key] = task
        return await asyncio.shield(task)

    async def find(
        self,
        reader: RegistryReader,
        repository: str,
        digests: Sequence[str],
        limit: Limit = _unlimited,
        *,
        max_depth: int = MAX_REFERRER_DEPTH,
    ) -> Found:
        """What refers to ``digests`` and, to ``max_depth``, to those referrers."""
        found = Found()
        seen: set[tuple[str, str | None]] = set()
        frontier = [(d, 0) for d in dict.fromkeys(digests)]
        while frontier:
            levels = await asyncio.gather(
                *(self._of(reader, repository, d, depth + 1, limit) for d, depth in frontier)
            )
            frontier = []
            for level in levels:
                found.warnings.extend(level.warnings)
                for referrer in level.referrers:
                    key = (referrer.digest, referrer.tag)
                    if key in seen:
                        continue
                    seen.add(key)
                    children = await fetch_tree(reader, repository, referrer.root, limit)
                    full = Referrer(
                        referrer.subject,
                        walk_manifests(referrer.root, children),
                        referrer.via,
                        referrer.tag,
                        referrer.depth,
                    )
                    found.referrers.append(full)
                    if referrer.depth < max_depth:
                        frontier.append((referrer.digest, referrer.depth))
            if len(found.referrers) > MAX_REFERRERS:
                raise ManifestError(
                    f"{reader.host}/{repository} holds more than {MAX_REFERRERS} referrers for one image",
                    hint="prune old signatures and attestations, or run with --no-referrers",
                )
        return found

    async def _of(
        self, reader: RegistryReader, repository: str, subject: str, depth: int, limit: Limit
    ) -> Found:
        # cosign writes its tags for the images it signs or attests, not for referrers:
        # only an image's own manifests (depth 1 referrers) are looked up by tag.
        tags = cosign_tags(subject) if depth == 1 else ()
        known = await self._referrer_tags(reader, repository, limit)
        if known is not None:
            tags = tuple(t for t in tags if t in known)
        listing, cosign = await asyncio.gather(
            self._listing(reader, repository, subject, limit),
            asyncio.gather(*(limit(reader.find_manifest(repository, t)) for t in tags)),
        )
        descriptors, via = listing
        found = Found()
        wanted = list({d.digest: d for d in descriptors if d.digest != subject}.values())
        if len(wanted) > MAX_REFERRERS:  # before fetching any: the registry sets the count
            raise ManifestError(
                f"{reader.host}/{repository} lists {len(wanted)} referrers of {subject[:19]}, "
                f"more than {MAX_REFERRERS}",
                hint="prune old signatures and attestations, or run with --no-referrers",
            )
        fetched = await asyncio.gather(
            *(limit(reader.find_manifest(repository, d.digest)) for d in wanted), return_exceptions=True
        )
        for descriptor, manifest in zip(wanted, fetched, strict=True):
            where = "the referrers API" if via == "api" else f"the tag {fallback_tag(subject)}"
            if isinstance(manifest, ManifestError):
                # E.g. OCI 1.1-rc's artifact manifest, which no registry should still serve:
                # the image is copied, the referrer is named as not carried.
                found.warnings.append(
                    f"{where} lists {descriptor.digest[:19]} as a referrer of {subject[:19]}, "
                    f"but it is not a manifest cloudops copies ({manifest.message[:120]}): not copied"
                )
            elif isinstance(manifest, BaseException):
                raise manifest
            elif manifest is None:
                found.warnings.append(
                    f"{where} lists {descriptor.digest[:19]} as a referrer of {subject[:19]}, "
                    "but the registry does not hold it: not copied"
                )
            elif manifest.subject is None or manifest.subject.digest != subject:
                found.warnings.append(
                    f"{where} lists {descriptor.digest[:19]} as a referrer of {subject[:19]}, "
                    "but its subject is another manifest: not copied"
                )
            else:
                found.referrers.append(Referrer(subject, (manifest,), via, None, depth))
        for tag, manifest in zip(tags, cosign, strict=True):
            if manifest is not None:
                found.referrers.append(Referrer(subject, (manifest,), "cosign-tag", tag, depth))
        return found

    async def _listing(
        self, reader: RegistryReader, repository: str, subject: str, limit: Limit
    ) -> tuple[tuple[Descriptor, ...], ReferrerSource]:
        index: ImageIndex | None = None
        if reader.host not in self._api:
            # The first lookup on a host finds out whether it serves the API; the others
            # wait for that answer instead of each asking a registry that has none.
            probe = self._probes.get(reader.host)
            if probe is not None:
                await probe.wait()
            else:
                probe = self._probes[reader.host] = asyncio.Event()
                try:
                    index = await limit(reader.referrers(repository, subject))
                    self._api[reader.host] = index is not None
                finally:
                    probe.set()  # answered or failed: nobody waits for it any longer
        if index is None and self._api.get(reader.host, True):
            # The API answered before, or the probe failed (each lookup then asks itself,
            # at once, as if there had been no probe).
            index = await limit(reader.referrers(repository, subject))
            if index is None:
                self._api[reader.host] = False
        if index is not None:
            return index.manifests, "api"
        return await self._fallback(reader, repository, subject, limit)

    async def _fallback(
        self, reader: RegistryReader, repository: str, subject: str, limit: Limit
    ) -> tuple[tuple[Descriptor, ...], ReferrerSource]:
        known = await self._referrer_tags(reader, repository, limit)
        if known is not None and fallback_tag(subject) not in known:
            return (), "tag-schema"  # the listing has no such tag: nothing to read
        fallback = await limit(reader.find_manifest(repository, fallback_tag(subject)))
        if not isinstance(fallback, ImageIndex):
            return (), "tag-schema"  # no tag, or a tag of that name that is no index
        return fallback.manifests, "tag-schema"

    async def listed(
        self, reader: RegistryReader, repository: str, subjects: Iterable[str], limit: Limit = _unlimited
    ) -> frozenset[str]:
        """Every referrer digest the registry lists for ``subjects`` (API or fallback tag)."""
        listings = await asyncio.gather(*(self._listing(reader, repository, s, limit) for s in subjects))
        return frozenset(d.digest for descriptors, _ in listings for d in descriptors)


async def add_to_fallback_index(
    writer: RegistryWriter, repository: str, subject: str, entries: Sequence[dict[str, Any]]
) -> None:
    """Add ``entries`` to ``subject``'s fallback index (the tag ``sha256-<hex>``), keeping
    every entry already there; read back, and merged again when another writer replaced
    the index meanwhile."""
    tag = fallback_tag(subject)
    wanted = {e["digest"] for e in entries}
    for _ in range(MAX_INDEX_ROUNDS):
        existing = await writer.find_manifest(repository, tag)
        current = existing if isinstance(existing, ImageIndex) else None
        merged = merged_fallback_index(current, entries)
        if merged is None:
            return
        await writer.put_manifest(repository, tag, merged, OCI_INDEX)
        after = await writer.find_manifest(repository, tag)
        if wanted <= listed_digests(after if isinstance(after, ImageIndex) else None):
            return
    raise RegistryError(
        f"{writer.host}/{repository}:{tag} kept changing while cloudops added referrers of {subject[:19]}",
        hint="another writer is updating the same referrers index; run again",
    )
