"""The audit's signature rule: every image tag held in a stage listed in pipeline.yaml's
``verify.required_for`` carries a cosign signature over its exact digest that verifies
under one of the pipeline's keys (docs/signatures.md), as the promotion gate demands.

Which digests each account holds comes from the facts already read (ECR's
DescribeImages of every pipeline image's repository); the signatures are read from the
account's own registry (its host proven the account's first), concurrently and bounded.
Read calls only. A pipeline without ``verify.required_for`` has nothing to say here (no
result at all); an account that cannot be read is named in the note, never judged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import botocore.exceptions

from cloudops.audit.facts import AccountFacts
from cloudops.audit.findings import Finding, RuleResult
from cloudops.aws.sessions import aws_error
from cloudops.errors import CloudopsError
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.signatures import trusted_keys, verify_many
from cloudops.referrers import is_referrer_tag
from cloudops.signing.verify import Verification

RULE = "signatures"
TITLE = "every image in a stage that requires signatures carries a valid cosign signature"
WORKERS = 16
"""Images checked at once (each check is a few registry requests)."""


@dataclass(frozen=True)
class _Image:
    account: str
    repository: str
    digest: str
    tags: tuple[str, ...]


def signature_rule(
    context: PipelineContext, facts: dict[str, AccountFacts], *, workers: int = WORKERS
) -> tuple[list[Finding], RuleResult] | None:
    """An error finding per image (digest) of a required stage whose signature is missing
    or does not verify; a warning per image whose signature could not be read. None when
    the pipeline requires no signatures."""
    pipeline = context.pipeline
    if pipeline.verify is None or not pipeline.verify.required_for:
        return None
    try:
        keys = trusted_keys(pipeline)
    except CloudopsError as error:
        finding = Finding(
            RULE,
            "error",
            None,
            f"the signature keys of pipeline.yaml cannot be loaded: {error}",
            "name cosign public keys (cosign.pub) in verify.keys, relative to pipeline.yaml's folder",
            "pipeline.yaml",
        )
        return [finding], RuleResult(RULE, "failed", "no image checked")

    stages = [s for s in pipeline.stages if pipeline.requires_signature(s)]
    unread: list[str] = []
    images: list[_Image] = []
    for stage in stages:
        fact = facts.get(stage)
        if fact is None or not fact.verified or "image-provenance" in fact.unchecked:
            unread.append(f"{stage} (see the identity findings)")
            continue
        images += _images(fact, pipeline.images)

    findings: list[Finding] = []
    hosts: dict[str, str] = {}
    for stage in dict.fromkeys(i.account for i in images):
        try:
            hosts[stage] = context.checked_registry_host(stage)
        except CloudopsError as error:
            unread.append(f"{stage}: {error}")
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            unread.append(f"{stage}: {aws_error(exc, f'checking the registry of {stage!r}')}")
    checked = [i for i in images if i.account in hosts]
    if checked:
        verdicts = verify_many(
            context, hosts, [(i.account, i.repository, i.digest) for i in checked], keys, workers
        )
        build = pipeline.build_account
        for image, verdict in zip(checked, verdicts, strict=True):
            if isinstance(verdict, Verification):
                if not verdict.ok:
                    findings.append(_unsigned(image, verdict, build))
            else:
                findings.append(_unreadable(image, verdict))

    if unread and len(unread) == len(stages):
        return findings, RuleResult(RULE, "skipped", "no stage could be read: " + "; ".join(unread))
    parts = [f"{len(checked)} images in {', '.join(stages)} checked against {len(keys)} keys"]
    if unread:
        parts.append("not read: " + "; ".join(unread))
    note = "; ".join(parts)
    return findings, RuleResult(RULE, "failed" if any(f.counts for f in findings) else "passed", note)


def _images(fact: AccountFacts, repositories: Sequence[str]) -> list[_Image]:
    """The tagged images of the pipeline's repositories: tags that carry referrers
    (signatures themselves, ``sha256-<hex>``) are not images."""
    found = []
    for repository in repositories:
        repo_facts = fact.repositories.get(repository)
        if repo_facts is None:
            continue
        for digest, tags in sorted(repo_facts.images.items()):
            versions = tuple(sorted(t for t in tags if not is_referrer_tag(t)))
            if versions:
                found.append(_Image(fact.name, repository, digest, versions))
    return found


def _name(image: _Image) -> str:
    return f"{image.repository}@{image.digest} (tags {', '.join(image.tags[:5])})"


def _unsigned(image: _Image, verdict: Verification, build: str) -> Finding:
    state = "is not signed" if verdict.state == "unsigned" else "has no signature that verifies"
    return Finding(
        rule=RULE,
        severity="error",
        account=image.account,
        what=f"image {_name(image)} in {image.account} {state} under the pipeline's keys: {verdict.reason}",
        fix=f"sign it in {build} (cloudops sign {image.repository}:{image.tags[0]} --key cosign.key) and "
        f"promote it into {image.account} again, which copies its signature; or remove it from "
        f"{image.account}",
        where=f"{image.repository}@{image.digest}",
    )


def _unreadable(image: _Image, error: CloudopsError) -> Finding:
    return Finding(
        rule=RULE,
        severity="warning",
        account=image.account,
        what=f"the signatures of image {_name(image)} in {image.account} could not be read: {error}",
        fix=f"check {image.account}'s registry and credentials, then audit again "
        f"(cloudops verify {image.repository}:{image.tags[0]} --account {image.account})",
        where=f"{image.repository}@{image.digest}",
    )
