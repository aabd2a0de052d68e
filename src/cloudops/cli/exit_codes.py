"""Exit codes, named in one place (docs/cli.md lists them for users)."""

from __future__ import annotations

from cloudops.errors import CloudopsError

OK = 0
"""Done."""
FAILED = 1
"""The operation was attempted and did not complete (network, registry, corrupt source)."""
USAGE = 2
"""Bad usage or input: a malformed reference, a missing image, wrong credentials, a broken file."""
REFUSED = 3
"""Refused by a guard rail (wrong account, tag move, skipped stage); nothing written."""
FINDINGS = 4
"""A check or audit found problems."""

_BY_KIND = {"input": USAGE, "failed": FAILED, "refused": REFUSED}


def for_error(error: CloudopsError) -> int:
    return _BY_KIND.get(error.kind, FAILED)
