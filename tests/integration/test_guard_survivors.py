"""The account guard on the side a promotion reads from (images) and the side it writes
(packages), and a package version the destination already holds with other content.

Every check reads the accounts directly (ECR's control plane, the registry, S3 with each
account's own credentials), never through cloudops."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cloudops.package import publish_package
from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import assumed_keys, ecr_tags, publish, registry_digest

ACCOUNTS = ("build", "qa", "preprod", "prod")
KEY = "deployment-package/versions/{v}/ext-deployment-package.zip"
CURRENT = "deployment-package/current.json"


def _variant(sandbox: Any, tmp_path: Path, account_id: str, acting_in: str) -> Path:
    """The sandbox's pipeline.yaml with ``account_id``'s credentials assuming a role in
    account ``acting_in`` instead."""
    text = sandbox.pipeline.read_text()
    wrong = text.replace(
        f'role_arn: "arn:aws:iam::{account_id}:role/cloudops"',
        f'role_arn: "arn:aws:iam::{acting_in}:role/cloudops"',
    )
    assert wrong != text
    path = tmp_path / "pipeline.yaml"
    path.write_text(wrong)
    return path


def _buckets(ctx: Any) -> dict[str, dict[str, str]]:
    """Every object of every account's bucket: key -> ETag, read with the account's own keys."""
    seen: dict[str, dict[str, str]] = {}
    for account in ACCOUNTS:
        s3 = ctx.session(account).client("s3")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=ctx.pipeline.bucket(account))
        seen[account] = {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}
    return seen


def _assert_nothing_in_qa(ctx: Any, repository: str, tag: str) -> None:
    assert ecr_tags(ctx, "qa", repository) == {}
    assert registry_digest(ctx, "qa", repository, tag) is None


# --- images: the source's credentials --------------------------------------------------------


@pytest.mark.parametrize("acting_in", ["prod", "qa"])
def test_image_promotion_refuses_source_credentials_of_another_account(ctx, sandbox, acting_in: str) -> None:  # type: ignore[no-untyped-def]
    """--source-credentials-env SOURCE whose keys act in prod's (or qa's own) account, not
    build's: refused before anything is read or written."""
    publish(ctx, "build", "ep/batch", "5")
    keys = assumed_keys(sandbox, acting_in)
    env = {f"SOURCE_{k}": v for k, v in keys.items() if k != "AWS_DEFAULT_REGION"}
    before = _buckets(ctx)

    result = cloudops(
        "promote",
        "image",
        "--to",
        "qa",
        "--repository",
        "ep/batch",
        "--tag",
        "5",
        "--source-credentials-env",
        "SOURCE",
        env=env,
    )

    actual = sandbox.account_id(acting_in)
    assert_clean_failure(result, 3, "read from 'build'", f"belong to account {actual}")
    _assert_nothing_in_qa(ctx, "ep/batch", "5")
    assert _buckets(ctx) == before  # not even a record


def test_image_promotion_refuses_a_pipeline_whose_build_credentials_act_in_another_account(
    ctx, sandbox, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    publish(ctx, "build", "ep/cm", "6")
    wrong = _variant(sandbox, tmp_path, "111111111111", "444444444444")
    before = _buckets(ctx)

    result = cloudops(
        "promote", "image", "--to", "qa", "--repository", "ep/cm", "--tag", "6", "--pipeline", str(wrong)
    )

    assert_clean_failure(result, 3, "read from 'build'", "belong to account 444444444444")
    _assert_nothing_in_qa(ctx, "ep/cm", "6")
    assert _buckets(ctx) == before


# --- packages: the destination's credentials -------------------------------------------------


def test_package_promotion_refuses_destination_credentials_of_another_account(
    ctx, sandbox, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    package = tmp_path / "pkg-4.0.zip"
    build_package(package, "4.0", size=256 * 1024)
    assert publish_package(ctx, package, "4.0").ok
    wrong = _variant(sandbox, tmp_path, "222222222222", "333333333333")  # qa's keys act in preprod
    before = _buckets(ctx)

    result = cloudops("promote", "package", "--to", "qa", "--version", "4.0", "--pipeline", str(wrong))

    assert_clean_failure(result, 3, "promote the package into 'qa'", "belong to account 333333333333")
    assert _buckets(ctx) == before  # no package, no pointer, no record, in any bucket
    assert KEY.format(v="4.0") not in before["qa"]


# --- packages: a version the destination holds with other content ----------------------------


def test_promotion_never_replaces_a_destination_version_with_other_content(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for version in ("0.9", "1.0"):
        path = tmp_path / f"pkg-{version}.zip"
        build_package(path, version, size=256 * 1024)
        assert publish_package(ctx, path, version).ok
    moved = cloudops("promote", "package", "--to", "qa", "--version", "0.9")
    assert moved.returncode == 0, moved.stderr

    # qa already holds 1.0, put there by hand with other bytes (and their own checksum).
    other = tmp_path / "other-1.0.zip"
    build_package(other, "1.0-other", size=200 * 1024)
    body = other.read_bytes()
    assert (
        hashlib.sha256(body).hexdigest()
        != hashlib.sha256((tmp_path / "pkg-1.0.zip").read_bytes()).hexdigest()
    )
    s3, bucket = ctx.session("qa").client("s3"), ctx.pipeline.bucket("qa")
    s3.put_object(
        Bucket=bucket,
        Key=KEY.format(v="1.0"),
        Body=body,
        Metadata={"sha256": hashlib.sha256(body).hexdigest(), "version": "1.0"},
    )
    pointer = s3.get_object(Bucket=bucket, Key=CURRENT)["Body"].read()
    assert json.loads(pointer)["version"] == "0.9"
    held = s3.head_object(Bucket=bucket, Key=KEY.format(v="1.0"))

    result = cloudops("promote", "package", "--to", "qa", "--version", "1.0")

    assert_clean_failure(result, 3, "has other content")
    after = s3.head_object(Bucket=bucket, Key=KEY.format(v="1.0"))
    assert (after["ETag"], after["LastModified"]) == (held["ETag"], held["LastModified"])
    assert s3.get_object(Bucket=bucket, Key=KEY.format(v="1.0"))["Body"].read() == body
    assert s3.get_object(Bucket=bucket, Key=CURRENT)["Body"].read() == pointer
