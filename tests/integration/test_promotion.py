"""Promotion through four accounts on the sandbox: moto server + ECR-like registries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from cloudops.oci import ACCEPT_MANIFESTS
from cloudops.pipeline.promote import ImageSpec, promote_images
from cloudops.sandbox import world
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import (
    assumed_keys,
    publish,
    registry_token,
    without_approvals,
)


def _digest_in(context, account: str, repository: str, tag: str) -> str | None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            registry_token(context, account),
            f"docker://{context.registry_host(account)}/{repository}:{tag}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        assert "manifest unknown" in result.stderr.lower() or "not found" in result.stderr.lower(), (
            result.stderr
        )
        return None
    import hashlib

    return "sha256:" + hashlib.sha256(result.stdout.encode()).hexdigest()


def test_full_promotion_keeps_the_digest_in_every_account(ctx, sandbox) -> None:  # type: ignore[no-untyped-def]
    digest = publish(ctx, "build", "ep/cortex", "8.5.0")
    # A pipeline that does not require approvals in prod (the sandbox's does: see below).
    for stage in ("qa", "preprod", "prod"):
        [result] = promote_images(without_approvals(ctx), stage, [ImageSpec("ep/cortex", "8.5.0")])
        assert result.status == "promoted", result.error
        assert result.source_digest == digest and result.recorded

    for account in ("build", "qa", "preprod", "prod"):
        assert _digest_in(ctx, account, "ep/cortex", "8.5.0") == digest  # skopeo sees it
    described = subprocess.run(
        [
            "/usr/bin/aws",
            "--endpoint-url",
            sandbox.moto_url,
            "ecr",
            "describe-images",
            "--repository-name",
            "ep/cortex",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**assumed_keys(sandbox, "prod"), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    details = json.loads(described.stdout)["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in details] == [(digest, ["8.5.0"])]


def test_cli_promotes_records_and_reports_already_promoted_without_writing(ctx, sandbox) -> None:  # type: ignore[no-untyped-def]
    digest = publish(ctx, "build", "ep/search", "1.0")
    first = cloudops("promote", "image", "--to", "qa", "--repository", "ep/search", "--tag", "1.0", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["images"][0]["status"] == "promoted"

    storage = sandbox.root / "registries" / "qa" / "storage"
    before = {p: p.stat().st_mtime_ns for p in storage.rglob("*")}
    again = cloudops("promote", "image", "--to", "qa", "--repository", "ep/search", "--tag", "1.0", "--json")
    assert again.returncode == 0, again.stderr
    image = json.loads(again.stdout)["images"][0]
    assert (image["status"], image["bytes_uploaded"], image["source_digest"]) == (
        "already-promoted",
        0,
        digest,
    )
    assert {p: p.stat().st_mtime_ns for p in storage.rglob("*")} == before  # IMMUTABLE repo untouched

    history = cloudops("history", "--account", "qa", "--json")
    assert history.returncode == 0, history.stderr
    records = json.loads(history.stdout)["records"]
    assert [(r["repository"], r["result"], r["bytes"] > 0) for r in records] == [
        ("ep/search", "promoted", True),
        ("ep/search", "already-promoted", False),
    ]
    assert records[0]["source_digest"] == digest and records[0]["destination_account_id"] == "222222222222"


def test_guard_refuses_credentials_of_another_account(ctx, sandbox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(ctx, "build", "ep/batch", "2")
    text = sandbox.pipeline.read_text().replace(
        'role_arn: "arn:aws:iam::222222222222:role/cloudops"',
        'role_arn: "arn:aws:iam::333333333333:role/cloudops"',
    )
    wrong = tmp_path / "pipeline.yaml"
    wrong.write_text(text)

    result = cloudops(
        "promote", "image", "--to", "qa", "--repository", "ep/batch", "--tag", "2", "--pipeline", str(wrong)
    )

    assert_clean_failure(result, 3, "belong to account 333333333333")
    assert _digest_in(ctx, "qa", "ep/batch", "2") is None


def test_stage_skipping_is_refused(ctx) -> None:  # type: ignore[no-untyped-def]
    publish(ctx, "build", "ep/cm", "3")
    result = cloudops(
        "promote", "image", "--to", "prod", "--from", "build", "--repository", "ep/cm", "--tag", "3"
    )
    assert_clean_failure(result, 3, "skips qa, preprod")
    assert _digest_in(ctx, "prod", "ep/cm", "3") is None


def test_tags_never_move(ctx) -> None:  # type: ignore[no-untyped-def]
    publish(ctx, "build", "ep/batch", "7.0")
    other = publish(ctx, "qa", "ep/batch", "7.0", scale=0.07)  # built outside the pipeline
    result = cloudops("promote", "image", "--to", "qa", "--repository", "ep/batch", "--tag", "7.0")
    assert_clean_failure(result, 3, "tags never move", "already names")
    assert _digest_in(ctx, "qa", "ep/batch", "7.0") == other


def test_expired_registry_token_mid_run_is_refreshed(ctx, sandbox) -> None:  # type: ignore[no-untyped-def]
    digest = publish(ctx, "build", "ep/integration", "4")
    world.expire_token(sandbox, "qa", count=1)
    world.expire_token(sandbox, "build", count=1)
    [result] = promote_images(ctx, "qa", [ImageSpec("ep/integration", "4")])
    assert result.status == "promoted", result.error
    # Both expiries were met and survived: the next plain request is answered normally.
    for account in ("qa", "build"):
        user, password = registry_token(ctx, account).split(":", 1)
        answer = httpx.head(
            f"http://{ctx.registry_host(account)}/v2/ep/integration/manifests/4",
            auth=(user, password),
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        assert answer.status_code == 200
    assert _digest_in(ctx, "qa", "ep/integration", "4") == digest


def test_missing_destination_repository_says_run_init(ctx, sandbox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import boto3

    ecr = boto3.client(
        "ecr",
        endpoint_url=sandbox.moto_url,
        **{k.lower(): v for k, v in assumed_keys(sandbox, "qa").items() if k != "AWS_DEFAULT_REGION"},
        region_name="us-west-2",
    )
    ecr.delete_repository(repositoryName="ep/activemq", force=True)
    publish(ctx, "build", "ep/activemq", "5")
    result = cloudops("promote", "image", "--to", "qa", "--repository", "ep/activemq", "--tag", "5")
    assert_clean_failure(result, 2, "does not exist in account 'qa'", "cloudops init qa")


def test_missing_source_tag_and_unknown_account(ctx) -> None:  # type: ignore[no-untyped-def]
    result = cloudops("promote", "image", "--to", "qa", "--repository", "ep/cortex", "--tag", "nope")
    assert_clean_failure(result, 2, "does not exist in account 'build'")
    result = cloudops("promote", "image", "--to", "staging", "--repository", "ep/cortex", "--tag", "1")
    assert_clean_failure(result, 2, "unknown account 'staging'")


def _account_as_aws_sees_it(sandbox: world.SandboxState, account: str) -> dict[str, object]:
    """The account's ECR repositories and S3 buckets, read with boto3 and the account's own
    keys (not through cloudops)."""
    import boto3

    keys = assumed_keys(sandbox, account)
    kwargs = {
        "endpoint_url": sandbox.moto_url,
        "region_name": world.REGION,
        "aws_access_key_id": keys["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": keys["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": keys["AWS_SESSION_TOKEN"],
    }
    ecr, s3 = boto3.client("ecr", **kwargs), boto3.client("s3", **kwargs)
    repositories = {
        r["repositoryName"]: r["imageTagMutability"] for r in ecr.describe_repositories()["repositories"]
    }
    buckets = {
        b["Name"]: s3.get_bucket_versioning(Bucket=b["Name"]).get("Status")
        for b in s3.list_buckets()["Buckets"]
    }
    return {"repositories": repositories, "buckets": buckets}


def test_init_is_idempotent_and_dry_run_changes_nothing(sandbox) -> None:  # type: ignore[no-untyped-def]
    world.reset(sandbox)
    empty = {"repositories": {}, "buckets": {}}
    assert _account_as_aws_sees_it(sandbox, "qa") == empty
    dry = cloudops("init", "qa", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["repositories"]["ep/cortex"] == "created"
    assert _account_as_aws_sees_it(sandbox, "qa") == empty, "the dry run created something"
    first = cloudops("init", "qa", "--json")
    assert json.loads(first.stdout)["changed"] is True
    after = _account_as_aws_sees_it(sandbox, "qa")
    assert after["repositories"] == dict.fromkeys(world.IMAGES, "IMMUTABLE")
    assert after["buckets"] == {"ep-cloudops-222222222222": "Enabled"}
    second = cloudops("init", "qa")
    assert second.returncode == 0 and "nothing changed" in second.stderr
    assert _account_as_aws_sees_it(sandbox, "qa") == after


def test_bad_pipeline_file_is_one_clear_message(tmp_path: Path) -> None:
    broken = tmp_path / "pipeline.yaml"
    broken.write_text(
        "accounts:\n"
        "  build: {account_id: '111111111111', region: us-west-2, builds_images: true}\n"
        "stages: [build, qa]\n"
    )
    result = cloudops(
        "promote", "image", "--to", "qa", "--repository", "ep/x", "--tag", "1", "--pipeline", str(broken)
    )
    assert_clean_failure(result, 2, f"{broken}:3: stage 'qa' is not an account")


def test_a_single_image_into_a_stage_that_requires_approvals_is_refused(ctx) -> None:  # type: ignore[no-untyped-def]
    """prod takes what an approved release plan names, never a single image passed around
    the approval (the sandbox's pipeline requires one for prod, as every pipeline does by
    default for its last stage)."""
    publish(ctx, "build", "ep/cortex", "8.5.0")
    for stage in ("qa", "preprod"):
        [result] = promote_images(ctx, stage, [ImageSpec("ep/cortex", "8.5.0")])
        assert result.status == "promoted", result.error
    refused = cloudops("promote", "image", "--to", "prod", "--repository", "ep/cortex", "--tag", "8.5.0")
    assert_clean_failure(refused, 3, "'prod' requires an approval", "cloudops approve PLAN.json")
    assert _digest_in(ctx, "prod", "ep/cortex", "8.5.0") is None
    records = json.loads(cloudops("history", "--account", "prod", "--json").stdout)["records"]
    assert records == []
