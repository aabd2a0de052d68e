"""The bulk data path: blob bodies streamed over aiohttp, everything else over httpx.

A bulk copy is CPU-bound in the HTTP stack (2 cores, Python): streaming 272 MB through
httpx costs 1.3-1.7 CPU-seconds, through aiohttp 0.5-0.7 (measured for
benchmarks/copy_bench.py). So the two requests that carry blob bytes (GET of a blob, the
one PUT of an upload) go through aiohttp, with the credentials the httpx transport already
established (the POST that opens an upload, the manifest reads before a blob read). A 401
or an expired-token 403 here is raised as retryable: the engine's whole-blob retry then
re-authenticates through httpx. aiohttp is imported only when a blob actually moves.
"""

from __future__ import annotations

import importlib
import ssl
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from cloudops.registry.errors import (
    AuthenticationError,
    RegistryError,
    RegistryUnreachableError,
    TokenExpiredError,
    error_for_status,
)

if TYPE_CHECKING:
    import aiohttp

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 * 1024


_preloading: threading.Thread | None = None


def preload_bulk_path() -> None:
    """Import aiohttp on a background thread (once). Its import costs ~0.4 s of CPU; done
    while the engine is still waiting on registry lookups, it overlaps them."""
    global _preloading
    if _preloading is None and "aiohttp" not in sys.modules:
        _preloading = threading.Thread(target=importlib.import_module, args=("aiohttp",), daemon=True)
        _preloading.start()


class BulkSession:
    """One aiohttp session per registry host, created on first use."""

    def __init__(self, verify: ssl.SSLContext | bool, connections: int, read_timeout: float):
        self._verify = verify
        self._connections = connections
        self._read_timeout = read_timeout
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            # aiohttp: True = verify with the system CAs, False = no verification.
            ssl_arg: ssl.SSLContext | bool = self._verify
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=ssl_arg),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._read_timeout),
                auto_decompress=False,
                headers={"User-Agent": "cloudops"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def get(
        self, url: str, headers: dict[str, str], *, host: str, what: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """GET a blob, following redirects by hand so that credentials never leave the
        registry's own host (ECR redirects blob reads to S3, which refuses a second auth)."""
        import aiohttp

        session = self._get()
        origin = urlsplit(url).netloc
        current, current_headers = url, dict(headers)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response = await session.get(current, headers=current_headers, allow_redirects=False)
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    target = urljoin(str(response.url), response.headers["Location"])
                    response.release()
                    if urlsplit(target).netloc != origin:
                        current_headers = {
                            k: v for k, v in current_headers.items() if k.lower() != "authorization"
                        }
                    current = target
                    continue
                break
            else:
                raise RegistryError(f"{host}: too many redirects reading {what}")
            if response.status != 200:
                raise await _error(response, host, what)
            try:
                yield _chunks(response, host, what)
            finally:
                response.release()
        except aiohttp.ClientError as exc:
            raise _broken(exc, host, what) from None

    async def put(
        self, url: str, headers: dict[str, str], body: AsyncIterator[bytes], *, host: str, what: str
    ) -> dict[str, str]:
        """PUT a streamed body; returns the response headers of the 201."""
        import aiohttp

        raised: list[BaseException] = []

        async def watched() -> AsyncIterator[bytes]:
            # aiohttp may wrap an exception raised by the body; keep ours (a digest
            # mismatch must surface as itself).
            try:
                async for chunk in body:
                    yield chunk
            except BaseException as exc:
                raised.append(exc)
                raise

        try:
            async with self._get().put(url, headers=headers, data=watched()) as response:
                if response.status != 201:
                    raise await _error(response, host, what)
                return {k.lower(): v for k, v in response.headers.items()}
        except aiohttp.ClientError as exc:
            if raised:
                raise raised[0] from None
            raise _broken(exc, host, what) from None
        except Exception:
            if raised:
                raise raised[0] from None
            raise


async def _chunks(response: Any, host: str, what: str) -> AsyncIterator[bytes]:
    import aiohttp

    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
    except aiohttp.ClientError as exc:
        raise _broken(exc, host, what) from None


async def _error(response: Any, host: str, what: str) -> RegistryError:
    body = await response.content.read(MAX_ERROR_BODY)
    error = error_for_status(
        response.status, body, what=what, host=host, retry_after=response.headers.get("Retry-After")
    )
    if isinstance(error, AuthenticationError | TokenExpiredError) or (
        response.status == 403 and not error.codes
    ):
        # Credentials set up over httpx went stale: the whole-blob retry re-authenticates.
        error.retryable = True
    return error


def _broken(exc: BaseException, host: str, what: str) -> RegistryUnreachableError:
    return RegistryUnreachableError(
        f"{what} on {host} broke ({type(exc).__name__})",
        hint="the connection dropped mid-blob; retries ran out",
    )
