"""Reading and writing one registry through the distribution API
(https://github.com/opencontainers/distribution-spec/blob/main/spec.md).

:class:`RegistryReader` can only read. :class:`RegistryWriter` adds the writes and is
handed out only for a copy's destination, so a source can never be written by mistake.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from cloudops.oci import (
    ACCEPT_MANIFESTS,
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    parse_manifest,
)
from cloudops.registry.bulk import REDIRECTS, BlobEndpoint, ChunkCheck, move_blob, read_blob
from cloudops.registry.errors import DigestMismatchError, RegistryError
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
        if response.status_code == 404:
            return None
        digest = response.headers.get("docker-content-digest")
        if not digest:
            # Some registries omit the header on HEAD: read the manifest to learn it.
            manifest = await self.get_manifest(repository, reference)
            return ManifestHead(manifest.digest, manifest.media_type, len(manifest.raw))
        return ManifestHead(
            digest,
            response.headers.get("content-type", "").split(";")[0],
            int(response.headers.get("content-length") or 0),
        )

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch and parse a manifest; when ``reference`` is a digest, the bytes are
        verified against it. Manifests over the 4 MiB limit are refused: by their
        Content-Length before the body is read, else once 4 MiB have arrived. The wire below
        reads at most 8 MiB + 1 of any answer that is not a blob (wire.MAX_BODY), which is
        what bounds memory; a per-request limit belongs to the urllib3 transport (issue 13)."""
        what = f"manifest {repository}{'@' if ':' in reference else ':'}{reference}"
        response = await self._transport.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            what=what,
            scopes=(Scope(repository),),
            headers={"Accept": ACCEPT_MANIFESTS},
            stream=True,
        )
        try:
            declared = int(response.headers.get("content-length") or 0)
            if declared > MAX_MANIFEST_BYTES:
                raise ManifestError(
                    f"{what} on {self.host} is {declared} bytes, over the 4 MiB manifest limit",
                    hint="ECR refuses manifests over 4 MiB",
                )
            body = bytearray()
            async for chunk in response.aiter_raw():
                body.extend(chunk)
                if len(body) > MAX_MANIFEST_BYTES:
                    raise ManifestError(
                        f"{what} on {self.host} is over the 4 MiB manifest limit",
                        hint="ECR refuses manifests over 4 MiB",
                    )
        except httpx.HTTPError as exc:
            raise RegistryError(f"reading {what} from {self.host} broke: {type(exc).__name__}") from None
        finally:
            await response.aclose()
        raw = bytes(body)
        manifest = parse_manifest(raw, response.headers.get("content-type"))
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
        if response.status_code == 404:
            return None
        return int(response.headers.get("content-length") or 0)

    async def blob_endpoint(self, repository: str, digest: str) -> BlobEndpoint:
        """Where a blob's bytes are read from, with credentials for them: the bulk path
        (registry/bulk.py) reads them on a worker thread. When this transport holds no
        credentials for the repository yet (or does not know yet whether an insecure host
        speaks TLS), a HEAD of the blob finds out first."""
        path = f"/v2/{repository}/blobs/{digest}"
        what = f"blob {digest[:19]} in {repository}"
        scopes = (Scope(repository),)
        headers = self._transport.auth_headers(scopes)
        if headers is None or not self._transport.scheme_known:
            await self._transport.request(
                "HEAD", path, what=what, scopes=scopes, expect=(200, *REDIRECTS), follow_redirects=False
            )
            headers = self._transport.auth_headers(scopes) or {}
        return self._endpoint(path, headers, what)

    @asynccontextmanager
    async def open_blob(self, repository: str, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream a blob's bytes, unverified (hash them if they matter):
        ``async with reader.open_blob(repo, digest) as chunks: async for chunk in chunks``.
        The bytes are read on a worker thread (registry/bulk.py); memory stays bounded."""
        source = await self.blob_endpoint(repository, digest)
        async with read_blob(self._transport.wire, source) as chunks:
            yield chunks

    def _endpoint(self, url: str, headers: dict[str, str], what: str) -> BlobEndpoint:
        # The bulk path (bulk.py) sends these headers and bytes as is: the URL passes the
        # same check as every other request (transport.url, trust.py).
        return BlobEndpoint(
            self._transport.url(url, what=what),
            headers,
            self.host,
            what,
            self._transport.verify,
            self._transport.forget_credentials,
        )

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
        if response.status_code == 201:
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

    async def _open_upload(self, repository: str, digest: str) -> BlobEndpoint:
        """POST to open an upload session: the returned endpoint is its one PUT, which
        carries the whole blob and commits it with ?digest=. ECR may drop a second PATCH,
        and distribution ignores the body of a POST with ?digest= (ECR-NOTES.md), so
        neither is used."""
        what = f"upload of blob {digest[:19]} into {repository}"
        scopes = (Scope(repository, push=True),)
        opened = await self._transport.request(
            "POST", f"/v2/{repository}/blobs/uploads/", what=what, scopes=scopes, expect=(202,)
        )
        location = opened.headers.get("location")
        if not location:
            raise RegistryError(f"{self.host} opened an upload without a Location header")
        # The Location comes from the registry's answer: url() refuses one on another host
        # or downgraded to http before the credentials and the blob bytes go there.
        location = self._transport.url(location, what="the Location of a blob upload")
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        return self._endpoint(str(url), self._transport.auth_headers(scopes) or {}, what)

    async def receive_blob(
        self,
        source: BlobEndpoint,
        repository: str,
        digest: str,
        size: int,
        check: ChunkCheck,
        advanced: Callable[[int], None] | None = None,
    ) -> None:
        """Copy a blob from ``source`` (another registry's :meth:`blob_endpoint`) into
        ``repository``, every chunk passed through ``check`` on the way. The upload is
        committed only when the last chunk is sent, after ``check`` has passed the
        whole; any failure leaves no blob behind."""
        target = await self._open_upload(repository, digest)
        answered = await move_blob(self._transport.wire, source, target, size, check, advanced)
        self._check_stored(answered.get("docker-content-digest"), digest)

    async def upload_blob(self, repository: str, digest: str, data: bytes) -> None:
        """Upload a blob held in memory (small synthetic content: the sandbox's seed)."""
        target = await self._open_upload(repository, digest)
        response = await self._transport.request(
            "PUT",
            target.url,
            what=target.what,
            scopes=(Scope(repository, push=True),),
            headers={"Content-Type": "application/octet-stream"},
            content=data,
            expect=(201,),
        )
        self._check_stored(response.headers.get("docker-content-digest"), digest)

    def _check_stored(self, stored: str | None, digest: str) -> None:
        if stored and stored != digest:
            raise DigestMismatchError(
                f"{self.host} stored blob {digest[:19]} under another digest {stored[:19]}"
            )

    async def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """Push manifest bytes under a tag or digest; returns the digest the registry
        stored, which must be the sha256 of ``raw``."""
        what = f"push of manifest {repository}{'@' if ':' in reference else ':'}{reference}"
        response = await self._transport.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            what=what,
            scopes=(Scope(repository, push=True),),
            headers={"Content-Type": media_type},
            content=raw,
            expect=(201, 200),
        )
        expected = "sha256:" + hashlib.sha256(raw).hexdigest()
        stored = response.headers.get("docker-content-digest") or expected
        if stored != expected:
            raise DigestMismatchError(
                f"{self.host} stored {what} under digest {stored}, expected {expected}",
                hint="the registry converted the manifest; the copy would not be by digest",
            )
        return stored


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
