"""Executing a copy plan against real registries.

Phases: RESOLVE each source to a digest (and stop there when the destination tag already
has it: one request, nothing written), FETCH the manifests by digest, LOOK at what the
destination lacks, PLAN (pure, copy/plan.py), then EXECUTE: blob transfers run with
bounded concurrency, each blob streamed and hashed on the fly; an image's manifests are
pushed only after all its blobs are in, children by digest, then what refers to the image
(signatures, SBOMs, attestations: copy/referrers.py), the tag last, and the tag is read
back to verify the digest end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple, Protocol, TypeVar

from cloudops.copy.plan import (
    BlobKey,
    BlobTransfer,
    CopyPlan,
    CopyRequest,
    DestinationState,
    ImageInput,
    ImagePlan,
    ImageStatus,
    ManifestPush,
    Planner,
    SourceImage,
    walk_manifests,
)
from cloudops.copy.referrers import Limit, ReferrerLookup, add_to_fallback_index, fetch_tree
from cloudops.copy.relay import BlobRelay
from cloudops.errors import CloudopsError, InputError, RefusedError
from cloudops.oci import ImageManifest, parse_manifest
from cloudops.referrers import index_entry, subjects_of
from cloudops.registry.client import ManifestHead, RegistryReader, RegistryWriter
from cloudops.registry.errors import DigestMismatchError, NotFoundError, RegistryError
from cloudops.registry.retry import NO_RETRY, RetryPolicy
from cloudops.registry.session import RegistrySession

T = TypeVar("T")
BlobOutcome = Literal["uploaded", "mounted"]
ResultStatus = Literal["copied", "up-to-date", "failed", "refused"]


class CopyProgress(Protocol):
    """What a progress display hears. Every method must be cheap and never raise.
    ``planned`` comes once per image, with its plan and the transfers it adds."""

    def planned(self, plan: CopyPlan) -> None: ...
    def blob_advanced(self, key: BlobKey, nbytes: int) -> None: ...
    def blob_restarted(self, key: BlobKey) -> None: ...
    def blob_finished(self, key: BlobKey, outcome: BlobOutcome) -> None: ...
    def image_finished(self, result: ImageResult) -> None: ...


class NullProgress:
    def planned(self, plan: CopyPlan) -> None: ...
    def blob_advanced(self, key: BlobKey, nbytes: int) -> None: ...
    def blob_restarted(self, key: BlobKey) -> None: ...
    def blob_finished(self, key: BlobKey, outcome: BlobOutcome) -> None: ...
    def image_finished(self, result: ImageResult) -> None: ...


class TagConflictError(RefusedError):
    """The destination tag already points at another digest, and tags never move."""


@dataclass
class ImageResult:
    request: CopyRequest
    status: ResultStatus
    digest: str | None = None
    previous_digest: str | None = None
    bytes_uploaded: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    manifests_pushed: int = 0
    seconds: float = 0.0
    error: CloudopsError | None = None
    referrers: list[dict[str, object]] = field(default_factory=list)
    """What refers to the image, each with ``status`` "copied" or "present"."""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("copied", "up-to-date")

    def as_dict(self) -> dict[str, object]:
        return {
            "source": str(self.request.source),
            "destination": str(self.request.destination),
            "status": self.status,
            "digest": self.digest,
            "previous_digest": self.previous_digest,
            "bytes_uploaded": self.bytes_uploaded,
            "blobs": {
                "uploaded": self.blobs_uploaded,
                "mounted": self.blobs_mounted,
                "skipped": self.blobs_skipped,
            },
            "manifests_pushed": self.manifests_pushed,
            "referrers": self.referrers,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "error": str(self.error) if self.error else None,
        }


@dataclass
class CopyReport:
    results: list[ImageResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def bytes_uploaded(self) -> int:
        return sum(r.bytes_uploaded for r in self.results)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "bytes_uploaded": self.bytes_uploaded,
            "images": [r.as_dict() for r in self.results],
        }


@dataclass
class _BlobStats:
    outcome: BlobOutcome
    nbytes: int


class _Sides(NamedTuple):
    """A request's two registries as its image's lookups use them: under the batch's lookup
    bound, and knowing which blobs an earlier image already moves into the destination."""

    src: RegistryReader
    dst: RegistryWriter
    src_repo: str
    dst_repo: str
    limited: Limit
    moving: Callable[[str], bool]


class CopyEngine:
    def __init__(
        self,
        pool: RegistrySession,
        *,
        concurrency: int = 8,
        progress: CopyProgress | None = None,
        retry: RetryPolicy | None = None,
        referrers: bool = True,
    ):
        """``referrers``: carry what refers to each image (signatures, SBOMs,
        attestations) with it; False copies the images alone (``--no-referrers``)."""
        self._pool = pool
        self._referrers = referrers
        self._lookup = ReferrerLookup()
        """Made anew by each copy(): what it learnt (tag listings) holds for one batch."""
        self._concurrency = max(1, concurrency)
        self._progress: CopyProgress = progress or NullProgress()
        self._retry = retry or pool.settings.retry

    # -- public ------------------------------------------------------------------------

    async def copy(self, requests: Sequence[CopyRequest], *, allow_tag_move: bool = True) -> CopyReport:
        """Copy every request by digest. Failures are per image and reported, never raised:
        the report says which images failed and why.

        Each image is planned as soon as its lookups finish and its blobs start moving at
        once, while other images are still being looked at; blobs stay deduplicated
        across the whole batch (copy/plan.py's Planner)."""
        started = time.monotonic()
        self._lookup = ReferrerLookup()  # tag listings of an earlier batch may be stale
        lookups = asyncio.Semaphore(self._concurrency * 2)
        slots = asyncio.Semaphore(self._concurrency)
        # Referrers' blobs (small: signatures, SBOMs) have slots of their own: queued behind
        # the images' layers they would hold back the referrer pushes, and the tags wait
        # for those.
        referrer_slots = asyncio.Semaphore(max(1, self._concurrency // 4))
        planner = Planner(allow_tag_move=allow_tag_move)
        tasks: dict[BlobKey, asyncio.Task[_BlobStats]] = {}

        def start(part: CopyPlan, slots: asyncio.Semaphore = slots) -> None:
            for transfer in part.transfers:
                dependency = tasks.get(transfer.after) if transfer.after else None
                tasks[transfer.key] = asyncio.ensure_future(self._transfer(transfer, dependency, slots))
            self._progress.planned(part)

        async def one(request: CopyRequest) -> ImageResult:
            try:
                image = await self._resolve(request, lookups, allow_tag_move, planner)
                part = planner.add(image)  # no await between planning and starting: one planner
            except Exception as error:
                failed = self._failed(request, error, started)
                self._progress.image_finished(failed)
                return failed
            start(part)
            plan = part.images[0]
            if self._referrers and image.source is not None and plan.status is not ImageStatus.TAG_CONFLICT:
                # The image's blobs move while its referrers are looked for.
                try:
                    source, state = await self._resolve_referrers(image, lookups, planner)
                    more = planner.add_referrers(plan, source, state)
                except Exception as error:
                    return await self._finish_image(plan, tasks, started, failure=error)
                start(CopyPlan(more.images, more.transfers), referrer_slots)
                plan = more.images[0]
            return await self._finish_image(plan, tasks, started)

        try:
            results = await asyncio.gather(*(one(r) for r in requests))
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        return CopyReport(list(results), time.monotonic() - started)

    async def resolve_digest(self, reader: RegistryReader, ref_repository: str, ref: str) -> str:
        head = await reader.head_manifest(ref_repository, ref)
        if head is None:
            raise NotFoundError(
                f"{reader.host}/{ref_repository}{'@' if ':' in ref else ':'}{ref} does not exist",
                hint="check the repository name and tag; list its tags with "
                f"`cloudops tags {reader.host}/{ref_repository}`",
            )
        return head.digest

    # -- resolve -----------------------------------------------------------------------

    def _sides(self, request: CopyRequest, lookups: asyncio.Semaphore, planner: Planner) -> _Sides:
        registry = request.destination.registry
        return _Sides(
            self._pool.reader(request.source.registry),
            self._pool.writer(registry),
            request.source.repository,
            request.destination.repository,
            _bounded(lookups),
            lambda digest: planner.moving(registry, digest),
        )

    async def _resolve(
        self, request: CopyRequest, lookups: asyncio.Semaphore, allow_tag_move: bool, planner: Planner
    ) -> ImageInput:
        src, dst, src_repo, dst_repo, limited, moving = self._sides(request, lookups, planner)

        async def source_digest() -> str:
            if request.source.digest:
                return request.source.digest
            return await limited(self.resolve_digest(src, src_repo, request.source.identifier))

        async def destination_tag() -> ManifestHead | None:
            if not request.destination.tag:
                return None
            return await limited(dst.head_manifest(dst_repo, request.destination.tag))

        # Both lookups at once: a re-run that finds the tag already there (the common case
        # of a Jenkins job run again) costs one round trip per registry, not two in a row.
        digest, head = await asyncio.gather(source_digest(), destination_tag(), return_exceptions=True)
        if isinstance(digest, BaseException):
            raise digest  # the source's error first: it is the one to fix
        if isinstance(head, BaseException):
            raise head
        wanted = request.destination.digest
        if wanted is not None and wanted != digest:
            raise InputError(
                f"destination {request.destination} names digest {wanted[:19]}, "
                f"but the source is {digest[:19]}",
                hint="a copy keeps the digest: drop @digest from the destination",
            )
        tag_digest = None
        up_to_date = False
        if request.destination.tag:
            tag_digest = head.digest if head else None
            up_to_date = tag_digest == digest
            if up_to_date and not self._referrers:
                return ImageInput(request, digest, DestinationState(tag_digest=tag_digest))
            if tag_digest is not None and not up_to_date and not allow_tag_move:
                return ImageInput(request, digest, DestinationState(tag_digest=tag_digest))

        root = await limited(src.get_manifest(src_repo, digest))
        source = SourceImage(root, walk_manifests(root, await fetch_tree(src, src_repo, root, limited)))
        if up_to_date:
            # The tag names the digest: its manifests and blobs are there (the registry
            # checked them when the tag was pushed). Only referrers may be missing.
            present = frozenset(m.digest for m in source.manifests)
            return ImageInput(request, digest, DestinationState(tag_digest, present), source)
        heads = await asyncio.gather(
            *(limited(dst.head_manifest(dst_repo, m.digest)) for m in source.manifests)
        )
        present_manifests = {m.digest for m, h in zip(source.manifests, heads, strict=True) if h is not None}
        blobs = await self._present_blobs(
            dst, dst_repo, source.image_manifests, present_manifests, limited, moving
        )
        return ImageInput(
            request,
            digest,
            DestinationState(tag_digest, frozenset(present_manifests), blobs),
            source,
        )

    async def _present_blobs(
        self,
        dst: RegistryReader,
        repository: str,
        manifests: Sequence[ImageManifest],
        present_manifests: set[str] | frozenset[str],
        limited: Limit,
        moving: Callable[[str], bool],
    ) -> frozenset[str]:
        """The blobs of ``manifests`` the destination holds (a present manifest's blobs are
        not asked about: the registry checked them when it was pushed; nor is a blob an
        earlier image of the batch moves into that registry: it is mounted from there)."""
        digests = list(
            dict.fromkeys(
                b.digest
                for m in manifests
                if m.digest not in present_manifests
                for b in m.blobs
                if not moving(b.digest)
            )
        )
        sizes = await asyncio.gather(*(limited(dst.blob_size(repository, d)) for d in digests))
        return frozenset(d for d, size in zip(digests, sizes, strict=True) if size is not None)

    async def _resolve_referrers(
        self, image: ImageInput, lookups: asyncio.Semaphore, planner: Planner
    ) -> tuple[SourceImage, DestinationState]:
        """What refers to the image at the source, and what the destination has of it.
        Runs while the image's own blobs already move."""
        assert image.source is not None
        request = image.request
        src, dst, src_repo, dst_repo, limited, moving = self._sides(request, lookups, planner)

        found = await self._lookup.find(src, src_repo, [m.digest for m in image.source.manifests], limited)
        source = replace(image.source, referrers=tuple(found.referrers), warnings=tuple(found.warnings))
        state = image.destination
        tags = [r.tag for r in source.referrers if r.tag is not None]
        # The image is not at the destination yet (not even by digest under another tag):
        # every referrer is pushed (a push of what the registry has is harmless, and the
        # fallback index is merged, never replaced), so what the destination lists, and
        # which of the referrers' small blobs it holds, is not worth asking. At worst,
        # after a run that failed midway, a signature's blob is uploaded again.
        image_absent = image.digest not in state.present_manifests

        async def listed_at_destination() -> frozenset[str]:
            if image_absent:
                return frozenset()
            return await self._lookup.listed(dst, dst_repo, subjects_of(source.referrers), limited)

        tag_heads, listed = await asyncio.gather(
            asyncio.gather(*(limited(dst.head_manifest(dst_repo, t)) for t in tags)),
            listed_at_destination(),
        )
        # Only what the destination lists may be there already (and is asked about): an
        # unlisted referrer is pushed whatever it holds, and a push of a manifest the
        # registry has is harmless.
        listed_manifests = [m for r in source.referrers if r.digest in listed for m in r.manifests]
        heads = await asyncio.gather(
            *(limited(dst.head_manifest(dst_repo, m.digest)) for m in listed_manifests)
        )
        present_manifests = state.present_manifests | {
            m.digest for m, h in zip(listed_manifests, heads, strict=True) if h is not None
        }
        theirs = [m for r in source.referrers for m in r.manifests]
        referrer_manifests = [m for m in theirs if isinstance(m, ImageManifest)]
        blobs: frozenset[str] = frozenset()
        if not image_absent:
            blobs = await self._present_blobs(
                dst, dst_repo, referrer_manifests, present_manifests, limited, moving
            )
        return source, replace(
            state,
            present_manifests=present_manifests,
            present_blobs=state.present_blobs | blobs,
            listed_referrers=listed,
            referrer_tags=tuple((t, h.digest) for t, h in zip(tags, tag_heads, strict=True) if h is not None),
        )

    # -- execute -----------------------------------------------------------------------

    async def _transfer(
        self,
        transfer: BlobTransfer,
        dependency: asyncio.Task[_BlobStats] | None,
        slots: asyncio.Semaphore,
    ) -> _BlobStats:
        if dependency is not None:
            # Wait outside the semaphore: holding a slot while waiting could deadlock.
            await asyncio.gather(dependency, return_exceptions=True)
        async with slots:
            dst = self._pool.writer(transfer.dest_registry)
            if transfer.mount_from is not None:
                try:
                    if await dst.mount_blob(transfer.dest_repository, transfer.digest, transfer.mount_from):
                        self._progress.blob_finished(transfer.key, "mounted")
                        return _BlobStats("mounted", 0)
                except RegistryError:
                    pass  # a failed shortcut falls back to a plain upload
            src = self._pool.reader(transfer.source_registry)
            first = True

            def advanced(nbytes: int) -> None:
                self._progress.blob_advanced(transfer.key, nbytes)

            async def stream_once() -> None:
                nonlocal first
                if not first:
                    self._progress.blob_restarted(transfer.key)
                first = False
                source = await src.get_blob(transfer.source_repository, transfer.digest)
                relay = BlobRelay(source, BlobVerifier(transfer), advanced)
                try:
                    await dst.put_blob(transfer.dest_repository, transfer.digest, relay.body(), transfer.size)
                finally:
                    relay.stop()

            await self._retry.run(stream_once)
            self._progress.blob_finished(transfer.key, "uploaded")
            return _BlobStats("uploaded", transfer.size)

    async def _finish_image(
        self,
        plan: ImagePlan,
        tasks: dict[BlobKey, asyncio.Task[_BlobStats]],
        started: float,
        *,
        failure: BaseException | None = None,
    ) -> ImageResult:
        """Wait for the plan's blobs, push its manifests (referrers before the tag), verify.
        ``failure``: looking for referrers failed: the image fails, nothing is pushed."""
        request = plan.request
        result = ImageResult(request, "up-to-date", plan.digest, plan.current_digest)
        result.warnings = list(plan.warnings)
        result.referrers = [
            {**r.as_dict(), "status": "present" if r.digest in plan.referrers_present else "copied"}
            for r in plan.referrers
        ]
        dst = self._pool.writer(request.destination.registry)
        early: asyncio.Task[int | None] | None = None
        try:
            if failure is not None:
                raise failure
            if plan.referrer_pushes and plan.status is ImageStatus.COPY:
                # A referrer may go in before its subject (distribution-spec, "Pushing
                # Manifests"): pushed while the image's own blobs still move, they cost the
                # copy nothing at its end.
                early = asyncio.ensure_future(self._push_referrers_early(dst, plan, tasks))
            if plan.status is ImageStatus.TAG_CONFLICT:
                raise TagConflictError(
                    f"{request.destination} already points at {plan.current_digest}, not {plan.digest}",
                    hint="tags never move: promote under a new tag",
                )
            if plan.status is ImageStatus.UP_TO_DATE and not plan.referrer_pushes:
                return result
            outcomes = await asyncio.gather(
                *(asyncio.shield(tasks[k]) for k in plan.blobs), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            result.blobs_skipped = plan.blobs_present
            for stats in outcomes:
                assert isinstance(stats, _BlobStats)
                if stats.outcome == "mounted":
                    result.blobs_mounted += 1
                else:
                    result.blobs_uploaded += 1
                    result.bytes_uploaded += stats.nbytes
            if plan.status is ImageStatus.UP_TO_DATE:
                # The tag is there already: only referrers made since the last copy move.
                result.manifests_pushed += await self._push_referrers(dst, plan)
                return result
            for push in plan.pushes[:-1]:
                await dst.put_manifest(push.repository, push.reference, push.raw, push.media_type)
                result.manifests_pushed += 1
            # Referrers before the tag: a tag never names an image whose signatures are
            # not all in.
            pushed = await early if early is not None else 0
            if pushed is None:
                pushed = await self._push_referrers_after_subject(dst, plan)
            result.manifests_pushed += pushed
            last = plan.pushes[-1]
            try:
                await dst.put_manifest(last.repository, last.reference, last.raw, last.media_type)
                result.manifests_pushed += 1
            except RegistryError:
                # Another run may have written the same digest under the tag meanwhile (an
                # immutable repository then refuses ours): that is success, not a write.
                if await self._tag_has(dst, plan):
                    result.status = "up-to-date"
                    return result
                raise
            await self._verify(dst, plan)
            result.status = "copied"
            return result
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError):
                raise
            failed = self._failed(request, error, started)
            failed.digest, failed.previous_digest = plan.digest, plan.current_digest
            result = failed  # what progress hears below: never the "up-to-date" it started as
            return failed
        finally:
            if early is not None:
                # Ended or not, its outcome is collected here: never left running, never an
                # exception nobody retrieved.
                early.cancel()
                await asyncio.gather(early, return_exceptions=True)
            result.seconds = time.monotonic() - started
            self._progress.image_finished(result)

    async def _push_referrers_early(
        self, dst: RegistryWriter, plan: ImagePlan, tasks: dict[BlobKey, asyncio.Task[_BlobStats]]
    ) -> int | None:
        """Push the plan's referrers as soon as their own blobs are in, each manifest push
        tried once (the fallback index, where one is needed, with the usual retries). None:
        not done (a blob failed, which the image's own wait reports, or a push
        failed: some registries refuse a referrer whose subject is not there yet, against
        the spec), so they go in again after the subject, with retries."""
        outcomes = await asyncio.gather(
            *(asyncio.shield(tasks[k]) for k in plan.referrer_blobs), return_exceptions=True
        )
        if any(isinstance(outcome, BaseException) for outcome in outcomes):
            return None
        try:
            return await self._push_referrers(dst, plan, retry=NO_RETRY)
        except RegistryError:
            return None

    async def _push_referrers_after_subject(self, dst: RegistryWriter, plan: ImagePlan) -> int:
        """The referrers again, in the order every registry takes: the image's root
        manifest by digest first (its tag waits for the referrers; where the destination
        is a digest, the root's own last push repeats it, harmlessly), then what refers to
        it."""
        root = plan.pushes[-1]
        await dst.put_manifest(root.repository, root.digest, root.raw, root.media_type)
        return 1 + await self._push_referrers(dst, plan)

    async def _push_referrers(
        self, dst: RegistryWriter, plan: ImagePlan, *, retry: RetryPolicy | None = None
    ) -> int:
        """Push the plan's referrers: the manifests below them first, then the referrers
        themselves (each step's pushes at once: they do not depend on each other); those
        the registry does not index itself (no OCI-Subject in its answer) are then added
        to their subjects' fallback tags."""
        below = [p for p in plan.referrer_pushes if p.subject is None and ":" in p.reference]
        tops = [p for p in plan.referrer_pushes if p not in below]
        await _all_settled(self._push_one(dst, p, retry) for p in below)
        confirmed = await _all_settled(self._push_one(dst, p, retry) for p in tops)
        unindexed: dict[str, list[dict[str, object]]] = {}
        for push, indexed in zip(tops, confirmed, strict=True):
            if push.subject is not None and not indexed:
                manifest = parse_manifest(push.raw, push.media_type)
                unindexed.setdefault(push.subject, []).append(index_entry(manifest))
        repository = plan.request.destination.repository
        await _all_settled(
            add_to_fallback_index(dst, repository, s, entries) for s, entries in unindexed.items()
        )
        return len(plan.referrer_pushes)

    async def _push_one(self, dst: RegistryWriter, push: ManifestPush, retry: RetryPolicy | None) -> bool:
        """One referrer push; True when the registry indexed it as a referrer (or it has
        no subject: nothing to index)."""
        if push.subject is not None:
            return await dst.put_referrer(
                push.repository, push.raw, push.media_type, push.subject, retry=retry
            )
        try:
            await dst.put_manifest(push.repository, push.reference, push.raw, push.media_type, retry=retry)
        except RegistryError as error:
            if ":" not in push.reference:  # a cosign tag (everything else is by digest)
                raise RegistryError(
                    f"{dst.host}/{push.repository}:{push.reference} could not be written: {error}",
                    hint="the destination holds other signatures under cosign's tag and the "
                    "repository refuses to move it (IMMUTABLE); sign with OCI 1.1 referrers "
                    "(`cloudops sign`, or cosign --registry-referrers-mode=oci-1-1)",
                ) from error
            raise
        return True

    async def _tag_has(self, dst: RegistryWriter, plan: ImagePlan) -> bool:
        if plan.request.destination.tag is None:
            return False
        try:
            head = await dst.head_manifest(plan.request.destination.repository, plan.request.destination.tag)
        except RegistryError:
            return False
        return head is not None and head.digest == plan.digest

    async def _verify(self, dst: RegistryWriter, plan: ImagePlan) -> None:
        """Read the destination back: the tag must now name the source digest."""
        reference = plan.request.destination.tag or plan.digest
        head = await dst.head_manifest(plan.request.destination.repository, reference)
        if head is None or head.digest != plan.digest:
            raise DigestMismatchError(
                f"after the copy, {plan.request.destination} names "
                f"{head.digest if head else 'nothing'} instead of {plan.digest}",
                hint="another writer changed the destination during the copy; run again",
            )

    def _failed(self, request: CopyRequest, error: BaseException, started: float) -> ImageResult:
        status: ResultStatus = "refused" if isinstance(error, RefusedError) else "failed"
        wrapped = (
            error if isinstance(error, CloudopsError) else CloudopsError(f"{type(error).__name__}: {error}")
        )
        return ImageResult(request, status, seconds=time.monotonic() - started, error=wrapped)


async def _all_settled(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Every call's result; when some failed, the first failure, raised only once all have
    ended (a plain gather would leave the others running on, past the caller's next step)."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]


def _bounded(lookups: asyncio.Semaphore) -> Limit:
    """Run a lookup under the batch's lookup semaphore."""

    async def limited(call: Awaitable[T]) -> T:
        async with lookups:
            return await call

    return limited


class BlobVerifier:
    """The sha256 and size of a blob's bytes as they pass (on the relay's reading thread).
    The relay (copy/relay.py) sends the last chunk only after :meth:`finish` passed, so a
    corrupt blob never reaches the registry whole and its upload is never committed."""

    def __init__(self, transfer: BlobTransfer):
        self._transfer = transfer
        self._hasher = hashlib.sha256()
        self._received = 0

    def update(self, chunk: memoryview) -> None:
        self._received += len(chunk)
        if self._received > self._transfer.size:
            raise _mismatch(self._transfer, f"more than its {self._transfer.size} bytes")
        self._hasher.update(chunk)  # releases the GIL: other blobs move meanwhile

    def finish(self) -> None:
        if self._received != self._transfer.size:
            raise _mismatch(self._transfer, f"{self._received} bytes instead of {self._transfer.size}")
        actual = "sha256:" + self._hasher.hexdigest()
        if actual != self._transfer.digest:
            raise _mismatch(self._transfer, f"bytes that hash to {actual[:19]}")


def _mismatch(transfer: BlobTransfer, what: str) -> DigestMismatchError:
    return DigestMismatchError(
        f"blob {transfer.digest[:19]} from {transfer.source_registry}/{transfer.source_repository} "
        f"served {what}",
        hint="the source registry holds corrupt content; the blob was not written",
    )
