"""`cloudops tags`: the tags of one repository, newest first by the version sort of
`cloudops status` (matrix.version_key).

Tags come from a registry and are hostile input: a name that is not a valid tag
(the OCI grammar, refs.validate_tag) is dropped and counted, never handed on. Reading
stops after MAX_TAGS tags, and the result says it was cut. Tags that carry referrers
(``sha256-<hex>`` and cosign's ``.sig``/``.att``/``.sbom``: signatures and SBOMs, not
versions) are kept apart from the image tags, as `status` and backfill keep them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloudops.errors import CloudopsError
from cloudops.referrers import is_referrer_tag
from cloudops.refs import Reference, validate_tag
from cloudops.registry import NotFoundError, RegistrySession
from cloudops.versions import version_key

MAX_TAGS = 100_000
"""Tags read from one repository before reading stops."""

PAGE_SIZE = 1000
"""Tags asked for per page (the registry may send fewer and link the next page)."""


@dataclass(frozen=True)
class TagList:
    repository: str
    """REGISTRY/REPOSITORY."""
    tags: tuple[str, ...]
    """Valid tags, newest first, each once."""
    invalid: int = 0
    """Names the registry listed that are not valid tags: dropped, not shown."""
    truncated: bool = False
    """Reading stopped at the bound: the repository has more tags than listed."""
    limit: int = MAX_TAGS
    referrer_tags: tuple[str, ...] = ()
    """Tags that carry referrers (signatures, SBOMs), sorted; not in ``tags``."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "tags": list(self.tags),
            "referrer_tags": list(self.referrer_tags),
            "invalid_tags": self.invalid,
            "truncated": self.truncated,
        }


def _is_tag(name: str) -> bool:
    try:
        validate_tag(name)
    except CloudopsError:
        return False
    return True


def sort_tags(
    repository: str, names: Iterable[str], *, limit: int = MAX_TAGS, truncated: bool = False
) -> TagList:
    """Pure: drop and count the names that are not tags, keep at most ``limit`` of the
    rest (in the order read; more means the list was cut), set the referrer tags apart,
    and sort the others newest first."""
    valid: list[str] = []
    seen: set[str] = set()
    invalid = 0
    for name in names:
        if not isinstance(name, str) or not _is_tag(name):
            invalid += 1
        elif name not in seen:
            seen.add(name)
            valid.append(name)
    if len(valid) > limit:
        valid, truncated = valid[:limit], True
    referrers = sorted(t for t in valid if is_referrer_tag(t))
    ordered = sorted((t for t in valid if not is_referrer_tag(t)), key=version_key, reverse=True)
    return TagList(repository, tuple(ordered), invalid, truncated, limit, tuple(referrers))


async def list_repository_tags(
    pool: RegistrySession, reference: Reference, *, limit: int = MAX_TAGS, page_size: int = PAGE_SIZE
) -> TagList:
    """The tags of ``reference``'s repository (its tag or digest, if any, is ignored),
    read through ``pool`` (credentials, TLS and retries as for a copy), newest first.

    Raises the registry's typed errors: NotFoundError (no such repository) and
    AuthenticationError/AccessDeniedError are input errors (exit 2); an unreachable
    registry or a 5xx after retries is a failure (exit 1)."""
    reader = pool.reader(reference.registry)
    try:
        names = await reader.list_tags(reference.repository, page_size, limit=limit)
    except NotFoundError as error:
        raise NotFoundError(
            f"repository {reference.name} does not exist",
            hint="check the registry host and the repository path (REGISTRY/REPOSITORY); "
            "an ECR repository name includes its namespace, e.g. ep/cortex",
            status=error.status,
            codes=error.codes,
        ) from None
    return sort_tags(reference.name, names, limit=limit, truncated=len(names) > limit)
