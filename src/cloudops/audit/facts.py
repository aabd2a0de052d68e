"""What the audit reads from each live account (the only I/O of the audit). Each account
is read with its own credentials; a part that cannot be read is noted, never fatal, so
one unreachable account still leaves an audit of the others.

Nothing more is read from an account whose credentials act in another account: it would
describe the wrong account.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import botocore.exceptions

from cloudops.aws import s3_owner
from cloudops.aws.codecommit import CodeCommitRepositories
from cloudops.aws.ecr import (
    RepositoryState,
    lifecycle_policy_text,
    repository_from_description,
    repository_policy_text,
)
from cloudops.aws.guard import caller_account
from cloudops.aws.s3_json import read_json_object
from cloudops.aws.sessions import AccountSession, aws_error
from cloudops.errors import CloudopsError
from cloudops.package_store import CurrentPointer
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.records import HISTORY_PREFIX

_SHA256_HEX = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
POINTER_NAME = "current.json"


@dataclass
class RepositoryFacts:
    policy: str | None = None
    images: dict[str, list[str]] = field(default_factory=dict)  # digest -> tags
    # What DescribeRepositories says (tag mutability, scan on push, encryption); None
    # when not read.
    state: RepositoryState | None = None
    lifecycle: str | None = None  # the lifecycle policy's text; read for pipeline images only
    lifecycle_read: bool = False


@dataclass(frozen=True)
class PackageObject:
    key: str
    sha256: str | None  # hex; None when the object records none


@dataclass
class AccountFacts:
    name: str
    account_id: str
    bucket: str
    error: str | None = None  # why the account could not be reached
    caller_account: str | None = None
    caller_arn: str | None = None
    source_repositories: dict[str, bool] = field(default_factory=dict)
    repositories: dict[str, RepositoryFacts] = field(default_factory=dict)
    packages: list[PackageObject] = field(default_factory=list)
    current_package: dict[str, str] | None = None  # {"version", "sha256"} of current.json
    invalid_pointer: str | None = None  # why current.json is not a valid pointer, when it is not
    # Who owns the account's bucket (S3's bucket owner condition): "own", "missing" (not
    # made yet), "foreign" (another account's); None when not read. For a foreign one, the
    # pipeline account that owns it, when it is one of them.
    bucket_state: Literal["own", "missing", "foreign"] | None = None
    bucket_owner: str | None = None
    unchecked: dict[str, str] = field(default_factory=dict)  # rule -> why it was not checked

    @property
    def verified(self) -> bool:
        """Reached, with credentials that act in this very account."""
        return self.error is None and self.caller_account == self.account_id

    def checked(self, rule: str) -> bool:
        return self.verified and rule not in self.unchecked

    def summary(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "reachable": self.error is None,
            "caller_account": self.caller_account,
            "verified": self.verified,
            "error": self.error,
            "unchecked": self.unchecked,
        }


def gather(context: PipelineContext, name: str) -> AccountFacts:
    pipeline = context.pipeline
    facts = AccountFacts(name, pipeline.account(name).account_id, pipeline.bucket(name))
    try:
        session = context.session(name)
        facts.caller_account, facts.caller_arn = caller_account(session)
    except CloudopsError as error:
        facts.error = str(error)
        return facts
    if not facts.verified:
        return facts
    _part(facts, "ownership", lambda: _bucket_ownership(facts, context, session))
    sources = pipeline.source_repositories
    if sources is not None and sources.names:
        _part(facts, "source-repositories", lambda: _sources(facts, session, sources.names))
    _part(facts, "image-provenance", lambda: _repositories(facts, session))
    if "image-provenance" in facts.unchecked:
        facts.unchecked["ecr-push-policy"] = facts.unchecked["image-provenance"]
        facts.unchecked["repository-settings"] = facts.unchecked["image-provenance"]
    elif pipeline.repositories is not None:  # without the section, lifecycles are not managed
        _part(facts, "repository-settings", lambda: _lifecycles(facts, session, pipeline.images))
    _part(facts, "deployment-package", lambda: _packages(facts, session, pipeline.deployment_package.key))
    return facts


def _part(facts: AccountFacts, rule: str, read: Any) -> None:
    try:
        read()
    except CloudopsError as error:
        facts.unchecked[rule] = str(error)


def _bucket_ownership(facts: AccountFacts, context: PipelineContext, session: AccountSession) -> None:
    try:
        exists = s3_owner.check_owner(session.client("s3"), session.owned_buckets, facts.bucket)
    except s3_owner.BucketOwnerError:
        facts.bucket_state = "foreign"
        facts.bucket_owner = _owner_among(context, facts.bucket, facts.name)
        return
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"checking who owns bucket {facts.bucket}") from None
    facts.bucket_state = "own" if exists else "missing"


def _owner_among(context: PipelineContext, bucket: str, name: str) -> str | None:
    """Which other account of the pipeline owns ``bucket`` (the owner condition with each
    one's id), or None when none of them does or cannot be asked."""
    for other in context.pipeline.accounts:
        if other == name:
            continue
        try:
            session = context.session(other)
            if s3_owner.check_owner(session.client("s3"), session.owned_buckets, bucket):
                return other
        except (CloudopsError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            continue
    return None


def _sources(facts: AccountFacts, session: AccountSession, names: list[str]) -> None:
    repos = CodeCommitRepositories(session)
    facts.source_repositories = {name: repos.exists(name) for name in names}


def _repositories(facts: AccountFacts, session: AccountSession) -> None:
    """Every repository of the account (not only the pipeline's images: a repository
    made by hand is where an image pushed outside the pipeline would be)."""
    ecr: Any = session.client("ecr")
    what = f"reading ECR repositories of {facts.name!r}"
    try:
        for page in ecr.get_paginator("describe_repositories").paginate(registryId=facts.account_id):
            for repo in page.get("repositories", []):
                facts.repositories[repo["repositoryName"]] = RepositoryFacts(
                    state=repository_from_description(repo)
                )
        for name, repo_facts in facts.repositories.items():
            repo_facts.policy = repository_policy_text(ecr, facts.account_id, name)
            pages = ecr.get_paginator("describe_images").paginate(
                registryId=facts.account_id, repositoryName=name
            )
            for page in pages:
                for image in page.get("imageDetails", []):
                    repo_facts.images[image["imageDigest"]] = list(image.get("imageTags", []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, what) from None


def _lifecycles(facts: AccountFacts, session: AccountSession, images: list[str]) -> None:
    """The lifecycle policy of every pipeline image's repository (the settings rule)."""
    ecr: Any = session.client("ecr")
    try:
        for name in images:
            repo_facts = facts.repositories.get(name)
            if repo_facts is not None:
                repo_facts.lifecycle = lifecycle_policy_text(ecr, facts.account_id, name)
                repo_facts.lifecycle_read = True
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"reading ECR lifecycle policies of {facts.name!r}") from None


def package_prefix(key: str) -> str:
    """deployment-package/ext-deployment-package.zip -> deployment-package/ (the folder that
    holds the versions, whatever layout package.py keeps inside it)."""
    parent = str(PurePosixPath(key).parent)
    return "" if parent == "." else parent + "/"


def _packages(facts: AccountFacts, session: AccountSession, key: str) -> None:
    s3: Any = session.client("s3")
    prefix = package_prefix(key)
    what = f"reading deployment packages in bucket {facts.bucket}"
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=facts.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                object_key = str(item["Key"])
                if object_key.startswith(HISTORY_PREFIX):
                    continue
                if object_key == prefix + POINTER_NAME:
                    facts.current_package = _pointer(facts, s3, object_key)
                elif not object_key.endswith(".json"):
                    facts.packages.append(
                        PackageObject(object_key, _object_sha256(s3, facts.bucket, object_key))
                    )
    except botocore.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchBucket", "404"):
            return  # no bucket, no package: `cloudops init` makes the bucket
        raise aws_error(exc, what) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_error(exc, what) from None
    if facts.current_package is None:
        # No pointer file: a plain layout keeps the package at the pipeline key itself.
        exact = next((p for p in facts.packages if p.key == key and p.sha256), None)
        if exact is not None and exact.sha256 is not None:
            facts.current_package = {"version": exact.key, "sha256": exact.sha256}


def _pointer(facts: AccountFacts, s3: Any, key: str) -> dict[str, str] | None:
    """current.json read bounded and validated (aws/s3_json.py); an invalid one is noted
    in ``facts.invalid_pointer`` (a finding of the deployment-package rule), never raised."""
    found = read_json_object(s3, facts.bucket, key, CurrentPointer)
    if found.value is None:
        facts.invalid_pointer = f"s3://{facts.bucket}/{key} is not a valid package pointer: {found.problem}"
        return None
    sha = normalize_sha256(found.value.sha256)
    return {"version": found.value.version, "sha256": sha} if sha else None


def _object_sha256(s3: Any, bucket: str, key: str) -> str | None:
    """The object's whole-content SHA-256: our metadata first (package.py writes it), else
    S3's ChecksumSHA256 unless that is a multipart composite ("...-N"), which is not."""
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    metadata = {str(k).lower(): str(v) for k, v in head.get("Metadata", {}).items()}
    sha = normalize_sha256(metadata.get("sha256", ""))
    if sha:
        return sha
    checksum = str(head.get("ChecksumSHA256") or "")
    if checksum and "-" not in checksum:
        try:
            raw = base64.b64decode(checksum, validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.hex() if len(raw) == 32 else None
    return None


def normalize_sha256(value: str) -> str | None:
    match = _SHA256_HEX.fullmatch(value.strip().lower())
    return match.group(1) if match else None
