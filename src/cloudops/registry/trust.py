"""Where registry credentials may go: one pure decision, made before every request.

A registry's answers are input from whoever runs (or sits in front of) that registry, and
three of them name where the next request goes: a bearer challenge's token realm, an
upload's ``Location`` (the POST's answer, a mount's 202, the cancel), and a tag list's
``Link`` to its next page. Followed blindly, each would carry the registry's credentials
(Basic, or a bearer token) and the blob bytes wherever the answer points. The rule
(issue 12, ../shared/ECR-NOTES.md; the token flow is
https://distribution.github.io/distribution/spec/auth/token/):

- registry API requests (whatever the URL came from) go only to the registry's own host
  and port; over plain HTTP only when that host is an --insecure-registry host, so an
  absolute URL that downgrades the registry's own host from https to http is refused.
  Neither ECR nor distribution ever point an upload or a page at another host;
- a token realm may be on another host, over HTTPS (verified TLS), or over plain HTTP only
  when the user named that host with --insecure-registry. This holds for an anonymous
  token request too: cloudops talks plain HTTP only to hosts the user named;
- anything else is refused before a byte is sent (:class:`CredentialTargetRefused`, exit 2).

Blob *reads* are different and keep their rule (RegistryTransport._send_following, the
one redirect path of every request): ECR redirects them to S3, and the redirect is
followed WITHOUT the Authorization header once the origin changes.

No I/O here, no HTTP library either: the rule survives a change of HTTP stack (issue 13).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Purpose = Literal["registry", "token"]
"""``registry``: a request of the registry API (a path, an upload Location, a Link).
``token``: a bearer challenge's realm."""

DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOWED = (
    "cloudops sends credentials only to the registry's own host, to a token realm over "
    "HTTPS, or over plain HTTP to a host named with --insecure-registry"
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a URL may not be sent to: ``host`` is what the URL names (or a placeholder
    when the URL is malformed and not worth echoing)."""

    host: str
    reason: Literal["malformed", "scheme", "other-host", "plain-http"]
    scheme: str = ""


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    hostname: str
    port: int | None
    netloc: str

    def same_host(self, spec: str) -> bool:
        """Whether this URL's host and port are ``spec`` (HOST[:PORT], as the user or the
        image reference names a registry; no port means the scheme's default)."""
        try:
            parts = urlsplit("//" + spec.strip())
            hostname, port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            return False
        if not hostname or hostname != self.hostname:
            return False
        default = DEFAULT_PORTS[self.scheme]
        return (port if port is not None else default) == (self.port if self.port is not None else default)


def _parse(url: str) -> _Target | Refusal:
    # Refuse what URL parsers disagree on (backslashes, whitespace, control and non-ASCII
    # characters, userinfo): the host judged here must be the host the HTTP stack dials.
    if any(c == "\\" or not (0x20 < ord(c) < 0x7F) for c in url):
        return Refusal("a malformed URL", "malformed")
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        hostname = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return Refusal("a malformed URL", "malformed")
    if scheme not in DEFAULT_PORTS:
        return Refusal(parts.netloc or "a non-HTTP URL", "scheme", scheme)
    if not hostname or "@" in parts.netloc:
        return Refusal("a malformed URL", "malformed", scheme)
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None:
        netloc += f":{port}"
    return _Target(scheme, hostname, port, netloc)


def on_host(url: str, host: str) -> bool:
    """Whether ``url`` is on ``host`` (HOST[:PORT]; no port means the scheme's default)."""
    target = _parse(url)
    return isinstance(target, _Target) and target.same_host(host)


def is_insecure(url: str, insecure_hosts: Collection[str]) -> bool:
    """Whether ``url`` is on a host the user named with --insecure-registry."""
    target = _parse(url)
    return isinstance(target, _Target) and any(target.same_host(h) for h in insecure_hosts)


def refusal(
    url: str, *, registry_host: str, insecure_hosts: Collection[str], purpose: Purpose
) -> Refusal | None:
    """None when a request carrying ``registry_host``'s credentials may go to ``url``,
    else why not. ``url`` is absolute (resolve relative references against the
    registry's base URL first)."""
    target = _parse(url)
    if isinstance(target, Refusal):
        return target
    if purpose == "registry" and not target.same_host(registry_host):
        return Refusal(target.netloc, "other-host", target.scheme)
    if target.scheme == "http" and not any(target.same_host(h) for h in insecure_hosts):
        return Refusal(target.netloc, "plain-http", target.scheme)
    return None


def describe(found: Refusal, *, registry_host: str, what: str) -> tuple[str, str]:
    """The message and hint of a refusal: what was refused, naming the host, and the fix."""
    if found.reason == "malformed":
        return (
            f"{registry_host} pointed {what} at a malformed URL: refused, nothing was sent",
            "the registry (or something in front of it) answered with a URL cloudops will "
            "not follow; check the registry's configuration",
        )
    if found.reason == "scheme":
        return (
            f"{registry_host} pointed {what} at a {found.scheme or 'relative'}: URL: refused, "
            "nothing was sent",
            "registries are reached over https (or http for --insecure-registry hosts)",
        )
    if found.reason == "other-host":
        return (
            f"{registry_host} pointed {what} at another host, {found.host}: refused, nothing "
            f"was sent there ({ALLOWED})",
            "a registry never sends uploads or pages to another host; check the registry "
            "and anything in front of it (a proxy that rewrites URLs)",
        )
    return (
        f"{registry_host} pointed {what} at {found.host} over plain HTTP: refused, nothing "
        f"was sent there ({ALLOWED})",
        f"if you trust the network to {found.host}, pass --insecure-registry {found.host}",
    )
