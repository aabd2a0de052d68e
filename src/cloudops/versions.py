"""How version tags sort, newest first: one rule for status, tags, backfill and rollback
(pure)."""

from __future__ import annotations

import re

_PARTS = re.compile(r"(\d+)|(\D+)")
# A pre-release suffix ("1.0-rc1", "2.0-beta"): semver sorts it before the release.
_PRE = re.compile(r"^(?P<main>[^-]*\d[^-]*)-(?P<pre>[A-Za-z].*)$")

VersionKey = tuple[tuple[tuple[int, int, str], ...], int, tuple[tuple[int, int, str], ...]]


def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    # Numbers compare as numbers and above words, so "1.10" > "1.9" and "1.0" > "latest".
    return tuple((1, int(num), "") if num else (0, 0, word) for num, word in _PARTS.findall(text))


def version_key(tag: str) -> VersionKey:
    """A semver-ish sort key: natural order, a leading "v" ignored, "-rc1"/"-beta"
    pre-releases before their release ("1.0-rc1" < "1.0" < "1.0-1" < "1.1")."""
    text = tag[1:] if len(tag) > 1 and tag[0] in "vV" and tag[1].isdigit() else tag
    match = _PRE.match(text)
    if match:
        return (_natural(match["main"]), 0, _natural(match["pre"]))
    return (_natural(text), 1, ())


__all__ = ["VersionKey", "version_key"]
