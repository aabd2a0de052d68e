"""Which config values are secrets, and how they are shown: never whole.

A key is secret when its name holds PASS, SECRET, TOKEN or KEY (EP_DB_PASS,
EP_SMTP_PASSWORD, API_KEY). Any other value may still carry a password inside a URL
(jdbc:mysql://user:pw@host/db), so URL credentials are masked in every shown value.
"""

from __future__ import annotations

import re

_SECRET_KEY = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
# scheme://user:password@  (also jdbc:mysql://, failover:(tcp://...))
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:@/\s]*:)(?P<password>[^@/\s]+)(?=@)", re.I)
# A value that only refers to another variable holds no secret of its own.
_REFERENCE_ONLY = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*(?::?-[^}]*)?\}?$")

MASK = "****"


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask(value: str | None) -> str | None:
    """Enough to tell two values apart by eye in a diff, never enough to use: the first
    two characters of a long value, nothing of a short one."""
    if value is None:
        return None
    if value == "":
        return ""
    return value[:2] + MASK if len(value) >= 12 else MASK


def shown(key: str, value: str | None) -> str | None:
    """A value as cloudops may print it."""
    if value is None:
        return None
    if is_secret_key(key):
        return mask(value)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)


def is_real_secret(value: str | None) -> bool:
    """Worth comparing between accounts: not empty, not a ${REFERENCE}."""
    return bool(value and value.strip() and not _REFERENCE_ONLY.match(value.strip()))


def url_passwords(value: str) -> list[str]:
    """Passwords embedded in URLs of a value (they are secrets whatever the key)."""
    return [m.group("password") for m in _URL_PASSWORD.finditer(value)]
