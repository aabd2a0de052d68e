"""Signing images in the build account and checking them in any account: `cloudops sign`
and `cloudops verify` (docs/signatures.md).

Signatures are written only where images are built: the build account's registry, with
credentials the account guard proves act in the build account. Every later stage gets
them by promotion (the copy engine carries referrers), never by signing there."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudops.aws.guard import require_account
from cloudops.copy.referrers import ReferrerLookup
from cloudops.errors import InputError, RefusedError
from cloudops.oci import Descriptor
from cloudops.pipeline.context import PipelineContext
from cloudops.refs import validate_repository, validate_tag
from cloudops.registry.session import RegistrySession
from cloudops.signing.keys import PublicKey, parse_public_key
from cloudops.signing.sign import sign_image
from cloudops.signing.verify import Verification, verify_image


@dataclass(frozen=True)
class Target:
    repository: str
    tag: str

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass
class SignResult:
    target: Target
    digest: str
    status: str
    """"signed" (a new signature written) or "already signed" (by this key: nothing written)."""
    signature: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "image": self.target.name,
            "digest": self.digest,
            "status": self.status,
            "signature_digest": self.signature,
        }


@dataclass
class VerifyResult:
    target: Target
    verification: Verification

    def as_dict(self) -> dict[str, object]:
        return {"image": self.target.name, **self.verification.as_dict()}


def parse_target(text: str) -> Target:
    """REPOSITORY:TAG of a pipeline account's registry."""
    repository, colon, tag = text.rpartition(":")
    if not colon or "/" in tag:
        raise InputError(f"{text!r} is not REPOSITORY:TAG", hint="name an image as ep/cortex:8.5.0")
    validate_repository(repository)
    validate_tag(tag)
    return Target(repository, tag)


def sign_images(
    context: PipelineContext,
    targets: Sequence[Target],
    private_key: ec.EllipticCurvePrivateKey,
    *,
    account: str | None = None,
) -> list[SignResult]:
    """Sign every target's digest in the build account (an image already signed by this
    key is left as it is: re-running writes nothing)."""
    pipeline = context.pipeline
    build = pipeline.build_account
    if account is not None and account != build:
        pipeline.account(account)  # an unknown account is an input error, named
        raise RefusedError(
            f"signatures are written in the build account only ({build!r}), not in {account!r}",
            hint="sign in the build account; promotion carries the signatures to every later stage",
        )
    require_account(context.session(build), purpose=f"sign images in {build!r}")
    host = context.checked_registry_host(build)
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = parse_public_key(pem, "the signing key")
    return asyncio.run(_sign(context, host, build, targets, private_key, public))


async def _sign(
    context: PipelineContext,
    host: str,
    build: str,
    targets: Sequence[Target],
    private_key: ec.EllipticCurvePrivateKey,
    public: PublicKey,
) -> list[SignResult]:
    async with RegistrySession(context.keychain(build), context.transport_settings()) as pool:
        writer = pool.writer(host)
        lookup = ReferrerLookup()
        results: list[SignResult] = []
        for target in targets:
            head = await writer.head_manifest(target.repository, target.tag)
            if head is None:
                raise InputError(
                    f"{target.name} does not exist in {build!r}",
                    hint=f"list the tags with `cloudops tags {host}/{target.repository}`",
                )
            existing = await verify_image(writer, target.repository, head.digest, [public], lookup=lookup)
            if existing.ok:
                results.append(SignResult(target, head.digest, "already signed"))
                continue
            subject = Descriptor(head.media_type, head.digest, head.size)
            signature = await sign_image(writer, target.repository, subject, private_key)
            results.append(SignResult(target, head.digest, "signed", signature))
        return results


def verify_images(
    context: PipelineContext, account: str, targets: Sequence[Target], keys: Sequence[PublicKey]
) -> list[VerifyResult]:
    """Check each target's signature in ``account`` (read only)."""
    context.pipeline.account(account)
    require_account(context.session(account), purpose=f"read from {account!r}")
    host = context.checked_registry_host(account)
    return asyncio.run(_verify(context, host, account, targets, keys))


async def _verify(
    context: PipelineContext, host: str, account: str, targets: Sequence[Target], keys: Sequence[PublicKey]
) -> list[VerifyResult]:
    async with RegistrySession(context.keychain(account), context.transport_settings()) as pool:
        reader = pool.reader(host)
        lookup = ReferrerLookup()

        async def one(target: Target) -> VerifyResult:
            head = await reader.head_manifest(target.repository, target.tag)
            if head is None:
                raise InputError(
                    f"{target.name} does not exist in {account!r}",
                    hint=f"list the tags with `cloudops tags {host}/{target.repository}`",
                )
            found = await verify_image(reader, target.repository, head.digest, keys, lookup=lookup)
            return VerifyResult(target, found)

        return list(await asyncio.gather(*(one(t) for t in targets)))
