"""An ECR-like front for plain distribution registries (the sandbox's stand-in for Amazon ECR).

Run as ``python -m cloudops.sandbox.ecr_front --config FRONT.json``. It listens on one
loopback port PER ACCOUNT and streams /v2/* to that account's backend `docker-registry`
(plain HTTP, no auth), enforcing the ECR rules a plain registry lacks (ECR-NOTES.md):

- HTTP Basic auth with user ``AWS`` and the password from moto's GetAuthorizationToken for
  that account, else 401 UNAUTHORIZED with ECR's Basic challenge;
- token expiry, EMULATED: moto's token never changes and never expires, so
  ``POST /_sandbox/expire-token?count=N`` makes the next N authenticated /v2/ requests answer
  403 DENIED "Your authorization token has expired. ..." as ECR does after 12 hours;
- a repository must exist in the account's ECR (moto) for any /v2/<name>/... request,
  else 404 NAME_UNKNOWN;
- IMMUTABLE repositories refuse a manifest PUT to an existing tag (400 TAG_INVALID), even
  with an identical digest;
- cross-repository blob mount is off unless ``"blob_mounting": true`` (ECR's BLOB_MOUNTING
  account setting): ``?mount=&from=`` are stripped and an ordinary upload starts (202);
- every manifest the backend accepts is registered in moto with ecr put_image, so the AWS
  CLI and boto3 see what was pushed;
- blob GETs (``GET /v2/<name>/blobs/<digest>`` of a blob the backend has) answer
  ``307 Temporary Redirect`` to a presigned-style URL on ANOTHER port, as ECR sends layer
  reads to S3: ``http://127.0.0.1:<blob port>/<account>/<name>/<digest>?X-Amz-Algorithm=
  ...&X-Amz-Date=...&X-Amz-Expires=...&X-Amz-Signature=...``. That "blob host" is served
  by this process on its own listening socket (``"blob_port"``, 0 = any free port, bound
  by the front itself so it is owned from the start). Like S3 it refuses a request that
  carries an Authorization header (400 InvalidArgument "Only one auth mechanism
  allowed..."), a forged or altered signature or a method other than GET (403
  SignatureDoesNotMatch; the signature is an HMAC of method, path, date and expiry under
  a secret made at start-up) and an expired URL (403 AccessDenied "Request has expired";
  ``"presign_expires"`` seconds, default 300); errors are S3's XML. Otherwise it streams
  the blob from the account's backend (Range passes through). HEADs of blobs are not
  redirected (200 from the front; ECR-NOTES.md names the redirect for GET only).
  ``"blob_redirect": false`` turns the redirect off (blobs then stream through the front);
- a blob upload PATCH answers ``201 Created`` where distribution (and the spec) say 202,
  and a SECOND PATCH on the same upload is refused with ``400 BLOB_UPLOAD_INVALID``
  (ECR may silently discard it; refusing makes a chunked uploader fail loudly in tests
  instead of storing a blob with a hole). Upload each blob as one streamed request;
- throttling: above ``"throttle_rate"`` requests per second on one account (a token
  bucket holding one second's worth; 0 = off, the default) a /v2/ request is answered
  ``429 TOOMANYREQUESTS "Rate exceeded"`` with ``Retry-After`` (whole seconds until a
  request would pass). Counted after authentication, as ECR counts per account;
- the OCI 1.1 referrers API, which distribution 2.8 lacks (``"referrers_api": true``, the
  default): ``GET /v2/<name>/referrers/<digest>`` answers 200 with an OCI image index
  (``application/vnd.oci.image.index.v1+json``) of every manifest in that repository whose
  ``subject.digest`` is ``<digest>``, sorted by digest, each entry its ``mediaType``,
  ``digest``, ``size``, ``artifactType`` (the manifest's, else an image manifest's
  config.mediaType) and ``annotations`` (when it has any). An unknown subject is 200 with
  no entries, a malformed digest 400 DIGEST_INVALID; ``?artifactType=T`` keeps only that
  type and the answer says so with ``OCI-Filters-Applied: artifactType``. A manifest PUT
  whose body has a ``subject`` is answered ``OCI-Subject: <subject digest>``. The lists
  come from moto's ECR (list_images, batch_get_image; manifests are the pushers' input,
  parsed defensively: what does not parse is left out), are kept per repository for
  REFERRERS_TTL seconds and updated at once by every manifest PUT through the front, so a
  flush or a restarted front loses nothing. ``"referrers_api": false``: the referrers path
  gets the backend's own 404 (distribution 2.8's answer) and no PUT carries
  ``OCI-Subject``, so clients fall back to the referrers tag schema (``sha256-<hex>``).

Admin endpoints on every port (no auth, loopback only): ``GET /_sandbox/health``,
``POST /_sandbox/expire-token?count=N``, ``POST /_sandbox/flush`` (forget cached
repositories and credentials and pending expiries, put the throttle and presign expiry
back to the config's values, zero the counters; world.reset calls it),
``POST /_sandbox/throttle?rate=R`` (this account's request rate limit, 0 = off),
``POST /_sandbox/presign-expiry?seconds=N`` (lifetime of the blob URLs made from now on)
and ``GET /_sandbox/stats`` (this account's counters: ``redirected`` blob GETs,
``blob_served`` and ``blob_refused`` by the blob host, ``blob_refused_auth`` (requests
that reached the blob host WITH an Authorization header), ``patch_refused``,
``throttled``, ``referrers_served`` (referrers lists answered)).

The parent may bind each account's port itself and hand the listening socket over with
``--listen-fd ACCOUNT_ID=FD`` (world.up does: the port is then owned from the start, and
no other process can take it between choosing and binding it); ``listen_port`` is then
the port that socket is bound to.

Config JSON::

    {"moto_url": "http://127.0.0.1:P", "region": "us-west-2", "blob_mounting": false,
     "blob_redirect": true, "blob_port": 0, "presign_expires": 300, "throttle_rate": 0,
     "referrers_api": true,
     "accounts": [{"account_id": "111111111111", "listen_port": N,
                   "backend": "http://127.0.0.1:M"}, ...]}
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import calendar
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import boto3
import botocore.config
import botocore.exceptions
from aiohttp import web
from multidict import CIMultiDict, MultiDict
from yarl import URL

from cloudops.oci import (
    ACCEPT_MANIFESTS,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_MEDIA_TYPES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
)

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecr.type_defs import ImageIdentifierTypeDef
    from mypy_boto3_sts import STSClient

__all__ = [
    "EXPIRED_MESSAGE",
    "AccountConfig",
    "EcrFront",
    "FrontConfig",
    "load_config",
    "main",
    "serve",
]

log = logging.getLogger("cloudops.sandbox.ecr_front")

EXPIRED_MESSAGE = "Your authorization token has expired. Reauthenticate and try again."
# Positive repository answers are cached this long; negative ones never (a repository may
# be created at any moment and the very next push must see it).
REPOSITORY_TTL = 2.0
CHUNK = 256 * 1024
# A repository's referrers lists, built from moto's ECR, are kept this long (every manifest
# PUT through the front updates them at once; the expiry picks up changes made past it).
REFERRERS_TTL = 2.0
# Manifests fetched from ECR, parsed once per digest (content-addressed), per account.
MAX_PARSED_MANIFESTS = 50_000
# Referrers PUT through the front lately, per account: merged into a list built meanwhile.
MAX_RECENT_REFERRERS = 1_000
# ECR's batch_get_image takes at most 100 image ids.
BATCH_GET_IMAGES = 100
# Every manifest media type, so that ECR hands each manifest back as it was pushed.
ALL_MANIFEST_TYPES = (
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

# Repository names as distribution's reference grammar has them (refs.py); routes are
# anchored at the end so a name may contain any path component.
_NAME = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*"
_MANIFEST_RE = re.compile(rf"^/v2/(?P<name>{_NAME})/manifests/(?P<ref>[^/]+)$")
_REPO_RE = re.compile(rf"^/v2/(?P<name>{_NAME})/(?:blobs|tags|referrers)/")
_UPLOAD_START_RE = re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/uploads/?$")
_UPLOAD_RE = re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/uploads/(?P<upload>[^/]+)$")
_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
_BLOB_RE = re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/(?P<digest>{_DIGEST})$")
_REFERRERS_RE = re.compile(rf"^/v2/(?P<name>{_NAME})/referrers/(?P<digest>[^/]*)$")
# A digest that can name a subject: the registered algorithms, lowercase hex (image-spec).
_SUBJECT_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
# The blob host's paths: /<account>/<repository name>/<digest>.
_BLOB_HOST_RE = re.compile(rf"^/(?P<account>[0-9]{{12}})/(?P<name>{_NAME})/(?P<digest>{_DIGEST})$")
AMZ_DATE = "%Y%m%dT%H%M%SZ"
ONE_AUTH_MESSAGE = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
    "string parameter or the Authorization header should be specified"
)
# Upload ids that had their one PATCH, remembered per account up to this many.
MAX_PATCHED_UPLOADS = 10_000
# Headers of a backend blob answer that the blob host passes on (S3 sends no Docker-*).
_BLOB_HOST_HEADERS = ("Content-Type", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified")

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Expect",
    )
)
_DROP_REQUEST = _HOP_BY_HOP | {"host", "authorization", "content-length"}
_DROP_RESPONSE = _HOP_BY_HOP | {"content-length", "date", "server"}

T = TypeVar("T")


@dataclass(frozen=True)
class AccountConfig:
    account_id: str
    listen_port: int
    backend: str  # http://127.0.0.1:PORT of this account's docker-registry


@dataclass(frozen=True)
class FrontConfig:
    moto_url: str
    region: str
    accounts: tuple[AccountConfig, ...]
    blob_mounting: bool = False
    listen_host: str = "127.0.0.1"
    blob_redirect: bool = True
    blob_port: int = 0  # the blob host's port; 0 = any free one (bound by the front)
    presign_expires: int = 300
    throttle_rate: float = 0.0  # requests per second per account; 0 = no throttling
    referrers_api: bool = True  # False: /v2/<name>/referrers/ is the backend's 404


def load_config(path: Path) -> FrontConfig:
    doc = json.loads(path.read_text())
    accounts = tuple(
        AccountConfig(str(a["account_id"]), int(a["listen_port"]), str(a["backend"]).rstrip("/"))
        for a in doc["accounts"]
    )
    return FrontConfig(
        moto_url=str(doc["moto_url"]).rstrip("/"),
        region=str(doc.get("region", "us-west-2")),
        accounts=accounts,
        blob_mounting=bool(doc.get("blob_mounting", False)),
        listen_host=str(doc.get("listen_host", "127.0.0.1")),
        blob_redirect=bool(doc.get("blob_redirect", True)),
        blob_port=int(doc.get("blob_port", 0)),
        presign_expires=int(doc.get("presign_expires", 300)),
        throttle_rate=float(doc.get("throttle_rate", 0) or 0),
        referrers_api=bool(doc.get("referrers_api", True)),
    )


def s3_error(status: int, code: str, message: str) -> web.Response:
    """An error in S3's body shape (the blob host's answers)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml", charset="utf-8")


def ecr_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error in the registry API's (and ECR's) body shape."""
    body = json.dumps({"errors": [{"code": code, "message": message}]})
    return web.Response(
        status=status, text=body, content_type="application/json", charset="utf-8", headers=headers
    )


class _StaleIdentity(Exception):
    """moto answered for another account: our assumed-role keys outlived a moto reset
    (moto then maps unknown keys to its default account), so assume the role again."""


class EcrAccount:
    """The moto side of one account: assumed-role ECR client, token, repository cache.

    Methods are blocking (boto3); the front calls them in worker threads."""

    def __init__(self, account_id: str, moto_url: str, region: str) -> None:
        self.account_id = account_id
        self.moto_url = moto_url
        self.region = region
        self._lock = threading.Lock()
        self._ecr: ECRClient | None = None
        self._password: str | None = None
        self._repositories: dict[str, tuple[float, dict[str, Any]]] = {}
        self._session = boto3.session.Session()
        self._botocore_config = botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"})
        self._sts: STSClient = self._session.client(
            "sts",
            endpoint_url=moto_url,
            region_name=region,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",
            config=self._botocore_config,
        )

    # -- identity -------------------------------------------------------------------------
    def _assume(self) -> ECRClient:
        creds = self._sts.assume_role(
            RoleArn=f"arn:aws:iam::{self.account_id}:role/sandbox-front",
            RoleSessionName="sandbox-front",
        )["Credentials"]
        client: ECRClient = self._session.client(
            "ecr",
            endpoint_url=self.moto_url,
            region_name=self.region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            config=self._botocore_config,
        )
        with self._lock:
            self._ecr = client
        return client

    def _run(self, op: Callable[[ECRClient], T]) -> T:
        """Run ``op`` as this account; on a sign of stale keys, assume the role and retry once."""
        with self._lock:
            client = self._ecr
        if client is None:
            client = self._assume()
        try:
            return op(client)
        except _StaleIdentity:
            pass
        except botocore.exceptions.ClientError as exc:
            # A negative answer may come from the default account after a moto reset.
            if _error_code(exc) != "RepositoryNotFoundException" or f"'{self.account_id}'" in str(exc):
                raise
        return op(self._assume())

    def forget(self) -> None:
        with self._lock:
            self._ecr = None
            self._repositories.clear()

    # -- token ----------------------------------------------------------------------------
    def password(self) -> str:
        """The registry password moto hands out for this account (moto: "<acct>-auth-token")."""
        if self._password is None:

            def fetch(client: ECRClient) -> str:
                data = client.get_authorization_token()["authorizationData"][0]
                if self.account_id not in data.get("proxyEndpoint", ""):
                    raise _StaleIdentity
                user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
                if user != "AWS" or not password:
                    raise RuntimeError("moto returned an authorization token that is not AWS:<password>")
                return password

            self._password = self._run(fetch)
        return self._password

    # -- repositories ---------------------------------------------------------------------
    def repository(self, name: str) -> dict[str, Any] | None:
        """The repository's description, or None when it does not exist in this account."""
        now = time.monotonic()
        with self._lock:
            cached = self._repositories.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]

        def describe(client: ECRClient) -> dict[str, Any] | None:
            try:
                repos = client.describe_repositories(repositoryNames=[name])["repositories"]
            except client.exceptions.RepositoryNotFoundException as exc:
                if f"'{self.account_id}'" not in str(exc):
                    raise _StaleIdentity from None
                return None
            if not repos:
                return None
            if repos[0].get("registryId") != self.account_id:
                raise _StaleIdentity
            return dict(repos[0])

        repo = self._run(describe)
        with self._lock:
            if repo is None:
                self._repositories.pop(name, None)
            else:
                self._repositories[name] = (time.monotonic() + REPOSITORY_TTL, repo)
        return repo

    def put_image(
        self, name: str, manifest: str, media_type: str | None, digest: str, tag: str | None
    ) -> None:
        """Register a manifest the backend accepted, so ECR's API lists it."""
        kwargs: dict[str, Any] = {
            "repositoryName": name,
            "imageManifest": manifest,
            "imageDigest": digest,  # always: moto invents one otherwise (ECR-NOTES.md)
        }
        if media_type:
            kwargs["imageManifestMediaType"] = media_type
        if tag is not None:
            kwargs["imageTag"] = tag

        def put(client: ECRClient) -> None:
            try:
                image = client.put_image(**kwargs)["image"]
            except client.exceptions.ImageAlreadyExistsException:
                # moto raises this for a digest pushed again (by digest, or with a tag it
                # already has): ECR accepts such repeats, and the image is there.
                return
            if image.get("registryId", self.account_id) != self.account_id:
                raise _StaleIdentity

        self._run(put)

    # -- manifests (the referrers API's source of truth) -----------------------------------
    def image_digests(self, name: str) -> list[str]:
        """Every image digest in the repository (list_images, all pages), sorted; [] when
        the repository is gone."""

        def list_all(client: ECRClient) -> list[str]:
            digests: set[str] = set()
            try:
                # No registryId: a stale identity must show in the error's account id.
                for page in client.get_paginator("list_images").paginate(repositoryName=name):
                    for image_id in page.get("imageIds", []):
                        digest = image_id.get("imageDigest")
                        if isinstance(digest, str):
                            digests.add(digest)
            except client.exceptions.RepositoryNotFoundException as exc:
                if f"'{self.account_id}'" not in str(exc):
                    raise _StaleIdentity from None
                return []
            return sorted(digests)

        return self._run(list_all)

    def manifests(self, name: str, digests: Sequence[str]) -> list[tuple[str, str | None, str]]:
        """(digest, media type, manifest text) of those of ``digests`` ECR has in the
        repository (batch_get_image, every manifest media type accepted); what ECR does not
        hand back is left out."""

        def fetch(client: ECRClient) -> list[tuple[str, str | None, str]]:
            found: dict[str, tuple[str, str | None, str]] = {}
            for start in range(0, len(digests), BATCH_GET_IMAGES):
                ids: list[ImageIdentifierTypeDef] = [
                    {"imageDigest": d} for d in digests[start : start + BATCH_GET_IMAGES]
                ]
                try:
                    answer = client.batch_get_image(
                        repositoryName=name, imageIds=ids, acceptedMediaTypes=list(ALL_MANIFEST_TYPES)
                    )
                except client.exceptions.RepositoryNotFoundException as exc:
                    if f"'{self.account_id}'" not in str(exc):
                        raise _StaleIdentity from None
                    return []
                for image in answer.get("images", []):
                    if image.get("registryId", self.account_id) != self.account_id:
                        raise _StaleIdentity
                    digest = image.get("imageId", {}).get("imageDigest")
                    text = image.get("imageManifest")
                    media_type = image.get("imageManifestMediaType")
                    if isinstance(digest, str) and isinstance(text, str):
                        found[digest] = (digest, media_type if isinstance(media_type, str) else None, text)
            return list(found.values())

        return self._run(fetch)


# -- referrers ---------------------------------------------------------------------------------
Referrer = tuple[str, dict[str, Any]]  # (subject digest, the referrer's descriptor)


def referrer_of(raw: bytes, digest: str, media_type: str | None) -> Referrer | None:
    """The subject and descriptor of the manifest ``raw`` stored as ``digest``, for the
    referrers API; None for a manifest without a subject and for anything that does not
    parse as one (manifests are the pushers' input: no field is trusted to be there or to
    have its type). ``media_type`` (the Content-Type it was pushed with) stands in for a
    missing ``mediaType`` field."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or hashlib.new(algorithm, raw).hexdigest() != hexdigest:
        return None  # not the bytes stored under that digest: its size would be a lie
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    subject = doc.get("subject")
    if not isinstance(subject, dict):
        return None
    subject_digest, subject_size = subject.get("digest"), subject.get("size", 0)
    if not isinstance(subject_digest, str) or not _SUBJECT_DIGEST_RE.fullmatch(subject_digest):
        return None
    if not isinstance(subject_size, int) or isinstance(subject_size, bool) or subject_size < 0:
        return None
    kind = doc.get("mediaType", media_type)
    if not isinstance(kind, str) or not kind:
        return None
    descriptor: dict[str, Any] = {"mediaType": kind, "digest": digest, "size": len(raw)}
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        return None
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        return None
    if not artifact_type and config is not None and kind not in INDEX_MEDIA_TYPES:
        # The spec: else an image manifest's config.mediaType; an index's stays omitted.
        artifact_type = config.get("mediaType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            return None
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    annotations = doc.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            return None
        if annotations:
            descriptor["annotations"] = annotations
    return subject_digest, descriptor


@dataclass
class _Referrers:
    """One repository's referrers lists: subject digest -> referrer digest -> descriptor."""

    expires: float
    subjects: dict[str, dict[str, dict[str, Any]]]

    def add(self, referrer: Referrer) -> None:
        subject, descriptor = referrer
        self.subjects.setdefault(subject, {})[descriptor["digest"]] = descriptor


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


_COUNTERS = (
    "redirected",
    "blob_served",
    "blob_refused",
    "blob_refused_auth",
    "patch_refused",
    "throttled",
    "referrers_served",
)


@dataclass
class _AccountFront:
    config: AccountConfig
    ecr: EcrAccount
    throttle_rate: float = 0.0
    presign_expires: int = 300
    expire_pending: int = 0
    backend_url: URL = field(init=False)
    tokens: float = 0.0  # the throttle's bucket
    refilled: float = 0.0
    patched: dict[str, None] = field(default_factory=dict)  # upload ids that had their PATCH
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    referrers: dict[str, _Referrers] = field(default_factory=dict)  # per repository
    # digest -> what referrer_of made of that manifest (None: not a referrer), any repository
    parsed: dict[str, Referrer | None] = field(default_factory=dict)
    # (when, repository, referrer) of referrers PUT through the front lately
    recent_referrers: deque[tuple[float, str, Referrer]] = field(
        default_factory=lambda: deque(maxlen=MAX_RECENT_REFERRERS)
    )
    generation: int = 0  # bumped by a flush: a list built before it is not kept

    def __post_init__(self) -> None:
        self.backend_url = URL(self.config.backend)

    def remember_parsed(self, digest: str, referrer: Referrer | None) -> None:
        self.parsed[digest] = referrer
        while len(self.parsed) > MAX_PARSED_MANIFESTS:
            del self.parsed[next(iter(self.parsed))]

    def forget_referrers(self) -> None:
        self.referrers.clear()
        self.parsed.clear()
        self.recent_referrers.clear()
        self.generation += 1

    def set_throttle(self, rate: float) -> None:
        self.throttle_rate = max(0.0, rate)
        self.tokens, self.refilled = self.throttle_rate, time.monotonic()

    def take(self) -> float | None:
        """None when a request may pass now, else the seconds until one may (token bucket
        refilled at ``throttle_rate`` per second, holding at most one second's worth)."""
        rate = self.throttle_rate
        if rate <= 0:
            return None
        now = time.monotonic()
        self.tokens = min(max(rate, 1.0), self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / rate


class EcrFront:
    """The aiohttp applications (one per account) and their shared upstream session."""

    def __init__(self, config: FrontConfig) -> None:
        self.config = config
        self.accounts = [
            _AccountFront(a, EcrAccount(a.account_id, config.moto_url, config.region))
            for a in config.accounts
        ]
        for acct in self.accounts:
            acct.set_throttle(config.throttle_rate)
            acct.presign_expires = config.presign_expires
        self._by_id = {acct.config.account_id: acct for acct in self.accounts}
        self._secret = secrets.token_bytes(32)  # signs the blob host's URLs
        self.blob_base: str | None = None  # http://host:port of the blob host once it listens
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Bytes must pass untouched: no decompression, no cookies, no redirects.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                connector=aiohttp.TCPConnector(limit=256),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self, account: _AccountFront) -> web.Application:
        app = web.Application()

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(account, request)

        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    def blob_app(self) -> web.Application:
        """The S3 stand-in that redirected blob GETs land on."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._blob_host)
        return app

    # -- the blob host (S3 stand-in) ----------------------------------------------------------
    def _signature(self, method: str, path: str, amz_date: str, expires: str) -> str:
        text = "\n".join((method, path, amz_date, expires)).encode()
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()

    def presign(self, acct: _AccountFront, name: str, digest: str) -> str:
        assert self.blob_base is not None
        path = f"/{acct.config.account_id}/{name}/{quote(digest, safe=':')}"
        amz_date = time.strftime(AMZ_DATE, time.gmtime())
        expires = str(acct.presign_expires)
        query = urlencode(
            {
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Credential": f"SANDBOX/{amz_date[:8]}/{self.config.region}/s3/aws4_request",
                "X-Amz-Date": amz_date,
                "X-Amz-Expires": expires,
                "X-Amz-SignedHeaders": "host",
                "X-Amz-Signature": self._signature("GET", path, amz_date, expires),
            }
        )
        return f"{self.blob_base}{path}?{query}"

    async def _blob_host(self, request: web.Request) -> web.StreamResponse:
        match = _BLOB_HOST_RE.fullmatch(request.path)
        acct = self._by_id.get(match["account"]) if match else None
        if "Authorization" in request.headers:
            if acct is not None:
                acct.counters["blob_refused"] += 1
                acct.counters["blob_refused_auth"] += 1
            log.warning("blob host: a request carried an Authorization header: %s", request.path)
            return s3_error(400, "InvalidArgument", ONE_AUTH_MESSAGE)
        if match is None or acct is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        query = request.query
        amz_date, expires = query.get("X-Amz-Date", ""), query.get("X-Amz-Expires", "")
        signature = query.get("X-Amz-Signature", "")
        expected = self._signature(request.method, request.path, amz_date, expires)
        if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or not hmac.compare_digest(
            signature.encode(), expected.encode()
        ):
            acct.counters["blob_refused"] += 1
            return s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
            )
        try:
            issued = calendar.timegm(time.strptime(amz_date, AMZ_DATE))
            expired = time.time() > issued + int(expires)
        except (ValueError, OverflowError):
            expired = True
        if expired:
            acct.counters["blob_refused"] += 1
            return s3_error(403, "AccessDenied", "Request has expired")
        headers = CIMultiDict[str]()
        for key in ("Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"):
            if key in request.headers:
                headers[key] = request.headers[key]
        target = acct.backend_url.with_path(f"/v2/{match['name']}/blobs/{match['digest']}")
        async with self.session.get(target, headers=headers, allow_redirects=False) as upstream:
            if upstream.status not in (200, 206, 304):
                acct.counters["blob_refused"] += 1
                return s3_error(404, "NoSuchKey", "The specified key does not exist.")
            acct.counters["blob_served"] += 1
            response = web.StreamResponse(status=upstream.status)
            for key in _BLOB_HOST_HEADERS:
                if key in upstream.headers:
                    response.headers[key] = upstream.headers[key]
            return await _stream_body(request, upstream, response)

    # -- dispatch -------------------------------------------------------------------------
    async def _dispatch(self, acct: _AccountFront, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_sandbox/"):
            return await self._admin(acct, request)
        if path != "/v2" and not path.startswith("/v2/"):
            return ecr_error(404, "NOT_FOUND", f"no route for {path}")
        try:
            return await self._v2(acct, request)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, _StaleIdentity) as exc:
            log.exception("moto call failed")
            return ecr_error(500, "UNKNOWN", f"sandbox front: the local AWS API (moto) failed: {exc}")
        except aiohttp.ClientConnectionError as exc:
            # Only before the response started: afterwards aiohttp just drops the connection.
            log.warning("backend %s unreachable: %s", acct.config.backend, exc)
            return ecr_error(502, "UNAVAILABLE", f"sandbox front: backend registry unreachable: {exc}")

    async def _admin(self, acct: _AccountFront, request: web.Request) -> web.StreamResponse:
        what = request.path.removeprefix("/_sandbox/")
        if what == "health" and request.method in ("GET", "HEAD"):
            return web.json_response({"status": "ok", "account_id": acct.config.account_id})
        if what == "expire-token" and request.method == "POST":
            try:
                count = int(request.query.get("count", "1"))
            except ValueError:
                return web.json_response({"error": "count must be an integer"}, status=400)
            acct.expire_pending = max(0, count)
            return web.json_response(
                {"account_id": acct.config.account_id, "expire_pending": acct.expire_pending}
            )
        if what == "flush" and request.method == "POST":
            acct.expire_pending = 0
            acct.ecr.forget()
            acct.set_throttle(self.config.throttle_rate)
            acct.presign_expires = self.config.presign_expires
            acct.patched.clear()
            acct.forget_referrers()
            acct.counters = dict.fromkeys(_COUNTERS, 0)
            return web.json_response({"account_id": acct.config.account_id, "flushed": True})
        if what == "throttle" and request.method == "POST":
            try:
                rate = float(request.query.get("rate", "0"))
            except ValueError:
                return web.json_response({"error": "rate must be a number"}, status=400)
            acct.set_throttle(rate)
            return web.json_response(
                {"account_id": acct.config.account_id, "throttle_rate": acct.throttle_rate}
            )
        if what == "presign-expiry" and request.method == "POST":
            try:
                seconds = int(request.query.get("seconds", str(self.config.presign_expires)))
            except ValueError:
                return web.json_response({"error": "seconds must be an integer"}, status=400)
            acct.presign_expires = max(0, seconds)
            return web.json_response(
                {"account_id": acct.config.account_id, "presign_expires": acct.presign_expires}
            )
        if what == "stats" and request.method == "GET":
            return web.json_response(
                {"account_id": acct.config.account_id, "blob_host": self.blob_base, **acct.counters}
            )
        return web.json_response(
            {"error": f"unknown admin endpoint {request.method} {request.path}"}, status=404
        )

    def _authorized(self, request: web.Request, password: str) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded.encode(), f"AWS:{password}".encode())

    async def _v2(self, acct: _AccountFront, request: web.Request) -> web.StreamResponse:
        account_id = acct.config.account_id
        password = await asyncio.to_thread(acct.ecr.password)
        if not self._authorized(request, password):
            challenge = f'Basic realm="{request.host}",service="ecr.amazonaws.com"'
            return ecr_error(401, "UNAUTHORIZED", "Not Authorized", {"WWW-Authenticate": challenge})
        wait = acct.take()
        if wait is not None:
            acct.counters["throttled"] += 1
            log.info("throttled %s %s (account %s)", request.method, request.path, acct.config.account_id)
            return ecr_error(
                429, "TOOMANYREQUESTS", "Rate exceeded", {"Retry-After": str(max(1, math.ceil(wait)))}
            )
        if acct.expire_pending > 0:
            # Emulation: moto's token never expires, so expiry is switched on by hand.
            acct.expire_pending -= 1
            return ecr_error(403, "DENIED", EXPIRED_MESSAGE)

        path = request.path
        manifest = _MANIFEST_RE.fullmatch(path)
        repo_match = manifest or _REPO_RE.match(path)
        if repo_match is None:  # /v2/, /v2/_catalog and paths the backend will judge
            return await self._proxy(acct, request)

        name = repo_match["name"]
        repo = await asyncio.to_thread(acct.ecr.repository, name)
        if repo is None:
            return ecr_error(
                404,
                "NAME_UNKNOWN",
                f"The repository with name '{name}' does not exist in the registry with id '{account_id}'",
            )

        if manifest is not None and request.method == "PUT":
            return await self._put_manifest(acct, request, name, manifest["ref"], repo)

        referrers = _REFERRERS_RE.fullmatch(path)
        if referrers is not None and self.config.referrers_api:
            return await self._list_referrers(acct, request, name, referrers["digest"])

        blob = _BLOB_RE.fullmatch(path)
        if blob is not None and request.method == "GET" and self.blob_base is not None:
            return await self._redirect_blob(acct, request, name, blob["digest"])

        upload_id = _UPLOAD_RE.fullmatch(path)
        if upload_id is not None and request.method == "PATCH":
            return await self._patch(acct, request, upload_id["upload"])

        upload = _UPLOAD_START_RE.fullmatch(path)
        if upload is not None and request.method == "POST" and "mount" in request.query:
            query = MultiDict(request.query)
            source = query.get("from")
            mount_ok = self.config.blob_mounting and source is not None
            if mount_ok and source is not None and source != name:
                # ECR mounts only from a repository of the same account.
                mount_ok = await asyncio.to_thread(acct.ecr.repository, source) is not None
            if not mount_ok:
                # BLOB_MOUNTING off (ECR's default): an ordinary upload session starts (202).
                query.popall("mount", None)
                query.popall("from", None)
                return await self._proxy(acct, request, query=urlencode(list(query.items())))
        return await self._proxy(acct, request)

    async def _put_manifest(
        self, acct: _AccountFront, request: web.Request, name: str, ref: str, repo: dict[str, Any]
    ) -> web.StreamResponse:
        tag = None if ":" in ref else ref  # digests are algorithm:hex; tags cannot hold ':'
        if tag is not None and repo.get("imageTagMutability") == "IMMUTABLE":
            head = await self.session.head(
                acct.backend_url.with_path(f"/v2/{name}/manifests/{tag}"),
                headers={"Accept": ACCEPT_MANIFESTS},
                allow_redirects=False,
            )
            head.release()
            if head.status == 200:
                # ECR refuses even an identical digest here (ECR-NOTES.md).
                return ecr_error(
                    400,
                    "TAG_INVALID",
                    f"The image tag '{tag}' already exists in the '{name}' repository and cannot "
                    "be overwritten because the repository is immutable.",
                )

        body = await _read_limited(request, MAX_MANIFEST_BYTES)
        if body is None:
            return ecr_error(
                400, "MANIFEST_INVALID", f"manifest is larger than ECR's {MAX_MANIFEST_BYTES} byte limit"
            )
        media_type = request.headers.get("Content-Type", "").split(";")[0].strip() or None
        headers = _forward_headers(request.headers)
        async with self.session.put(
            _backend_target(acct, request),
            data=body,
            headers=headers,
            allow_redirects=False,
        ) as upstream:
            reply_body = await upstream.read()
            if upstream.status != 201:
                return _buffered_reply(acct, request, upstream, reply_body)
            digest = upstream.headers.get("Docker-Content-Digest")
            if not digest:
                return ecr_error(500, "UNKNOWN", "backend registry accepted the manifest without a digest")
            try:
                await asyncio.to_thread(
                    acct.ecr.put_image, name, body.decode("utf-8"), media_type, digest, tag
                )
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in ("ImageTagAlreadyExistsException",):
                    return ecr_error(
                        400,
                        "TAG_INVALID",
                        f"The image tag '{tag}' already exists in the '{name}' repository and "
                        "cannot be overwritten because the repository is immutable.",
                    )
                log.exception("put_image failed")
                return ecr_error(
                    500,
                    "UNKNOWN",
                    f"sandbox front: the registry stored {digest} but registering it in ECR (moto) "
                    f"failed: {exc}",
                )
            except UnicodeDecodeError:
                return ecr_error(400, "MANIFEST_INVALID", "manifest is not UTF-8 JSON")
            reply = _buffered_reply(acct, request, upstream, reply_body)
        if self.config.referrers_api:
            referrer = referrer_of(body, digest, media_type)
            acct.remember_parsed(digest, referrer)
            if referrer is not None:
                acct.recent_referrers.append((time.monotonic(), name, referrer))
                cached = acct.referrers.get(name)
                if cached is not None:
                    cached.add(referrer)
                reply.headers["OCI-Subject"] = referrer[0]
        return reply

    async def _list_referrers(
        self, acct: _AccountFront, request: web.Request, name: str, digest: str
    ) -> web.StreamResponse:
        """The OCI 1.1 referrers API: an image index of the manifests whose subject is ``digest``."""
        if request.method not in ("GET", "HEAD"):
            return ecr_error(
                405,
                "UNSUPPORTED",
                f"{request.method} is not supported on the referrers API",
                {"Allow": "GET"},
            )
        if not _SUBJECT_DIGEST_RE.fullmatch(digest):
            return ecr_error(400, "DIGEST_INVALID", f"invalid digest '{digest[:200]}'")
        subjects = await self._referrers_of(acct, name)
        entries = sorted(subjects.get(digest, {}).values(), key=lambda d: str(d["digest"]))
        headers = {"Docker-Distribution-API-Version": "registry/2.0"}
        wanted = request.query.get("artifactType")
        if wanted:
            # A '+' the client left unencoded arrives as a space; media types hold none.
            wanted = wanted.replace(" ", "+")
            entries = [d for d in entries if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        acct.counters["referrers_served"] += 1
        return web.Response(
            status=200, body=json.dumps(index).encode(), content_type=OCI_INDEX, headers=headers
        )

    async def _referrers_of(self, acct: _AccountFront, name: str) -> dict[str, dict[str, dict[str, Any]]]:
        """The repository's referrers lists, from memory while fresh, else rebuilt from
        moto's ECR (manifests already parsed are not fetched again: digests name content)."""
        started = time.monotonic()
        cached = acct.referrers.get(name)
        if cached is not None and cached.expires > started:
            return cached.subjects
        generation = acct.generation
        digests = await asyncio.to_thread(acct.ecr.image_digests, name)
        known = {d: acct.parsed[d] for d in digests if d in acct.parsed}
        unknown = [d for d in digests if d not in known]
        if unknown:
            for digest, media_type, text in await asyncio.to_thread(acct.ecr.manifests, name, unknown):
                try:
                    raw = text.encode("utf-8")
                except UnicodeEncodeError:  # lone surrogates: not what anyone pushed
                    continue
                known[digest] = referrer_of(raw, digest, media_type)
                acct.remember_parsed(digest, known[digest])
        built = _Referrers(time.monotonic() + REFERRERS_TTL, {})
        for referrer in known.values():
            if referrer is not None:
                built.add(referrer)
        # A PUT that registered its manifest in ECR after the listing began is not in it.
        for when, repository, referrer in acct.recent_referrers:
            if repository == name and when >= started:
                built.add(referrer)
        if acct.generation == generation:
            acct.referrers[name] = built
        return built.subjects

    async def _redirect_blob(
        self, acct: _AccountFront, request: web.Request, name: str, digest: str
    ) -> web.StreamResponse:
        """ECR answers a blob GET with a 307 to S3; a blob the backend lacks gets the
        backend's own answer (404 BLOB_UNKNOWN)."""
        async with self.session.head(
            acct.backend_url.with_path(f"/v2/{name}/blobs/{digest}"), allow_redirects=False
        ) as head:
            status = head.status
        if status != 200:
            return await self._proxy(acct, request)
        acct.counters["redirected"] += 1
        return web.Response(
            status=307,
            headers={
                "Location": self.presign(acct, name, digest),
                "Docker-Distribution-API-Version": "registry/2.0",
            },
        )

    async def _patch(self, acct: _AccountFront, request: web.Request, upload: str) -> web.StreamResponse:
        """ECR: 201 where the spec says 202, and one PATCH per upload."""
        if upload in acct.patched:
            acct.counters["patch_refused"] += 1
            return ecr_error(
                400,
                "BLOB_UPLOAD_INVALID",
                "ECR accepts one PATCH per blob upload: this upload already had one "
                "(upload the blob as one streamed request)",
            )

        def accepted(status: int) -> int:
            if status == 202:
                acct.patched[upload] = None
                while len(acct.patched) > MAX_PATCHED_UPLOADS:
                    del acct.patched[next(iter(acct.patched))]
                return 201
            return status

        return await self._proxy(acct, request, status=accepted)

    # -- streaming proxy ------------------------------------------------------------------
    async def _proxy(
        self,
        acct: _AccountFront,
        request: web.Request,
        *,
        query: str | None = None,
        status: Callable[[int], int] | None = None,
    ) -> web.StreamResponse:
        headers = _forward_headers(request.headers)
        data: AsyncIterator[bytes] | None = None
        if request.body_exists:
            # Stream the body: blobs can be GiBs. With the client's Content-Length the
            # upstream request carries it too; without it (chunked) it goes out chunked.
            if request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
            data = _iter_body(request)
        async with self.session.request(
            request.method,
            _backend_target(acct, request, query=query),
            headers=headers,
            data=data,
            allow_redirects=False,
        ) as upstream:
            if status is None:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            else:
                response = web.StreamResponse(status=status(upstream.status))
            _copy_response_headers(acct, request, upstream, response)
            return await _stream_body(request, upstream, response)


async def _stream_body(
    request: web.Request, upstream: aiohttp.ClientResponse, response: web.StreamResponse
) -> web.StreamResponse:
    """Send ``response`` with ``upstream``'s body streamed into it."""
    if upstream.content_length is not None:
        response.content_length = upstream.content_length
    await response.prepare(request)
    try:
        if request.method != "HEAD":
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
    except aiohttp.ClientError as exc:
        # The status line is gone already: cut the connection so the client sees a
        # truncated body instead of a short "complete" one.
        log.warning("backend stream broke: %s", exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def _iter_body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole request body, or None when it exceeds ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _backend_target(acct: _AccountFront, request: web.Request, *, query: str | None = None) -> URL:
    # Keep the path and query exactly as the client encoded them (upload state tokens).
    raw = request.raw_path
    if query is not None:
        raw = raw.partition("?")[0] + (f"?{query}" if query else "")
    return URL(str(acct.backend_url) + raw, encoded=True)


def _forward_headers(incoming: Any) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in incoming.items():
        if key.lower() not in _DROP_REQUEST:
            out.add(key, value)
    return out


def _copy_response_headers(
    acct: _AccountFront, request: web.Request, upstream: aiohttp.ClientResponse, response: web.StreamResponse
) -> None:
    backend = str(acct.backend_url)
    front = f"{request.scheme}://{request.host}"
    for key, value in upstream.headers.items():
        lower = key.lower()
        if lower in _DROP_RESPONSE:
            continue
        if lower == "location" and value.startswith(backend):
            # distribution builds absolute URLs from the Host it was called with (the
            # backend's); clients must come back through the front.
            value = front + value[len(backend) :]
        if lower == "content-type":
            response.headers[key] = value  # replace aiohttp's default, never duplicate
        else:
            response.headers.add(key, value)


def _buffered_reply(
    acct: _AccountFront, request: web.Request, upstream: aiohttp.ClientResponse, body: bytes
) -> web.Response:
    response = web.Response(status=upstream.status, reason=upstream.reason, body=body)
    _copy_response_headers(acct, request, upstream, response)
    return response


# -- process entry point ----------------------------------------------------------------------
async def serve(
    config: FrontConfig, stop: asyncio.Event | None = None, fds: dict[str, int] | None = None
) -> None:
    """Listen on every account's port until ``stop`` is set (or SIGTERM/SIGINT). ``fds``
    maps account ids to inherited listening sockets to serve on instead of binding."""
    front = EcrFront(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        if config.blob_redirect:
            # The blob host binds its own port (0: any free one): owned from the start.
            blob_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            blob_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blob_sock.bind((config.listen_host, config.blob_port))
            blob_sock.listen(128)
            blob_runner = web.AppRunner(front.blob_app(), access_log=None, handle_signals=False)
            await blob_runner.setup()
            runners.append(blob_runner)
            await web.SockSite(blob_runner, blob_sock).start()
            front.blob_base = f"http://{config.listen_host}:{blob_sock.getsockname()[1]}"
            log.info("blob host (S3 stand-in) on %s", front.blob_base)
        for acct in front.accounts:
            runner = web.AppRunner(front.app(acct), access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            fd = (fds or {}).get(acct.config.account_id)
            site: web.BaseSite
            if fd is not None:
                site = web.SockSite(runner, socket.socket(fileno=fd))
            else:
                site = web.TCPSite(runner, config.listen_host, acct.config.listen_port, reuse_address=True)
            await site.start()
            log.info(
                "account %s on port %s -> %s",
                acct.config.account_id,
                acct.config.listen_port,
                acct.config.backend,
            )
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        await front.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloudops.sandbox.ecr_front", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", required=True, type=Path, help="front config JSON")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--listen-fd",
        action="append",
        default=[],
        metavar="ACCOUNT_ID=FD",
        help="serve an account on an inherited listening socket (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    fds: dict[str, int] = {}
    for item in args.listen_fd:
        account_id, sep, fd = item.partition("=")
        if not sep or not fd.isdigit():
            parser.error(f"--listen-fd wants ACCOUNT_ID=FD, not {item!r}")
        fds[account_id] = int(fd)
    asyncio.run(serve(load_config(args.config), fds=fds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
