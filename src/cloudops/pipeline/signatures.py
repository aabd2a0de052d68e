"""The signature gate: a stage listed in pipeline.yaml's ``verify.required_for`` accepts
an image only when a cosign signature naming its exact digest verifies under one of the
pipeline's keys (docs/signatures.md). Checked at the source, before anything is written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloudops.copy.referrers import ReferrerLookup
from cloudops.errors import CloudopsError, InputError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import Pipeline
from cloudops.registry.client import RegistryReader
from cloudops.registry.session import RegistrySession
from cloudops.signing.keys import PublicKey, load_public_key
from cloudops.signing.verify import Verification, verify_image


def trusted_keys(pipeline: Pipeline) -> list[PublicKey]:
    """The pipeline's verify.keys, loaded (a missing or wrong file: exit 2, named)."""
    paths = pipeline.verify_key_paths()
    if not paths:
        raise InputError(
            "pipeline.yaml names no signature keys (verify.keys)",
            hint="add verify: {keys: [path/to/cosign.pub]} to pipeline.yaml",
        )
    return [load_public_key(path) for path in paths]


@dataclass
class SignatureGate:
    keys: list[PublicKey]
    _lookup: ReferrerLookup = field(default_factory=ReferrerLookup)

    @classmethod
    def for_stage(cls, pipeline: Pipeline, stage: str) -> SignatureGate | None:
        """The gate of ``stage``, or None when it accepts unsigned images."""
        if not pipeline.requires_signature(stage):
            return None
        return cls(trusted_keys(pipeline))

    async def check(self, reader: RegistryReader, repository: str, digest: str) -> Verification:
        return await verify_image(reader, repository, digest, self.keys, lookup=self._lookup)


SignatureTarget = tuple[str, str, str]
"""(account, repository, digest)"""


def verify_many(
    context: PipelineContext,
    hosts: dict[str, str],
    targets: Sequence[SignatureTarget],
    keys: Sequence[PublicKey],
    workers: int,
) -> list[Verification | CloudopsError]:
    """Check every target in its account's registry (``hosts``: account -> checked host),
    ``workers`` at once in one registry session; a registry failure is returned for its
    target, never raised (status and audit report it and go on)."""
    return asyncio.run(_verify_many(context, hosts, targets, keys, workers))


async def _verify_many(
    context: PipelineContext,
    hosts: dict[str, str],
    targets: Sequence[SignatureTarget],
    keys: Sequence[PublicKey],
    workers: int,
) -> list[Verification | CloudopsError]:
    bound = asyncio.Semaphore(max(1, workers))
    async with RegistrySession(context.keychain(*hosts), context.transport_settings()) as pool:
        readers = {name: pool.reader(host) for name, host in hosts.items()}
        lookup = ReferrerLookup()  # remembers which registries serve the referrers API

        async def one(target: SignatureTarget) -> Verification | CloudopsError:
            account, repository, digest = target
            async with bound:
                try:
                    return await verify_image(readers[account], repository, digest, keys, lookup=lookup)
                except CloudopsError as error:
                    return error

        return list(await asyncio.gather(*(one(t) for t in targets)))
