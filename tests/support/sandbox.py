"""The sandbox world for tests: started once per module, emptied between tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import yaml

from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.init import init_account
from cloudops.pipeline.model import Approval, Pipeline, load_pipeline
from cloudops.registry import RegistrySession
from cloudops.sandbox import world
from cloudops.sandbox.seed import publish_image
from tests.support.faults import FaultProxy


@contextmanager
def running_sandbox(root: Path) -> Iterator[world.SandboxState]:
    state = world.up(root, detach=False)
    saved = dict(os.environ)
    os.environ.update(world.env_exports(state))
    try:
        yield state
    finally:
        os.environ.clear()
        os.environ.update(saved)
        world.down(root)


def context_for(pipeline: Pipeline | Path) -> PipelineContext:
    return PipelineContext(pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline))


def without_approvals(context: PipelineContext) -> PipelineContext:
    """The same world with a pipeline whose stages require no approval: for tests of
    copying single images or packages into the last stage, which the sandbox's pipeline
    (like any pipeline by default) takes only as an approved release."""
    pipeline = context.pipeline
    update = {"approvals": {stage: Approval(required=False) for stage in pipeline.stages[1:]}}
    return PipelineContext(pipeline.model_copy(update=update))


def pipeline_without_approvals(pipeline_file: Path, directory: Path) -> Path:
    """A copy of the pipeline file in ``directory`` whose stages require no approval (for
    the CLI, as :func:`without_approvals` is for the library)."""
    document = yaml.safe_load(pipeline_file.read_text())
    document["approvals"] = {stage: {"required": False} for stage in document["stages"][1:]}
    copy = directory / "pipeline-without-approvals.yaml"
    copy.write_text(yaml.safe_dump(document))
    return copy


def init_all(context: PipelineContext) -> None:
    for name in context.pipeline.stages:
        init_account(context, name)


def publish(context: PipelineContext, account: str, repository: str, tag: str, *, scale: float = 0.05) -> str:
    """Push a synthetic image straight into an account's registry (as a build would)."""

    async def go() -> str:
        async with RegistrySession(context.keychain(account), context.transport_settings()) as pool:
            writer = pool.writer(context.registry_host(account))
            return await publish_image(writer, repository, tag, scale=scale)

    return asyncio.run(go())


def assumed_keys(state: world.SandboxState, account: str) -> dict[str, str]:
    """AWS CLI environment for acting in ``account`` of the sandbox."""
    sts = boto3.client(
        "sts",
        endpoint_url=state.moto_url,
        region_name=world.REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{state.account_id(account)}:role/test", RoleSessionName="cloudops-test"
    )["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_DEFAULT_REGION": world.REGION,
    }


def registry_token(context: PipelineContext, account: str) -> str:
    creds = context.keychain(account).resolve(context.registry_host(account))
    assert creds is not None
    return f"{creds.username}:{creds.password}"


# --- reading the destination itself (ECR, the registry, S3), never cloudops' own account ---


def ecr_tags(context: PipelineContext, account: str, repository: str) -> dict[str, str]:
    """tag -> digest of ``repository`` in the account's ECR, from ECR's control plane
    (boto3 describe_images); {} when the repository does not exist."""
    ecr = context.session(account).client("ecr")
    try:
        pages = ecr.get_paginator("describe_images").paginate(repositoryName=repository)
        details = [d for page in pages for d in page["imageDetails"]]
    except ecr.exceptions.RepositoryNotFoundException:
        return {}
    return {tag: str(d["imageDigest"]) for d in details for tag in d.get("imageTags", [])}


def registry_digest(context: PipelineContext, account: str, repository: str, reference: str) -> str | None:
    """sha256 of the manifest the account's registry serves for ``reference``, every blob
    it names checked present; None when the registry has no such manifest."""
    import hashlib

    import httpx

    from cloudops.oci import ACCEPT_MANIFESTS

    user, password = registry_token(context, account).split(":", 1)
    base = f"http://{context.registry_host(account)}/v2/{repository}"
    with httpx.Client(auth=(user, password), timeout=30) as client:
        answer = client.get(f"{base}/manifests/{reference}", headers={"Accept": ACCEPT_MANIFESTS})
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        manifest = answer.json()
        for blob in [manifest.get("config"), *manifest.get("layers", [])]:
            if blob is not None:
                assert client.head(f"{base}/blobs/{blob['digest']}").status_code == 200, "a missing blob"
        return "sha256:" + hashlib.sha256(answer.content).hexdigest()


def proxied_world(
    sandbox: world.SandboxState, s3_proxy: FaultProxy, qa_proxy: FaultProxy, directory: Path
) -> tuple[PipelineContext, Path]:
    """A clean world, and a pipeline.yaml in ``directory`` whose AWS endpoint and qa
    registry go through the two fault proxies (the context itself talks to them directly)."""
    s3_proxy.clear()
    qa_proxy.clear()
    world.reset(sandbox)
    ctx = context_for(sandbox.pipeline)
    init_all(ctx)
    text = sandbox.pipeline.read_text()
    proxied = text.replace(f'aws: "{sandbox.moto_url}"', f'aws: "{s3_proxy.url}"')
    proxied = proxied.replace(f'qa: "{sandbox.registries["qa"]}"', f'qa: "{qa_proxy.host}"')
    assert proxied.count(s3_proxy.url) == 1 and proxied.count(qa_proxy.host) == 1, "pipeline not proxied"
    pipeline = directory / "pipeline.yaml"
    pipeline.write_text(proxied)
    s3_proxy.log.clear()
    qa_proxy.log.clear()
    return ctx, pipeline
