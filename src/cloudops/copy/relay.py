"""A blob's bytes from the source's GET into the destination's PUT, proven on the way.

What the copy engine owns of a blob transfer (the HTTP of both sides is the registry
transport's, registry/transport.py): the bytes are read and hashed on a thread of their
own, a few chunks ahead of the sending, so one big layer moves at the speed of the slower
side, not at the sum of both; and the last chunk is held back until ``check`` has proven
the whole (size and sha256). A corrupt or short blob therefore never reaches the
destination whole: its PUT is cut before the declared Content-Length, and the upload is
never committed. Memory: at most BUFFERS + 2 chunks per blob in flight.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from cloudops.registry.http import READ_CHUNK, HttpResponse

BUFFERS = 4


class ChunkCheck(Protocol):
    """Verifies the bytes as they pass. ``finish`` raises when the whole is wrong."""

    def update(self, chunk: memoryview) -> None: ...
    def finish(self) -> None: ...


class BlobRelay:
    """Use as ``relay = BlobRelay(source, check, advanced)``, hand ``relay.body()`` to the
    PUT, and call ``relay.stop()`` when done (always: it is what frees the source)."""

    def __init__(
        self, source: HttpResponse, check: ChunkCheck, advanced: Callable[[int], None] | None = None
    ):
        self._source = source
        self._check = check
        self._ready: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=BUFFERS)
        self._stopped = threading.Event()
        self._released = False
        self._report: Callable[[int], None] | None = None
        if advanced is not None:
            loop, callback = asyncio.get_running_loop(), advanced

            def report(nbytes: int) -> None:
                loop.call_soon_threadsafe(callback, nbytes)

            self._report = report
        self._reader = threading.Thread(target=self._read, name="cloudops-blob-read", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """The reading thread: chunks, then None once ``check`` passed the whole; or the
        exception that ended it (raised by the sending side)."""
        try:
            while True:
                chunk = self._source.read(READ_CHUNK)
                if not chunk or self._stopped.is_set():
                    break
                self._check.update(memoryview(chunk))
                self._ready.put(chunk)
            if self._stopped.is_set():
                return
            self._check.finish()
            self._source.release()
            self._released = True
            self._ready.put(None)
        except BaseException as exc:
            if not self._stopped.is_set():
                self._ready.put(exc)

    def body(self) -> Iterator[bytes]:
        """The PUT's body, consumed on the PUT's worker thread. Each chunk is sent before
        the next is asked for, so holding one back holds back the commit."""
        pending: bytes | None = None
        try:
            while True:
                item = self._ready.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    break  # every byte read, and ``check`` passed the whole
                if pending is not None:
                    yield pending
                    self._advanced(len(pending))
                pending = item
            if pending is not None:
                yield pending
                self._advanced(len(pending))
        except BaseException:
            self.stop()
            raise

    def _advanced(self, nbytes: int) -> None:
        if self._report is not None:
            self._report(nbytes)

    def stop(self) -> None:
        """End the reading (a blocked read fails at once) and free the source."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if not self._released:
            self._source.abort()
        while self._reader.is_alive():
            while True:  # a reader blocked on a full queue takes the room it needs
                try:
                    self._ready.get_nowait()
                except queue.Empty:
                    break
            self._reader.join(0.05)
        if not self._released:
            self._source.close()
