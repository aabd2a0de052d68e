"""Planning a batch of image copies: pure data in, pure data out, no I/O.

Given what each source image holds and what each destination already has, decide, for
the whole batch at once, which blobs move and how, and which manifests are pushed in
which order. Modelled on promo-tools' edges (promotion/edge.go): every image ends in one
of a few named states, nothing is skipped silently.

Rules (ECR-NOTES.md):
- blobs are deduplicated across the batch: a blob goes to a destination registry once;
  other repositories of that registry that need it mount it from the first one;
- within one registry, a blob the source repository holds is mounted, not uploaded;
  across registries (across accounts) mounting is never attempted;
- child manifests are pushed by digest before their index, and the tag is written last;
- what refers to the image (signatures, SBOMs: cloudops/referrers.py) travels in the same
  batch: its blobs deduplicated with the image's, its manifests pushed by digest after the
  image's own and before the tag, so a tag never names an image whose referrers are not
  all in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from cloudops.oci import ImageIndex, ImageManifest, Manifest
from cloudops.referrers import Referrer
from cloudops.refs import Reference


@dataclass(frozen=True, slots=True)
class CopyRequest:
    source: Reference
    destination: Reference


@dataclass(frozen=True, slots=True)
class SourceImage:
    """A resolved source image: its root manifest and every manifest below it, children
    before parents (the order they must be pushed in)."""

    root: Manifest
    manifests: tuple[Manifest, ...]
    referrers: tuple[Referrer, ...] = ()
    """What refers to the image or its children (and to those, to a bounded depth)."""
    warnings: tuple[str, ...] = ()
    """Referrers a listing named that could not be carried, and why."""

    @property
    def digest(self) -> str:
        return self.root.digest

    @property
    def all_manifests(self) -> tuple[Manifest, ...]:
        """The image's manifests, then every referrer's."""
        return self.manifests + tuple(m for r in self.referrers for m in r.manifests)

    @property
    def image_manifests(self) -> tuple[ImageManifest, ...]:
        return tuple(m for m in self.all_manifests if isinstance(m, ImageManifest))


@dataclass(frozen=True, slots=True)
class DestinationState:
    tag_digest: str | None = None
    """The digest the destination tag points at now, if the tag exists."""
    present_manifests: frozenset[str] = frozenset()
    present_blobs: frozenset[str] = frozenset()
    listed_referrers: frozenset[str] = frozenset()
    """Referrers the destination already lists for their subjects (API or fallback tag)."""
    referrer_tags: tuple[tuple[str, str], ...] = ()
    """(cosign tag, the digest it names at the destination) for the tags that exist."""


class ImageStatus(enum.Enum):
    UP_TO_DATE = "up-to-date"
    """The destination already has this digest under this tag: nothing is written."""
    COPY = "copy"
    TAG_CONFLICT = "tag-conflict"
    """The destination tag points at another digest and moving tags is not allowed."""


@dataclass(frozen=True, slots=True)
class ImageInput:
    request: CopyRequest
    digest: str
    destination: DestinationState
    source: SourceImage | None = None
    """None only when the image is already up to date or in conflict (never fetched)."""


BlobKey = tuple[str, str, str]
"""(destination registry, destination repository, digest)"""


@dataclass(frozen=True, slots=True)
class BlobTransfer:
    digest: str
    size: int
    source_registry: str
    source_repository: str
    dest_registry: str
    dest_repository: str
    mount_from: str | None = None
    """A repository of the destination registry to mount from, tried before uploading."""
    after: BlobKey | None = None
    """A transfer that must finish first (the upload that ``mount_from`` relies on)."""

    @property
    def key(self) -> BlobKey:
        return (self.dest_registry, self.dest_repository, self.digest)


@dataclass(frozen=True, slots=True)
class ManifestPush:
    repository: str
    reference: str
    """A digest for child manifests, the tag for the root (written last)."""
    digest: str
    media_type: str
    raw: bytes = field(repr=False)
    subject: str | None = None
    """Set for a referrer pushed by digest: if the registry does not confirm it indexes
    it (OCI-Subject), it is added to the subject's fallback tag."""


@dataclass(frozen=True, slots=True)
class ImagePlan:
    request: CopyRequest
    digest: str
    status: ImageStatus
    current_digest: str | None = None
    blobs: tuple[BlobKey, ...] = ()
    blobs_present: int = 0
    pushes: tuple[ManifestPush, ...] = ()
    """The image's manifests, the tag (or the root by digest) last."""
    referrer_pushes: tuple[ManifestPush, ...] = ()
    """Pushed as soon as their own blobs are in (the spec lets a referrer go in before its
    subject), and in any case before the last of ``pushes``: before the tag."""
    referrer_blobs: tuple[BlobKey, ...] = ()
    """The blobs ``referrer_pushes`` need: all they wait for."""
    referrers: tuple[Referrer, ...] = ()
    referrers_present: tuple[str, ...] = ()
    """Digests of referrers the destination already had (listed, or under their tag)."""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CopyPlan:
    images: tuple[ImagePlan, ...]
    transfers: tuple[BlobTransfer, ...]

    @property
    def bytes_to_move(self) -> int:
        return sum(t.size for t in self.transfers if t.mount_from is None)

    def transfer(self, key: BlobKey) -> BlobTransfer:
        return self._by_key()[key]

    def _by_key(self) -> dict[BlobKey, BlobTransfer]:
        return {t.key: t for t in self.transfers}


def walk_manifests(root: Manifest, children: dict[str, Manifest]) -> tuple[Manifest, ...]:
    """Every manifest reachable from ``root``, children before parents, each once."""
    ordered: list[Manifest] = []
    seen: set[str] = set()

    def visit(manifest: Manifest, depth: int) -> None:
        if manifest.digest in seen or depth > 8:
            return
        seen.add(manifest.digest)
        if isinstance(manifest, ImageIndex):
            for entry in manifest.manifests:
                child = children.get(entry.digest)
                if child is not None:
                    visit(child, depth + 1)
        ordered.append(manifest)

    visit(root, 0)
    return tuple(ordered)


class Planner:
    """Plans a batch one image at a time, as each image's lookups finish, so that its blobs
    can start moving while other images are still being looked at. Blobs are
    deduplicated across everything added so far: a blob another image already uploads
    into the same registry is mounted after that upload instead of moved twice."""

    def __init__(self, *, allow_tag_move: bool = True):
        self._allow_tag_move = allow_tag_move
        self._transfers: dict[BlobKey, BlobTransfer] = {}
        self._first_in_registry: dict[tuple[str, str], BlobKey] = {}

    def moving(self, registry: str, digest: str) -> bool:
        """Whether an image planned earlier moves this blob into ``registry``: another
        repository there then mounts it, and asking whether it holds it is not worth a
        request (a mount of a blob it holds succeeds too)."""
        return (registry, digest) in self._first_in_registry

    def add(self, image: ImageInput) -> CopyPlan:
        """The image's plan, and the transfers it needs that no earlier image started;
        with its referrers when ``image.source`` has them (:meth:`add_referrers`)."""
        part = self._add_image(image)
        source = image.source
        plan = part.images[0]
        if (
            source is None
            or not (source.referrers or source.warnings)
            or plan.status is ImageStatus.TAG_CONFLICT
        ):
            return part
        more = self.add_referrers(plan, source, image.destination)
        return CopyPlan(more.images, part.transfers + more.transfers)

    def _add_image(self, image: ImageInput) -> CopyPlan:
        request = image.request
        state = image.destination
        dst_tag = request.destination.tag
        up_to_date = state.tag_digest == image.digest or (
            dst_tag is None and image.digest in state.present_manifests
        )
        if state.tag_digest is not None and not up_to_date and not self._allow_tag_move:
            return CopyPlan(
                (ImagePlan(request, image.digest, ImageStatus.TAG_CONFLICT, state.tag_digest),), ()
            )
        if up_to_date:
            return CopyPlan((ImagePlan(request, image.digest, ImageStatus.UP_TO_DATE, state.tag_digest),), ())
        if image.source is None:
            raise ValueError(f"{request.source} needs copying but its manifests were not fetched")
        source = image.source
        needed, new, present = self._blobs(request, source.manifests, state)
        dst = request.destination
        pushes = [
            ManifestPush(dst.repository, m.digest, m.digest, m.media_type, m.raw)
            for m in source.manifests[:-1]
            if m.digest not in state.present_manifests
        ]
        root = source.root
        pushes.append(
            ManifestPush(dst.repository, dst_tag or root.digest, root.digest, root.media_type, root.raw)
        )
        plan = ImagePlan(
            request,
            image.digest,
            ImageStatus.COPY,
            state.tag_digest,
            tuple(dict.fromkeys(needed)),
            present,
            tuple(pushes),
        )
        # Largest first: on a busy link the batch ends with small blobs, not one big one.
        return CopyPlan((plan,), tuple(sorted(new, key=lambda t: -t.size)))

    def add_referrers(self, plan: ImagePlan, source: SourceImage, state: DestinationState) -> CopyPlan:
        """``plan`` with what refers to the image (``source.referrers``; ``state`` says what
        the destination has of them), and the transfers their blobs need that no earlier
        image started. The engine calls it once the referrers are found, while the
        image's own blobs already move."""
        request = plan.request
        dst = request.destination
        referrer_pushes, carried, present_referrers = _referrer_pushes(source, state, dst)
        found = replace(
            plan, referrers=source.referrers, referrers_present=present_referrers, warnings=source.warnings
        )
        if not referrer_pushes:
            return CopyPlan((found,), ())
        manifests = [m for r in source.referrers for m in r.manifests if m.digest in carried]
        needed, new, present = self._blobs(request, manifests, state)
        found = replace(
            found,
            blobs=tuple(dict.fromkeys((*plan.blobs, *needed))),
            blobs_present=plan.blobs_present + present,
            referrer_pushes=tuple(referrer_pushes),
            referrer_blobs=tuple(needed),
        )
        return CopyPlan((found,), tuple(sorted(new, key=lambda t: -t.size)))

    def _blobs(
        self, request: CopyRequest, manifests: Sequence[Manifest], state: DestinationState
    ) -> tuple[list[BlobKey], list[BlobTransfer], int]:
        """The blob keys ``manifests`` need, the transfers no earlier image started, and
        how many blobs the destination already holds."""
        src, dst = request.source, request.destination
        needed: list[BlobKey] = []
        new: list[BlobTransfer] = []
        present = 0
        for digest, size in _missing_blobs(manifests, state):
            if digest in state.present_blobs:
                present += 1
                continue
            key: BlobKey = (dst.registry, dst.repository, digest)
            needed.append(key)
            if key in self._transfers:
                continue
            first = self._first_in_registry.get((dst.registry, digest))
            mount_from: str | None = None
            if first is not None:
                mount_from = first[1]  # another repository of this batch uploads it
            elif src.registry == dst.registry and src.repository != dst.repository:
                mount_from = src.repository  # one registry: mount from the source
            transfer = BlobTransfer(
                digest,
                size,
                src.registry,
                src.repository,
                dst.registry,
                dst.repository,
                mount_from=mount_from,
                after=first,
            )
            self._transfers[key] = transfer
            self._first_in_registry.setdefault((dst.registry, digest), key)
            new.append(transfer)
        return needed, new, present


def _referrer_pushes(
    source: SourceImage, state: DestinationState, dst: Reference
) -> tuple[list[ManifestPush], set[str], tuple[str, ...]]:
    """What must be pushed for the image's referrers (children by digest, then the
    referrer: by digest with its subject, or under its cosign tag), the manifests those
    pushes carry, and the referrers the destination already has."""
    pushes: list[ManifestPush] = []
    carried: set[str] = set()
    present: list[str] = []
    tags = dict(state.referrer_tags)
    for referrer in source.referrers:
        root = referrer.root
        if referrer.tag is not None:
            done = tags.get(referrer.tag) == root.digest
        else:
            done = root.digest in state.listed_referrers and root.digest in state.present_manifests
        if done:
            present.append(root.digest)
            continue
        for child in referrer.manifests[:-1]:
            if child.digest not in state.present_manifests:
                pushes.append(
                    ManifestPush(dst.repository, child.digest, child.digest, child.media_type, child.raw)
                )
                carried.add(child.digest)
        if referrer.tag is not None:
            pushes.append(ManifestPush(dst.repository, referrer.tag, root.digest, root.media_type, root.raw))
        else:
            pushes.append(
                ManifestPush(
                    dst.repository,
                    root.digest,
                    root.digest,
                    root.media_type,
                    root.raw,
                    subject=referrer.subject,
                )
            )
        carried.add(root.digest)
    # One push per manifest: a referrer reached twice (by two subjects) goes once.
    unique = list({(p.reference, p.digest): p for p in pushes}.values())
    return unique, carried, tuple(dict.fromkeys(present))


def plan_copy(images: Sequence[ImageInput], *, allow_tag_move: bool = True) -> CopyPlan:
    """The whole batch's plan at once (what :class:`Planner` builds image by image)."""
    planner = Planner(allow_tag_move=allow_tag_move)
    plans: list[ImagePlan] = []
    transfers: list[BlobTransfer] = []
    for image in images:
        part = planner.add(image)
        plans.extend(part.images)
        transfers.extend(part.transfers)
    return CopyPlan(tuple(plans), tuple(transfers))


def _missing_blobs(manifests: Iterable[Manifest], state: DestinationState) -> list[tuple[str, int]]:
    """Blobs of the manifests the destination lacks, each once, in manifest order. A
    manifest already present guarantees its blobs are (registries check on push)."""
    found: dict[str, int] = {}
    for manifest in manifests:
        if manifest.digest in state.present_manifests or not isinstance(manifest, ImageManifest):
            continue
        for blob in manifest.blobs:
            found.setdefault(blob.digest, blob.size)
    return list(found.items())
