"""Pure parsing of image references, ECR registry hosts and S3 URIs. No I/O.

The reference grammar is distribution's (github.com/distribution/reference, grammar.go):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] remote-name
    domain     := host [":" port]        (first component with "." or ":" or "localhost")
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex

Unlike docker, a reference without a registry host is refused instead of defaulting to
Docker Hub: a promotion tool that silently reads from docker.io is a supply-chain hazard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloudops.errors import InputError

__all__ = [
    "EcrRegistry",
    "Reference",
    "ReferenceError",
    "S3Uri",
    "ecr_host",
    "parse_ecr_host",
    "parse_reference",
    "parse_s3_uri",
    "validate_digest",
    "validate_repository",
    "validate_tag",
]


class ReferenceError(InputError):
    """A malformed image reference, registry host, tag, digest or S3 URI."""


_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_NAME_MAX = 255
_HINT = (
    "expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], "
    "e.g. 111111111111.dkr.ecr.us-west-2.amazonaws.com/ep/cortex:1.0"
)


def validate_repository(repository: str) -> str:
    if not repository or not _REPOSITORY_RE.fullmatch(repository):
        raise ReferenceError(
            f"invalid repository name {repository!r}",
            hint="use lowercase path components of letters, digits and . _ - separated by /",
        )
    return repository


def validate_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise ReferenceError(
            f"invalid tag {tag!r}",
            hint="a tag is 1-128 characters of letters, digits, _ . - and cannot start with . or -",
        )
    return tag


def validate_digest(digest: str) -> str:
    if not _DIGEST_RE.fullmatch(digest):
        raise ReferenceError(f"invalid digest {digest!r}", hint="expected sha256:<64 hex digits>")
    if digest.startswith("sha256:") and not _SHA256_RE.fullmatch(digest):
        raise ReferenceError(f"invalid digest {digest!r}", hint="expected sha256:<64 hex digits>")
    return digest


def _validate_host(host: str) -> str:
    if not _HOST_RE.fullmatch(host):
        raise ReferenceError(f"invalid registry host {host!r}", hint=_HINT)
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
    if port is not None and not 0 < int(port) < 65536:
        raise ReferenceError(f"invalid port in registry host {host!r}", hint=_HINT)
    return host


@dataclass(frozen=True, slots=True)
class Reference:
    """A fully qualified image reference: registry host, repository, and tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        _validate_host(self.registry)
        validate_repository(self.repository)
        if self.tag is not None:
            validate_tag(self.tag)
        if self.digest is not None:
            validate_digest(self.digest)
        if len(f"{self.registry}/{self.repository}") > _NAME_MAX:
            raise ReferenceError(
                f"image name longer than {_NAME_MAX} characters", hint="shorten the repository path"
            )

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after /manifests/ in the API: the digest if known, else the tag."""
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        return "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, self.digest)

    def by_digest(self) -> Reference:
        """This image by digest only (no tag)."""
        if not self.digest:
            raise ReferenceError(f"{self} has no digest")
        return Reference(self.registry, self.repository, None, self.digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse ``[docker://]host[:port]/repo/path[:tag][@digest]``.

    When neither tag nor digest is given, ``default_tag`` is used (None keeps it absent).
    """
    original = text
    if text.startswith("docker://"):
        text = text[len("docker://") :]
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceError(f"invalid image reference {original!r}", hint=_HINT)

    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        validate_digest(digest)

    if "/" not in text:
        raise ReferenceError(f"image reference {original!r} names no registry host", hint=_HINT)
    host, rest = text.split("/", 1)
    if not ("." in host or ":" in host or host == "localhost" or host.startswith("[")):
        raise ReferenceError(
            f"image reference {original!r} names no registry host ({host!r} is not a host name)",
            hint=_HINT,
        )

    tag: str | None = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        validate_tag(tag)
    if tag is None and digest is None:
        tag = default_tag
    try:
        return Reference(_validate_host(host), validate_repository(rest), tag, digest)
    except ReferenceError as exc:
        raise ReferenceError(f"invalid image reference {original!r}: {exc.message}", hint=_HINT) from None


# --- ECR hosts -------------------------------------------------------------------------

# IPv4 (dkr.ecr, amazonaws.com[.cn]) and dual-stack (dkr-ecr, on.aws) endpoints:
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-requests.html
_ECR_HOST_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.(?:dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9])"
    r"\.amazonaws\.com(?:\.cn)?"
    r"|dkr-ecr(?:-fips)?\.(?P<dual_region>[a-z]{2}(?:-[a-z]+)+-[0-9])\.on\.aws)$"
)
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]$")


@dataclass(frozen=True, slots=True)
class EcrRegistry:
    """The account and region an ECR registry host belongs to."""

    account_id: str
    region: str

    @property
    def host(self) -> str:
        return ecr_host(self.account_id, self.region)


def ecr_host(account_id: str, region: str) -> str:
    if not _ACCOUNT_RE.fullmatch(account_id):
        raise ReferenceError(f"invalid AWS account id {account_id!r}", hint="expected 12 digits")
    if not _REGION_RE.fullmatch(region):
        raise ReferenceError(f"invalid AWS region {region!r}", hint="e.g. us-west-2")
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com"


def parse_ecr_host(host: str) -> EcrRegistry | None:
    """The account and region of an ECR host (a port, which ECR never needs, is ignored:
    host:8443 is still that account's ECR), or None when ``host`` is not an ECR host."""
    name, _, port = host.lower().rstrip(".").partition(":")
    if port and not port.isdigit():
        return None
    match = _ECR_HOST_RE.fullmatch(name.rstrip("."))
    if not match:
        return None
    return EcrRegistry(match["account"], match["region"] or match["dual_region"])


# --- S3 URIs ---------------------------------------------------------------------------

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def validate_bucket(bucket: str) -> str:
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ReferenceError(
            f"invalid S3 bucket name {bucket!r}",
            hint="3-63 lowercase letters, digits, dots and hyphens",
        )
    return bucket


def parse_s3_uri(text: str) -> S3Uri:
    if not text.startswith("s3://"):
        raise ReferenceError(f"invalid S3 URI {text!r}", hint="expected s3://BUCKET/KEY")
    bucket, _, key = text[len("s3://") :].partition("/")
    validate_bucket(bucket)
    if not key:
        raise ReferenceError(f"S3 URI {text!r} names no key", hint="expected s3://BUCKET/KEY")
    return S3Uri(bucket, key)
