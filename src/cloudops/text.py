"""Text read from outside (an account's bucket, a registry, a file) made inert for a
terminal or a page: no layer below the CLI prints, but the HTML report needs the same
rule, so it lives here, pure. The CLI's ``safe_text`` (cli/output.py) adds rich markup
escaping on top; the HTML report adds ``html.escape``."""

from __future__ import annotations

import json
import re
from typing import Any

# C0 and C1 controls (ESC, BEL, CR, LF, TAB ...: CSI and OSC sequences, OSC 8 hyperlinks,
# overwritten lines), DEL, and the bidi overrides and isolates (text that reads otherwise
# than it is stored, "Trojan Source").
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def human_bytes(n: float) -> str:
    """A byte count for people: 512 B, 1.5 KiB, 12.0 MiB, 3.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def plain_text(value: object) -> str:
    """``value`` as one line of inert text: every control character (and bidi control)
    shown as a visible escape (ESC -> ``\\x1b``, LF -> ``\\x0a``), nothing else changed."""
    return _UNPRINTABLE.sub(_visible, str(value))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a key occurs twice in one object")
    return found


def json_without_duplicate_keys(data: str | bytes) -> Any:
    """json.loads, refusing (ValueError) an object that names a key twice: Python keeps
    the last, another reader the first, so such a document means two things (a plan hash
    or an approver that one check reads and another does not)."""
    return json.loads(data, object_pairs_hook=_unique_keys)
