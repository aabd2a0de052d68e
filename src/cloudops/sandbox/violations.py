"""One of each best-practice violation, made on purpose in the sandbox so that users (and
the tests) see what the audit's findings look like: `cloudops demo --break`. ``repair``
undoes exactly these, so a later plain `cloudops demo` ends with a clean audit again.

    identity             prod's credentials swapped for preprod's (a credential override
                         of the audit's context only: nothing is written for it)
    source-repositories  a copy of the first source repository in qa's CodeCommit
    ecr-push-policy      preprod's first image repository lets qa push
    image-provenance     an image pushed straight into qa, never built in the build account
    deployment-package   a package in preprod's bucket the build account never published
    lifecycle-guard      qa's second image repository keeps only its newest tagged image:
                         the release images qa runs (older than the rogue image) would expire
    config               prod pointing at qa's database with qa's password, preprod's
                         author.env a symlink to qa's, an unparsable line in prod's author.env
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import botocore.exceptions

from cloudops.aws.account import AccountCredentials
from cloudops.aws.codecommit import CodeCommitRepositories
from cloudops.aws.ecr import desired_repository
from cloudops.config.envfile import read_env_file
from cloudops.config.tree import CONFIG_SUBDIR
from cloudops.oci import OCI_MANIFEST
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import Pipeline
from cloudops.registry import RegistrySession
from cloudops.sandbox.config_seed import write_config
from cloudops.sandbox.seed import build_image, publish_image

ROGUE_TAG = "hotfix-local"
ROGUE_VERSION = "hotfix-local"
ROGUE_SCALE = 0.01
KEEP_NEWEST_ONE = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "keep only the newest tagged image (a violation: releases run older ones)",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["*"],
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
}


def swapped_credentials(pipeline: Pipeline) -> dict[str, AccountCredentials]:
    """Credentials overrides for an audit context: the last stage gets the role of the one
    before it (prod acting in preprod), which the identity rule must catch."""
    last, before = pipeline.stages[-1], pipeline.stages[-2]
    other = pipeline.account(before)
    return {last: AccountCredentials(role_arn=f"arn:aws:iam::{other.account_id}:role/cloudops")}


def _accounts(pipeline: Pipeline) -> tuple[str, str, str]:
    """(qa, preprod, prod) by position: the first three stages after the build account."""
    stages = [s for s in pipeline.stages if s != pipeline.build_account]
    if len(stages) < 3:
        raise ValueError("the violations need three downstream stages (the sandbox has qa, preprod, prod)")
    return stages[0], stages[1], stages[2]


def introduce(context: PipelineContext) -> list[str]:
    """Break the sandbox once in each way; what was done, one line each."""
    pipeline = context.pipeline
    qa, preprod, prod = _accounts(pipeline)
    done = [f"identity: the audit runs with {prod}'s credentials replaced by {preprod}'s role"]
    sources = pipeline.source_repositories
    if sources is not None and sources.names:
        CodeCommitRepositories(context.session(qa)).create(sources.names[0], "a second copy")
        done.append(f"source-repositories: a copy of {sources.names[0]} in {qa}'s CodeCommit")
    image, other = pipeline.images[0], pipeline.images[1 % len(pipeline.images)]
    ecr: Any = context.session(preprod).client("ecr")
    ecr.set_repository_policy(repositoryName=image, policyText=json.dumps(_push_policy(pipeline, qa)))
    done.append(f"ecr-push-policy: {preprod}'s {image} lets {qa} push")
    time.sleep(1.1)  # moto records push times to the second: the rogue image is the newest
    digest = asyncio.run(_push_rogue_image(context, qa, other))
    done.append(f"image-provenance: {other}:{ROGUE_TAG} ({digest[:19]}) pushed straight into {qa}")
    qa_ecr: Any = context.session(qa).client("ecr")
    qa_ecr.put_lifecycle_policy(repositoryName=other, lifecyclePolicyText=json.dumps(KEEP_NEWEST_ONE))
    done.append(f"lifecycle-guard: {qa}'s {other} keeps only its newest tagged image")
    key = _rogue_package_key(pipeline)
    body = b"a package built by hand in " + preprod.encode()
    s3: Any = context.session(preprod).client("s3")
    s3.put_object(
        Bucket=pipeline.bucket(preprod),
        Key=key,
        Body=body,
        Metadata={"sha256": hashlib.sha256(body).hexdigest(), "version": ROGUE_VERSION},
    )
    done.append(
        f"deployment-package: s3://{pipeline.bucket(preprod)}/{key} never published in the build account"
    )
    done += _break_config(pipeline, qa, preprod, prod)
    return done


def _push_policy(pipeline: Pipeline, pusher: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LetQaPush",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{pipeline.account(pusher).account_id}:root"},
                "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart"],
            }
        ],
    }


async def _push_rogue_image(context: PipelineContext, account: str, repository: str) -> str:
    async with RegistrySession(context.keychain(account), context.transport_settings()) as pool:
        writer = pool.writer(context.registry_host(account))
        digest = await publish_image(writer, repository, ROGUE_TAG, scale=ROGUE_SCALE)
    # After a repair the registry still holds the tag (only ECR's API forgot it), so the
    # push above may have written nothing: register the image in ECR's API directly too.
    manifest, _, _ = build_image(repository, ROGUE_TAG, scale=ROGUE_SCALE)
    ecr: Any = context.session(account).client("ecr")
    _quietly(
        lambda: ecr.put_image(
            repositoryName=repository,
            imageManifest=manifest.decode(),
            imageManifestMediaType=OCI_MANIFEST,
            imageTag=ROGUE_TAG,
            imageDigest=digest,
        )
    )
    return digest


def _rogue_package_key(pipeline: Pipeline) -> str:
    key = PurePosixPath(pipeline.deployment_package.key)
    return str(key.parent / "versions" / ROGUE_VERSION / key.name)


def _break_config(pipeline: Pipeline, qa: str, preprod: str, prod: str) -> list[str]:
    base = pipeline.config_dir
    qa_live = read_env_file(base / qa / CONFIG_SUBDIR / "live.env").values()
    prod_live = base / prod / CONFIG_SUBDIR / "live.env"
    lines = prod_live.read_text().splitlines()
    replaced = {"EP_DB_HOSTNAME": qa_live.get("EP_DB_HOSTNAME"), "EP_DB_PASS": qa_live.get("EP_DB_PASS")}
    prod_live.write_text(
        "\n".join(
            f"{line.split('=', 1)[0]}={json.dumps(replaced[line.split('=', 1)[0]])}"
            if line.split("=", 1)[0] in replaced
            else line
            for line in lines
        )
        + "\n"
    )
    author = base / preprod / CONFIG_SUBDIR / "author.env"
    author.unlink()
    author.symlink_to(base / qa / CONFIG_SUBDIR / "author.env")
    with (base / prod / CONFIG_SUBDIR / "author.env").open("a") as handle:
        handle.write('EP_SMTP_PASS="pasted without its closing quote\n')
    return [
        f"config: {prod}'s live.env points at {qa}'s database host with {qa}'s password",
        f"config: {preprod}'s author.env is a symlink to {qa}'s",
        f"config: {prod}'s author.env has a line the dotenv parser cannot read",
    ]


def repair(context: PipelineContext) -> None:
    """Undo ``introduce`` (each step is a no-op when it was not broken) and rewrite every
    account's config clean."""
    pipeline = context.pipeline
    try:
        qa, preprod, _ = _accounts(pipeline)
    except ValueError:
        return
    sources = pipeline.source_repositories
    if sources is not None:
        for name in pipeline.stages:
            if name != sources.account:
                repos = CodeCommitRepositories(context.session(name))
                for repo in sources.names:
                    repos.delete(repo)
    ecr: Any = context.session(preprod).client("ecr")
    _quietly(lambda: ecr.delete_repository_policy(repositoryName=pipeline.images[0]))
    qa_ecr: Any = context.session(qa).client("ecr")
    other = pipeline.images[1 % len(pipeline.images)]
    _quietly(lambda: qa_ecr.batch_delete_image(repositoryName=other, imageIds=[{"imageTag": ROGUE_TAG}]))
    wanted = desired_repository(pipeline.repository_settings(other), qa)
    if wanted.manage_policies and wanted.lifecycle is not None:  # pipeline.yaml's own policy back
        lifecycle = json.dumps(wanted.lifecycle)
        _quietly(lambda: qa_ecr.put_lifecycle_policy(repositoryName=other, lifecyclePolicyText=lifecycle))
    else:
        _quietly(lambda: qa_ecr.delete_lifecycle_policy(repositoryName=other))
    s3: Any = context.session(preprod).client("s3")
    _quietly(lambda: s3.delete_object(Bucket=pipeline.bucket(preprod), Key=_rogue_package_key(pipeline)))
    write_config(pipeline, overwrite=True)


def _quietly(call: Callable[[], object]) -> None:
    # Repairing what is not broken ("no such policy / image / object"), or registering an
    # image ECR's API already has: both are success.
    with contextlib.suppress(botocore.exceptions.ClientError):
        call()
