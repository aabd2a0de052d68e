"""The one retry policy: bounded attempts and total time, exponential backoff with jitter,
honouring Retry-After. Used by the transport for requests that can be replayed, and by the
copy engine for a blob stream that broke mid-way (a stream cannot be replayed, the whole
blob is; the same split as s3transfer's)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cloudops.registry.errors import RegistryError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    """Tries in all, the first included."""
    total_seconds: float = 120.0
    """No retry starts after this much time since the first try."""
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        if retry_after is not None:
            # Never sooner than the registry asked, and spread out: requests throttled
            # together and retried at exactly Retry-After are throttled together again (a
            # throttled sandbox front showed blob PUTs losing to upload POSTs for ever).
            wait = max(retry_after, backoff)
            return float(min(wait * (1 + random.random() / 2), self.max_delay * 3))
        return float(backoff * (0.5 + random.random() / 2))

    def should_retry(self, error: BaseException) -> bool:
        # An error that already used up a policy's retries is not retried again by an
        # outer layer (the engine's whole-blob retry): attempts never multiply.
        return isinstance(error, RegistryError) and error.retryable and not error.exhausted

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return await operation()
            except RegistryError as error:
                if not self.should_retry(error):
                    raise
                pause = self.delay(attempt, error.retry_after)
                if attempt >= self.attempts or time.monotonic() - started + pause > self.total_seconds:
                    error.exhausted = True
                    raise
                await asyncio.sleep(pause)
                attempt += 1


NO_RETRY = RetryPolicy(attempts=1)
