"""Settings read from the environment, kept free of heavy imports (boto3): the copy
command loads this without loading the AWS layer."""

from __future__ import annotations

import os

from cloudops.errors import InputError
from cloudops.registry.retry import RetryPolicy


def retry_policy() -> RetryPolicy:
    """Bounded retries: $CLOUDOPS_RETRY_ATTEMPTS tries in all (default 5) within
    $CLOUDOPS_RETRY_SECONDS (default 120) of the first one."""

    def number(var: str, default: float) -> float:
        raw = os.environ.get(var)
        if not raw:
            return default
        try:
            return max(0.0, float(raw))
        except ValueError:
            raise InputError(f"${var} must be a number, not {raw!r}") from None

    return RetryPolicy(
        attempts=max(1, int(number("CLOUDOPS_RETRY_ATTEMPTS", 5))),
        total_seconds=number("CLOUDOPS_RETRY_SECONDS", 120.0),
    )
