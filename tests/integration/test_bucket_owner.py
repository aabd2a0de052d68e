"""Every S3 call is held to the account that owns the bucket (issue 12, section 2), on the
sandbox's moto server (which, through cloudops.sandbox.moto_server, answers 403 to an
ExpectedBucketOwner naming another account, as S3 does).

The attack: qa's bucket in pipeline.yaml is a bucket that prod's account owns (a typo, a
bucket name taken over by another account, a hostile edit). A promotion into qa must then
be refused (exit 3) before anything is written there, and the audit must say so."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from cloudops.audit import run_audit
from cloudops.package import publish_package
from cloudops.pipeline.context import PipelineContext
from cloudops.sandbox import world
from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import assumed_keys, context_for, init_all

FOREIGN = "ep-cloudops-qa-elsewhere"  # qa's bucket in the hostile pipeline; prod owns it
QA_ID, PROD_ID = world.ACCOUNTS["qa"], world.ACCOUNTS["prod"]


def _s3_as(sandbox: world.SandboxState, account: str) -> Any:
    """A plain boto3 client acting in ``account`` (no cloudops code in between)."""
    keys = assumed_keys(sandbox, account)
    return boto3.client(
        "s3",
        endpoint_url=sandbox.moto_url,
        region_name=world.REGION,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys["AWS_SESSION_TOKEN"],
    )


def _snapshot(s3: Any, bucket: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Every object version, delete marker and open multipart upload in the bucket."""
    listed = s3.list_object_versions(Bucket=bucket)
    versions = sorted((v["Key"], v["VersionId"]) for v in listed.get("Versions", []))
    markers = sorted(m["Key"] for m in listed.get("DeleteMarkers", []))
    uploads = sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    return versions, markers, uploads


@pytest.fixture
def hostile(sandbox: world.SandboxState, tmp_path: Path) -> tuple[Path, PipelineContext, Any]:
    """The sandbox with every account initialized and a package published in build, plus
    a pipeline file whose qa bucket is a (versioned) bucket of prod's account."""
    world.reset(sandbox)
    context = context_for(sandbox.pipeline)
    init_all(context)
    package = tmp_path / "package.zip"
    build_package(package, "1.0", size=64 * 1024)
    publish_package(context, package, "1.0")

    prod_s3 = _s3_as(sandbox, "prod")
    prod_s3.create_bucket(Bucket=FOREIGN, CreateBucketConfiguration={"LocationConstraint": world.REGION})
    prod_s3.put_bucket_versioning(Bucket=FOREIGN, VersioningConfiguration={"Status": "Enabled"})
    prod_s3.put_object(Bucket=FOREIGN, Key="prod-data.txt", Body=b"prod's own object")

    text = sandbox.pipeline.read_text()
    hostile_text, count = re.subn(rf"bucket: ep-cloudops-{QA_ID}", f"bucket: {FOREIGN}", text)
    assert count == 1
    path = tmp_path / "pipeline.yaml"
    path.write_text(hostile_text)
    return path, context_for(path), prod_s3


def test_the_sandbox_s3_enforces_the_bucket_owner_condition(sandbox: world.SandboxState) -> None:
    """What S3 documents (bucket-owner-condition.html) and plain moto ignores: a request
    whose ExpectedBucketOwner is not the bucket's owner is answered 403, reads included."""
    world.reset(sandbox)
    prod_s3, qa_s3 = _s3_as(sandbox, "prod"), _s3_as(sandbox, "qa")
    prod_s3.create_bucket(Bucket=FOREIGN, CreateBucketConfiguration={"LocationConstraint": world.REGION})
    prod_s3.put_object(Bucket=FOREIGN, Key="k", Body=b"x", ExpectedBucketOwner=PROD_ID)
    for call in (
        lambda: qa_s3.put_object(Bucket=FOREIGN, Key="k2", Body=b"y", ExpectedBucketOwner=QA_ID),
        lambda: qa_s3.get_object(Bucket=FOREIGN, Key="k", ExpectedBucketOwner=QA_ID),
        lambda: qa_s3.list_objects_v2(Bucket=FOREIGN, ExpectedBucketOwner=QA_ID),
        lambda: qa_s3.head_bucket(Bucket=FOREIGN, ExpectedBucketOwner=QA_ID),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] in ("AccessDenied", "403")
    assert prod_s3.get_object(Bucket=FOREIGN, Key="k", ExpectedBucketOwner=PROD_ID)["Body"].read() == b"x"
    keys = [o["Key"] for o in prod_s3.list_objects_v2(Bucket=FOREIGN).get("Contents", [])]
    assert keys == ["k"]


def test_promoting_into_a_bucket_of_another_account_is_refused_and_writes_nothing(
    sandbox: world.SandboxState, hostile: tuple[Path, PipelineContext, Any]
) -> None:
    path, _, prod_s3 = hostile
    before = _snapshot(prod_s3, FOREIGN)

    promoted = cloudops("promote", "package", "--to", "qa", "--pipeline", str(path))
    assert_clean_failure(promoted, 3, FOREIGN, QA_ID, "'qa'")
    assert "accounts.qa.bucket" in promoted.stderr  # what to fix

    initialized = cloudops("init", "qa", "--pipeline", str(path))
    assert_clean_failure(initialized, 3, FOREIGN, QA_ID)

    history = cloudops("history", "--account", "qa", "--json", "--pipeline", str(path))
    assert_clean_failure(history, 3, "refused to read the promotion history of qa")
    unreadable = json.loads(history.stdout)["unreadable"]
    assert FOREIGN in unreadable["qa"] and "not owned by" in unreadable["qa"]

    assert _snapshot(prod_s3, FOREIGN) == before  # not one version, marker or upload more
    assert [v[0] for v in before[0]] == ["prod-data.txt"]


def test_library_calls_on_a_foreign_bucket_are_refused_before_any_request_reaches_it(
    hostile: tuple[Path, PipelineContext, Any],
) -> None:
    """The check is made once, where the bucket is first touched, for every caller: even
    code that uses the account's S3 client directly is held to the account."""
    _, context, prod_s3 = hostile
    before = _snapshot(prod_s3, FOREIGN)
    qa_s3: Any = context.session("qa").client("s3")
    from cloudops.aws.s3_owner import BucketOwnerError

    with pytest.raises(BucketOwnerError) as caught:
        qa_s3.put_object(Bucket=FOREIGN, Key="deployment-package/current.json", Body=b"{}")
    assert caught.value.kind == "refused" and FOREIGN in str(caught.value)
    with pytest.raises(BucketOwnerError):
        qa_s3.get_object(Bucket=FOREIGN, Key="prod-data.txt")
    assert _snapshot(prod_s3, FOREIGN) == before


def test_audit_reports_a_bucket_owned_by_another_account(
    hostile: tuple[Path, PipelineContext, Any],
) -> None:
    path, context, _ = hostile
    report = run_audit(context)
    found = [f for f in report.findings if f.rule == "ownership"]
    assert [(f.account, f.severity) for f in found] == [("qa", "error")], [f.what for f in report.findings]
    assert FOREIGN in found[0].what and "'prod'" in found[0].what and QA_ID in found[0].what
    assert {r.rule: r.status for r in report.rules}["ownership"] == "failed"

    result = cloudops("audit", "--json", "--pipeline", str(path))
    assert result.returncode == 4, result.stderr
    rules = {(f["rule"], f["account"]) for f in json.loads(result.stdout)["findings"]}
    assert ("ownership", "qa") in rules


def test_every_s3_request_on_an_accounts_bucket_carries_that_accounts_id(
    sandbox: world.SandboxState, tmp_path: Path
) -> None:
    """S3 sees the owner condition itself on every call (not only the first-touch check):
    a package promotion and `history`, their S3 traffic through a proxy that logs headers."""
    from tests.support.faults import fault_proxy

    world.reset(sandbox)
    context = context_for(sandbox.pipeline)
    init_all(context)
    package = tmp_path / "package.zip"
    build_package(package, "1.0", size=64 * 1024)
    publish_package(context, package, "1.0")
    owners = {context.pipeline.bucket(a): context.pipeline.account(a).account_id for a in world.ACCOUNTS}

    with fault_proxy(sandbox.moto_url) as proxy:
        text = sandbox.pipeline.read_text()
        assert f'aws: "{sandbox.moto_url}"' in text
        path = tmp_path / "pipeline.yaml"
        path.write_text(text.replace(f'aws: "{sandbox.moto_url}"', f'aws: "{proxy.url}"'))
        for args in (("promote", "package", "--to", "qa"), ("history", "--json")):
            result = cloudops(*args, "--pipeline", str(path))
            assert result.returncode == 0, (args, result.stderr)
        log = list(proxy.log)

    seen: dict[str, int] = {}
    for entry in log:
        if "/s3/aws4_request" not in entry.headers.get("authorization", ""):
            continue  # STS, ECR
        bucket = entry.path.split("?", 1)[0].lstrip("/").split("/", 1)[0]
        if not bucket or (entry.method == "PUT" and entry.path == f"/{bucket}"):
            continue  # ListBuckets, CreateBucket: no owner condition
        assert bucket in owners, entry.path
        owner = entry.headers.get("x-amz-expected-bucket-owner")
        assert owner == owners[bucket], (entry.method, entry.path, owner, owners[bucket])
        seen[bucket] = seen.get(bucket, 0) + 1
    build, qa = context.pipeline.bucket("build"), context.pipeline.bucket("qa")
    assert seen.get(build, 0) >= 2 and seen.get(qa, 0) >= 3, seen  # the source read, qa written
