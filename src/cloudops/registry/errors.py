"""Errors of the registry client. They keep the registry's own error codes
(https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes) and
say whether retrying can help.

    RegistryError                       (a registry answered, or could not be reached)
     ├── RegistryUnreachableError       connection refused, DNS, TLS, timeouts  [retryable*]
     │    └── InsecureRegistryError     plain-HTTP registry without --insecure-registry
     ├── AuthenticationError            401 after the credentials were offered
     ├── AccessDeniedError              403 DENIED
     │    └── TokenExpiredError         ECR's 403 "authorization token has expired"
     ├── NotFoundError                  404 NAME_UNKNOWN / MANIFEST_UNKNOWN / BLOB_UNKNOWN
     ├── TooManyRequestsError           429 TOOMANYREQUESTS          [retryable]
     ├── ServerError                    5xx                          [retryable]
     ├── ManifestBlobUnknownError       400 MANIFEST_BLOB_UNKNOWN on a push  [retryable]
     └── DigestMismatchError            bytes that do not hash to their digest

    CredentialTargetRefused             (an InputError, deliberately NOT a RegistryError)
                                        a realm, Location or Link that would carry the
                                        credentials off the registry's host (trust.py)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cloudops.errors import CloudopsError, ErrorKind, InputError


@dataclass(frozen=True, slots=True)
class RegistryErrorCode:
    code: str
    message: str


class RegistryError(CloudopsError):
    retryable: bool = False
    exhausted: bool = False
    """Set once a retry policy gave up on this error, so no outer layer retries it again."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        codes: tuple[RegistryErrorCode, ...] = (),
        retry_after: float | None = None,
        kind: ErrorKind | None = None,
    ):
        super().__init__(message, hint=hint, kind=kind)
        self.status = status
        self.codes = codes
        self.retry_after = retry_after

    def has_code(self, *names: str) -> bool:
        return any(c.code in names for c in self.codes)


class RegistryUnreachableError(RegistryError):
    retryable = True


class InsecureRegistryError(RegistryUnreachableError):
    retryable = False
    kind: ErrorKind = "input"


class AuthenticationError(RegistryError):
    kind: ErrorKind = "input"


class AccessDeniedError(RegistryError):
    kind: ErrorKind = "input"


class TokenExpiredError(AccessDeniedError):
    """ECR answers an expired token with 403 DENIED, not 401 (ECR-NOTES.md)."""


class NotFoundError(RegistryError):
    kind: ErrorKind = "input"


class TooManyRequestsError(RegistryError):
    retryable = True


class ServerError(RegistryError):
    retryable = True


class ManifestBlobUnknownError(RegistryError):
    """A manifest push answered 400 MANIFEST_BLOB_UNKNOWN although the copy put every
    blob first. distribution rewrites a blob's link file in place (truncate, then write)
    each time a blob is pushed again, so while another writer pushes the same blob a
    manifest push can find the link empty (two promotions of one image at once showed it).
    Retried with the one policy; after that it is a failure of the registry (exit 1), not
    the user's input."""

    retryable = True


class DigestMismatchError(RegistryError):
    """Content whose sha256 differs from the digest it was asked for: a corrupt source."""


class CredentialTargetRefused(InputError):
    """A registry answer named a place the registry's credentials may not go (a token
    realm over plain HTTP, a Location or Link on another host, a downgrade to http):
    nothing was sent there (registry/trust.py has the rule). Exit 2.

    Not a RegistryError on purpose: callers that treat a RegistryError as "fall back"
    (a declined mount, an upload cancel) must not swallow a refusal."""

    def __init__(self, message: str, *, hint: str | None = None, host: str = ""):
        super().__init__(message, hint=hint)
        self.host = host


def parse_error_body(body: bytes) -> tuple[RegistryErrorCode, ...]:
    """The ``errors`` array of a distribution error body; empty when the body is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        return ()
    codes = []
    for entry in doc["errors"]:
        if isinstance(entry, dict):
            code = entry.get("code")
            message = entry.get("message")
            codes.append(
                RegistryErrorCode(
                    str(code) if code is not None else "UNKNOWN",
                    str(message)[:300] if message is not None else "",
                )
            )
    return tuple(codes)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for_status(
    status: int,
    body: bytes,
    *,
    what: str,
    host: str,
    retry_after: str | None = None,
) -> RegistryError:
    """Map a failed response to a typed error with a message for users."""
    codes = parse_error_body(body)
    detail = "; ".join(f"{c.code}: {c.message}" if c.message else c.code for c in codes)
    suffix = f" ({detail})" if detail else ""
    if status == 401:
        return AuthenticationError(
            f"{host} refused the credentials for {what}{suffix}",
            hint="check the username and password or token for this registry "
            "(docker login, --src-creds-env/--dest-creds-env, or the account's credentials)",
            status=status,
            codes=codes,
        )
    if status == 403:
        text = detail.lower()
        if "expired" in text and ("token" in text or "authoriz" in text):
            return TokenExpiredError(
                f"{host}: authorization token expired during {what}",
                hint="a fresh token is requested automatically; run again if this persists",
                status=status,
                codes=codes,
            )
        return AccessDeniedError(
            f"{host} denied {what}{suffix}",
            hint="the credentials lack permission for this repository",
            status=status,
            codes=codes,
        )
    if status == 404:
        return NotFoundError(
            f"{what}: not found on {host}{suffix}",
            hint="check the repository name and tag or digest",
            status=status,
            codes=codes,
        )
    if status == 429:
        return TooManyRequestsError(
            f"{host} throttled {what} (429 TOOMANYREQUESTS){suffix}",
            hint="retries ran out; run again later or lower --concurrency",
            status=status,
            codes=codes,
            retry_after=parse_retry_after(retry_after),
        )
    if status >= 500:
        return ServerError(
            f"{host} failed {what} with HTTP {status}{suffix}",
            hint="the registry had an internal error; retries ran out, run again later",
            status=status,
            codes=codes,
            retry_after=parse_retry_after(retry_after),
        )
    if status == 400 and any(c.code == "MANIFEST_BLOB_UNKNOWN" for c in codes):
        return ManifestBlobUnknownError(
            f"{host} refused {what}: it does not hold a blob the manifest names{suffix}",
            hint="another writer may be pushing the same blobs; run again (a re-run is safe)",
            status=status,
            codes=codes,
        )
    return RegistryError(
        f"{host} refused {what} with HTTP {status}{suffix}",
        status=status,
        codes=codes,
        kind="input" if 400 <= status < 500 else "failed",
    )


def token_expired(error: RegistryError, *, credentials_sent: bool) -> bool:
    """The one expired-token rule. ECR answers an expired token with 403, not 401
    (../shared/ECR-NOTES.md): with a body that says so (TokenExpiredError), or with no
    body at all when the request was a HEAD. Either way fresh credentials may help."""
    if isinstance(error, TokenExpiredError):
        return True
    return error.status == 403 and credentials_sent and not error.codes
