"""Reading and writing one registry through the distribution API
(https://github.com/opencontainers/distribution-spec/blob/main/spec.md).

:class:`RegistryReader` can only read. :class:`RegistryWriter` adds the writes and is
handed out only for a copy's destination, so a source can never be written by mistake.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

from cloudops.oci import (
    ACCEPT_MANIFESTS,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    ImageIndex,
    Manifest,
    ManifestError,
    parse_manifest,
    sha256_digest,
)
from cloudops.registry.errors import DigestMismatchError, RegistryError
from cloudops.registry.http import READ_CHUNK, HttpResponse
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.transport import RegistryTransport, Scope


@dataclass(frozen=True, slots=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int


class RegistryReader:
    """Read-only access to one registry host."""

    def __init__(self, transport: RegistryTransport):
        self._transport = transport

    @property
    def host(self) -> str:
        return self._transport.host

    async def ping(self) -> None:
        """GET /v2/: reachability and credentials, before any real work."""
        await self._transport.request("GET", "/v2/", what="the API version check")

    async def head_manifest(self, repository: str, reference: str) -> ManifestHead | None:
        """The digest behind a tag or digest, or None when there is no such manifest."""
        response = await self._transport.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            what=f"manifest {repository}:{reference}",
            scopes=(Scope(repository),),
            headers={"Accept": ACCEPT_MANIFESTS},
            expect=(200, 404),
        )
        if response.status == 404:
            return None
        digest = response.headers.get("docker-content-digest")
        if not digest:
            # Some registries omit the header on HEAD: read the manifest to learn it.
            manifest = await self.get_manifest(repository, reference)
            return ManifestHead(manifest.digest, manifest.media_type, len(manifest.raw))
        return ManifestHead(
            digest,
            response.headers.get("content-type", "").split(";")[0],
            _int_header(response, "content-length"),
        )

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch and parse a manifest; when ``reference`` is a digest, the bytes are
        verified against it. Manifests over the 4 MiB limit are refused: at most 4 MiB + 1
        byte of the answer is ever read (memory stays bounded whatever is sent)."""
        manifest = await self._fetch_manifest(repository, reference, missing_ok=False)
        assert manifest is not None
        return manifest

    async def find_manifest(self, repository: str, reference: str) -> Manifest | None:
        """:meth:`get_manifest`, or None when there is no such manifest (one request, where
        a HEAD first would be two)."""
        return await self._fetch_manifest(repository, reference, missing_ok=True)

    async def referrers(self, repository: str, digest: str) -> ImageIndex | None:
        """The OCI 1.1 referrers API: the index of manifests whose subject is ``digest``,
        or None when the registry does not serve the API (the spec's 404; 400 and 405 from
        registries that route the path elsewhere). Only the first page is read when the
        registry paginates past the 4 MiB manifest bound (tens of thousands of entries)."""
        response = await self._transport.request(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            what=f"the referrers of {repository}@{digest[:19]}",
            scopes=(Scope(repository),),
            headers={"Accept": OCI_INDEX},
            expect=(200, 400, 404, 405),
            max_body=MAX_MANIFEST_BYTES,
        )
        if response.status != 200:
            return None
        if response.truncated:
            raise ManifestError(
                f"{self.host} listed more referrers of {repository}@{digest[:19]} than 4 MiB holds",
                hint="run with --no-referrers to copy the image without them",
            )
        index = parse_manifest(response.body, OCI_INDEX)
        if not isinstance(index, ImageIndex):
            raise ManifestError(
                f"{self.host} answered the referrers of {repository}@{digest[:19]} with a manifest, "
                "not an index",
                hint="the registry's referrers API is broken; run with --no-referrers",
            )
        return index

    async def _fetch_manifest(self, repository: str, reference: str, *, missing_ok: bool) -> Manifest | None:
        what = f"manifest {repository}{'@' if ':' in reference else ':'}{reference}"
        response = await self._transport.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            what=what,
            scopes=(Scope(repository),),
            headers={"Accept": ACCEPT_MANIFESTS},
            expect=(200, 404) if missing_ok else (200,),
            max_body=MAX_MANIFEST_BYTES,
        )
        if response.status == 404:
            return None
        declared = _int_header(response, "content-length")
        if response.truncated or declared > MAX_MANIFEST_BYTES:
            size = f" is {declared} bytes," if declared > MAX_MANIFEST_BYTES else " is"
            raise ManifestError(
                f"{what} on {self.host}{size} over the 4 MiB manifest limit",
                hint="ECR refuses manifests over 4 MiB",
            )
        manifest = parse_manifest(response.body, response.headers.get("content-type"))
        expected = reference if ":" in reference else response.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != manifest.digest:
            raise DigestMismatchError(
                f"{what} on {self.host} does not match its digest (got {manifest.digest})",
                hint="the registry served corrupt or altered content; nothing was copied",
            )
        return manifest

    async def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob in ``repository``, or None when it is not there."""
        response = await self._transport.request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            what=f"blob {digest[:19]} in {repository}",
            scopes=(Scope(repository),),
            expect=(200, 404),
            follow_redirects=True,
        )
        if response.status == 404:
            return None
        return _int_header(response, "content-length")

    async def get_blob(self, repository: str, digest: str) -> HttpResponse:
        """Open a blob for reading: the answer's body is left unread, to be read on a
        worker thread (``read``), then ``release``d, or ``close``d when given up. The
        redirect ECR answers with (to S3) is followed without the credentials."""
        return await self._transport.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            what=f"blob {digest[:19]} in {repository}",
            scopes=(Scope(repository),),
            stream=True,
            follow_redirects=True,
            blob=True,
        )

    @asynccontextmanager
    async def open_blob(self, repository: str, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream a blob's bytes, unverified (hash them if they matter):
        ``async with reader.open_blob(repo, digest) as chunks: async for chunk in chunks``.
        Each chunk is read on a worker thread; memory stays bounded. Leaving the block
        early gives the rest up."""
        response = await self.get_blob(repository, digest)
        finished = False

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal finished
            while True:
                chunk = await self._transport.http.run(lambda: response.read(READ_CHUNK))
                if not chunk:
                    finished = True
                    return
                yield chunk

        try:
            yield chunks()
        finally:
            if finished:
                response.release()
            else:
                response.close()

    async def list_tags(
        self, repository: str, page_size: int = 1000, *, limit: int | None = None
    ) -> list[str]:
        """Every tag of a repository, following the Link header's pagination. With
        ``limit``, reading stops at the first page that takes the count past ``limit``
        (the caller sees ``len(tags) > limit``: the list was cut). A page with no tags
        ends the list even if it links a next one, so a registry cannot keep a reader
        paging forever."""
        tags: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list"
        params: dict[str, str] | None = {"n": str(page_size)}
        what = f"the tag list of {repository}"
        while path:
            # A Link to the next page is checked like any URL (transport.url, trust.py):
            # a page on another host or over downgraded http is refused, not fetched.
            response = await self._transport.request(
                "GET", path, what=what, scopes=(Scope(repository),), params=params
            )
            what = f"the next page of the tag list of {repository}"
            try:
                doc = response.json()
            except ValueError:
                raise RegistryError(f"{self.host} returned a tag list that is not JSON") from None
            if not isinstance(doc, dict):
                raise RegistryError(f"{self.host} returned a tag list that is not a JSON object")
            page = doc.get("tags") or []
            page = [t for t in page if isinstance(t, str)] if isinstance(page, list) else []
            tags.extend(page)
            if not page or (limit is not None and len(tags) > limit):
                break
            path = _next_link(response.headers.get("link"))
            params = None
        return tags


class RegistryWriter(RegistryReader):
    """Read and write access to one registry host (a copy's destination)."""

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount. True when mounted; False when the registry declined
        (202: it opened an upload instead, which is cancelled) and the caller must upload."""
        response = await self._transport.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            what=f"mount of blob {digest[:19]} into {repository}",
            scopes=(Scope(repository, push=True), Scope(from_repository)),
            params={"mount": digest, "from": from_repository},
            expect=(201, 202),
        )
        if response.status == 201:
            return True
        location = response.headers.get("location")
        if location:
            # A Location on another host (or a downgrade to http) is refused before the
            # cancel is sent (trust.py); CredentialTargetRefused is no RegistryError, so
            # neither this suppress nor the engine's mount fallback hides it.
            self._transport.url(location, what="the Location of a declined mount")
            # An abandoned upload session expires on its own if the cancel fails.
            with contextlib.suppress(RegistryError):
                await self._transport.request(
                    "DELETE",
                    location,
                    what="cancel of an unused upload",
                    scopes=(Scope(repository, push=True),),
                    expect=(204, 404, 200, 202),
                )
        return False

    async def open_upload(self, repository: str, digest: str) -> str:
        """POST to open an upload session; returns the URL of its one PUT, which carries
        the whole blob and commits it with ?digest=. ECR may drop a second PATCH, and
        distribution ignores the body of a POST with ?digest= (ECR-NOTES.md), so neither
        is used."""
        what = f"upload of blob {digest[:19]} into {repository}"
        opened = await self._transport.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            what=what,
            scopes=(Scope(repository, push=True),),
            expect=(202,),
        )
        location = opened.headers.get("location")
        if not location:
            raise RegistryError(f"{self.host} opened an upload without a Location header")
        # The Location comes from the registry's answer: url() refuses one on another host
        # or downgraded to http before the credentials and the blob bytes go there.
        location = self._transport.url(location, what="the Location of a blob upload")
        return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})

    async def put_blob(self, repository: str, digest: str, body: bytes | Iterable[bytes], size: int) -> None:
        """Open an upload and PUT ``size`` bytes of ``body`` into it, committed under
        ``digest``. A streamed body is sent once (it cannot be replayed): the caller
        retries the whole blob. Cutting the body short leaves no blob behind."""
        url = await self.open_upload(repository, digest)
        response = await self._transport.request(
            "PUT",
            url,
            what=f"upload of blob {digest[:19]} into {repository}",
            scopes=(Scope(repository, push=True),),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=body,
            expect=(201,),
            replayable=isinstance(body, bytes),
            blob=not isinstance(body, bytes),
        )
        self._check_stored(response.headers.get("docker-content-digest"), digest)

    async def upload_blob(self, repository: str, digest: str, data: bytes) -> None:
        """Upload a blob held in memory (small synthetic content: the sandbox's seed)."""
        await self.put_blob(repository, digest, data, len(data))

    def _check_stored(self, stored: str | None, digest: str) -> None:
        if stored and stored != digest:
            raise DigestMismatchError(
                f"{self.host} stored blob {digest[:19]} under another digest {stored[:19]}"
            )

    async def put_manifest(
        self,
        repository: str,
        reference: str,
        raw: bytes,
        media_type: str,
        *,
        retry: RetryPolicy | None = None,
    ) -> str:
        """Push manifest bytes under a tag or digest; returns the digest the registry
        stored, which must be the sha256 of ``raw``. ``retry``: another policy for this push."""
        stored, _ = await self._put_manifest(repository, reference, raw, media_type, retry=retry)
        return stored

    async def put_referrer(
        self, repository: str, raw: bytes, media_type: str, subject: str, *, retry: RetryPolicy | None = None
    ) -> bool:
        """Push a manifest that has a ``subject``, by its digest. True when the registry
        answered ``OCI-Subject: <subject>``: it indexes referrers itself (the API). False
        means the client must add it to the referrers tag schema's index (the spec's rule
        for "Pushing Manifests with Subject"). ``retry``: another policy for this push."""
        digest = sha256_digest(raw)
        _, response = await self._put_manifest(repository, digest, raw, media_type, retry=retry)
        return response.headers.get("oci-subject") == subject

    async def _put_manifest(
        self,
        repository: str,
        reference: str,
        raw: bytes,
        media_type: str,
        *,
        retry: RetryPolicy | None = None,
    ) -> tuple[str, HttpResponse]:
        what = f"push of manifest {repository}{'@' if ':' in reference else ':'}{reference}"
        response = await self._transport.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            what=what,
            scopes=(Scope(repository, push=True),),
            headers={"Content-Type": media_type},
            body=raw,
            expect=(201, 200),
            retry=retry,
        )
        expected = sha256_digest(raw)
        stored = response.headers.get("docker-content-digest") or expected
        if stored != expected:
            raise DigestMismatchError(
                f"{self.host} stored {what} under digest {stored}, expected {expected}",
                hint="the registry converted the manifest; the copy would not be by digest",
            )
        return stored, response


def _next_link(header: str | None) -> str | None:
    """The target of ``Link: </v2/...>; rel="next"``."""
    if not header:
        return None
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                return part[start + 1 : end]
    return None


def _int_header(response: HttpResponse, name: str) -> int:
    """A numeric header of a registry's answer, 0 when absent or not a number."""
    value = response.headers.get(name) or ""
    return int(value) if value.isdigit() and len(value) < 19 else 0
