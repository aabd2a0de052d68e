"""The registry client's reading API against a real registry: a blob streamed to the
caller (bigger than any buffer the transport keeps), stopping early, a missing blob."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

import pytest

from cloudops.registry import NotFoundError, RegistryReader, RegistrySession, TransportSettings
from tests.conftest import Registry
from tests.support.images import Pusher, make_image, random_layer

MiB = 1024 * 1024


def _with_reader(registry: Registry, work: Callable[[RegistryReader], Awaitable[object]]) -> object:
    host = registry.url.split("://", 1)[1]

    async def go() -> object:
        async with RegistrySession(settings=TransportSettings.build([host])) as pool:
            return await work(pool.reader(host))

    return asyncio.run(go())


@pytest.fixture
def big_layer(registry: Registry) -> tuple[str, int]:
    layer = random_layer(12 * MiB)  # over the transport's 8 MiB cap for non-blob bodies
    Pusher(registry.url).push("ep/cortex", "big", make_image([layer]))
    return layer.digest, len(layer.data)


def test_a_blob_streams_whole_and_hashes_to_its_digest(
    registry: Registry, big_layer: tuple[str, int]
) -> None:
    digest, size = big_layer

    async def read(reader: RegistryReader) -> tuple[str, int, int]:
        hasher, total, largest = hashlib.sha256(), 0, 0
        async with reader.open_blob("ep/cortex", digest) as chunks:
            async for chunk in chunks:
                hasher.update(chunk)
                total += len(chunk)
                largest = max(largest, len(chunk))
        return "sha256:" + hasher.hexdigest(), total, largest

    got, total, largest = _with_reader(registry, read)  # type: ignore[misc]
    assert (got, total) == (digest, size)
    assert largest <= 1 * MiB  # streamed in chunks, never whole


def test_leaving_a_blob_read_early_stops_it_at_once(registry: Registry, big_layer: tuple[str, int]) -> None:
    digest, _ = big_layer

    async def first_chunk(reader: RegistryReader) -> int:
        async with reader.open_blob("ep/cortex", digest) as chunks:
            async for chunk in chunks:
                return len(chunk)
        return 0

    started = time.monotonic()
    assert _with_reader(registry, first_chunk) == 1 * MiB
    assert time.monotonic() - started < 5  # the pool closed without waiting on the reader


def test_a_missing_blob_is_not_found(registry: Registry, big_layer: tuple[str, int]) -> None:
    async def read(reader: RegistryReader) -> None:
        async with reader.open_blob("ep/cortex", "sha256:" + "0" * 64) as chunks:
            async for _ in chunks:
                pass

    with pytest.raises(NotFoundError):
        _with_reader(registry, read)
