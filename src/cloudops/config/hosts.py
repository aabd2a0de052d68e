"""Host names inside config values: URLs (jdbc:mysql://h:3306/db, failover:(tcp://h:61616),
http://h:8082/search) and the value of *HOST* keys. Pure."""

from __future__ import annotations

import ipaddress
import re

from cloudops.config.secrets import mask_embedded

_URL_HOST = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:[^@/\s,()]*@)?(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9._-]*[a-z0-9_])?)",
    re.IGNORECASE,
)
_BARE_HOST = re.compile(r"^(?P<host>[a-z0-9_](?:[a-z0-9._-]*[a-z0-9_])?)(?::[0-9]+)?$", re.IGNORECASE)
_HOST_KEY = re.compile(r"HOST|SERVER|ENDPOINT", re.IGNORECASE)
_TOKEN_SPLIT = re.compile(r"[.\-_]")
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "host.docker.internal"})


def hosts_in(key: str, value: str | None) -> set[str]:
    """Host names a value points at (lowercase, no port), local ones left out: every
    account has its own localhost."""
    if not value:
        return set()
    value = mask_embedded(value)  # a password with "@" in it is no host to name
    found = {m.group("host") for m in _URL_HOST.finditer(value)}
    if _HOST_KEY.search(key):
        bare = _BARE_HOST.fullmatch(value.strip())
        if bare:
            found.add(bare.group("host"))
    return {h for h in (_normalize(h) for h in found) if h and not is_local(h) and _looks_like_host(h)}


def _normalize(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _looks_like_host(host: str) -> bool:
    # A word with no dot is a host only when it is a name, not a number or a port.
    return len(host) > 1 and not host.isdigit()


def is_local(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def host_tokens(host: str) -> set[str]:
    """qa-db.internal -> {qa, db, internal}: the words an environment's name shows up as."""
    return {t for t in _TOKEN_SPLIT.split(host) if t}


def contains_token(value: str, token: str) -> bool:
    """``token`` (a bucket, a registry host, an account id) appears in ``value`` as a whole
    word, not inside a longer name (ep-cloudops-2222... is not ep-cloudops-222...). A
    bucket followed by ".s3.<region>.amazonaws.com" (virtual-hosted URLs) still counts."""
    pattern = rf"(?<![A-Za-z0-9_.-]){re.escape(token)}(?![A-Za-z0-9_-])"
    return re.search(pattern, value, re.IGNORECASE) is not None


def contains_account_id(value: str, account_id: str) -> bool:
    """A 12-digit id not inside a longer number (in ARNs, ECR hosts, bucket names)."""
    return re.search(rf"(?<![0-9]){account_id}(?![0-9])", value) is not None
