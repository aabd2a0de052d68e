"""Plan, then apply (issue 14), on the sandbox: `cloudops plan` and `cloudops apply` run as
users run them, and every claim checked against what the accounts really hold (qa's ECR,
its registry, its bucket), never against cloudops' own word."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from cloudops.oci import OCI_MANIFEST, sha256_digest
from cloudops.pipeline.plan import MAX_PLAN_BYTES
from cloudops.registry import RegistrySession, TransportSettings
from cloudops.sandbox import world
from cloudops.sandbox.seed import build_image, build_package
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import ecr_tags, publish, registry_digest

MiB = 1024 * 1024
RELEASE = (
    'release: "2026.11"\nimages:\n  - {repository: ep/cortex, tag: "8.5.0"}\n'
    '  - {repository: ep/search, tag: "8.5.0"}\npackage: {version: "8.5.0"}\n'
)


def _published(ctx: Any, tmp_path: Path) -> tuple[dict[str, str], str, Path]:
    """Both images and the package 8.5.0 in the build account; (digests, package sha256,
    release file)."""
    digests = {r: publish(ctx, "build", r, "8.5.0") for r in ("ep/cortex", "ep/search")}
    package = tmp_path / "package.zip"
    build_package(package, "8.5.0", size=1 * MiB)
    assert cloudops("package", "publish", str(package), "--version", "8.5.0").returncode == 0
    release = tmp_path / "release.yaml"
    release.write_text(RELEASE)
    return digests, hashlib.sha256(package.read_bytes()).hexdigest(), release


def _plan(release: Path, out: Path, *extra: str) -> Any:
    return cloudops("plan", "--to", "qa", "--release", str(release), "--out", str(out), *extra)


def _qa(ctx: Any) -> dict[str, Any]:
    """Everything qa holds that a promotion could write: ECR tags (boto3), the registry's
    manifests, every bucket key (package versions, current.json, history records)."""
    s3 = ctx.session("qa").client("s3")
    listing = s3.list_objects_v2(Bucket=ctx.pipeline.bucket("qa"))
    return {
        "ecr": {r: ecr_tags(ctx, "qa", r) for r in ("ep/cortex", "ep/search")},
        "registry": {r: registry_digest(ctx, "qa", r, "8.5.0") for r in ("ep/cortex", "ep/search")},
        "bucket": sorted(o["Key"] for o in listing.get("Contents", [])),
    }


def _object(ctx: Any, key: str) -> dict[str, Any]:
    """The JSON document stored under ``key`` in qa's bucket (boto3)."""
    s3 = ctx.session("qa").client("s3")
    return dict(json.loads(s3.get_object(Bucket=ctx.pipeline.bucket("qa"), Key=key)["Body"].read()))


def _plan_records_added(ctx: Any, before: dict[str, Any]) -> list[dict[str, Any]]:
    """Assert qa holds what it held ``before`` (``_qa``) but for history records of kind
    "plan" (what `plan --out` writes): the added records, oldest first."""
    after = _qa(ctx)
    assert {k: v for k, v in after.items() if k != "bucket"} == {
        k: v for k, v in before.items() if k != "bucket"
    }, "planning wrote into qa's ECR or registry"
    assert set(before["bucket"]) <= set(after["bucket"]), "planning removed something from qa"
    added = sorted(set(after["bucket"]) - set(before["bucket"]))
    assert all(k.startswith("cloudops/history/") for k in added), added
    records = [_object(ctx, key) for key in added]
    assert all(r["kind"] == "plan" and r["destination_account"] == "qa" for r in records), records
    return records


def _package_in_qa(ctx: Any) -> tuple[str, str]:
    """(version current.json names, sha256 of the bytes stored under its key), read from qa."""
    s3 = ctx.session("qa").client("s3")
    bucket = ctx.pipeline.bucket("qa")
    pointer = json.loads(s3.get_object(Bucket=bucket, Key="deployment-package/current.json")["Body"].read())
    body = s3.get_object(Bucket=bucket, Key=pointer["key"])["Body"].read()
    return pointer["version"], hashlib.sha256(body).hexdigest()


def _repoint(sandbox: world.SandboxState, repository: str, tag: str) -> str:
    """Push another image under ``tag`` in the build account (straight into its backing
    registry: the ECR front refuses to move a tag of an IMMUTABLE repository, but a tag
    can be deleted and pushed again)."""
    manifest, config, layers = build_image(repository, f"{tag}-rebuilt", scale=0.05)
    host = sandbox.backends["build"].split("://", 1)[1]

    async def go() -> str:
        async with RegistrySession(None, TransportSettings.build([host])) as pool:
            writer = pool.writer(host)
            for blob in [config, *(layer.data for layer in layers)]:
                digest = sha256_digest(blob)
                if await writer.blob_size(repository, digest) is None:
                    await writer.upload_blob(repository, digest, blob)
            await writer.put_manifest(repository, tag, manifest, OCI_MANIFEST)
        return sha256_digest(manifest)

    return asyncio.run(go())


def test_planning_twice_gives_the_same_hash_and_json_equals_the_file(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    digests, sha, release = _published(ctx, tmp_path)
    before = _qa(ctx)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    one = _plan(release, first, "--json")
    assert one.returncode == 0, one.stderr
    assert one.stdout == first.read_text()  # --json prints exactly the file's document
    assert stat.S_IMODE(first.stat().st_mode) == 0o644
    doc = json.loads(one.stdout)
    assert doc["ok"] is True and doc["refusals"] == [] and doc["bytes_to_move"] > 1 * MiB
    assert {i["repository"]: (i["status"], i["source"]) for i in doc["images"]} == {
        r: ("copy", d) for r, d in digests.items()
    }
    assert doc["package"]["status"] == "copy" and doc["package"]["source_sha256"] == sha
    guards = [c for c in doc["checks"] if c.startswith("account guard")]
    assert len(guards) == 2 and doc["checks"][0] == "stage order build -> qa"  # once per account
    assert "plan sha256:" in one.stderr and "ep/cortex:8.5.0" in one.stderr

    two = _plan(release, second)
    assert two.returncode == 0, two.stderr
    assert json.loads(second.read_text())["plan_hash"] == doc["plan_hash"]
    # The plan file is never overwritten unasked.
    again = _plan(release, first)
    assert_clean_failure(again, 2, "already exists", "--force")
    assert first.read_text() == one.stdout
    assert _plan(release, first, "--force").returncode == 0
    # Planning writes nothing into qa but, per plan written with --out, one history record
    # of kind "plan" (three --out runs succeeded above; the refused one wrote nothing).
    records = _plan_records_added(ctx, before)
    assert [(r["result"], r["version"], r["plan_hash"]) for r in records] == [
        ("planned", "2026.11", doc["plan_hash"])
    ] * 3


def test_plan_then_apply_promotes_exactly_the_plan_and_records_its_hash(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    digests, sha, release = _published(ctx, tmp_path)
    plan_file = tmp_path / "plan.json"
    assert _plan(release, plan_file).returncode == 0
    plan_hash = json.loads(plan_file.read_text())["plan_hash"]

    applied = cloudops("apply", str(plan_file), "--json")
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert result["ok"] and result["plan_hash"] == plan_hash
    assert [i["status"] for i in result["images"]] == ["promoted", "promoted"]
    # qa's ECR (boto3) and its registry hold the planned digests; its bucket the package.
    for repository, digest in digests.items():
        assert ecr_tags(ctx, "qa", repository) == {"8.5.0": digest}
        assert registry_digest(ctx, "qa", repository, "8.5.0") == digest
    assert _package_in_qa(ctx) == ("8.5.0", sha)

    records = json.loads(cloudops("history", "--account", "qa", "--json").stdout)["records"]
    releases = [r for r in records if r["kind"] == "release"]
    assert [(r["result"], r["version"], r["plan_hash"]) for r in releases] == [
        ("promoted", "2026.11", plan_hash)
    ]
    # The plan written with --out is in qa's history too, with the same hash; records of
    # the parts (images, package) carry none.
    plans = [r for r in records if r["kind"] == "plan"]
    assert [(r["result"], r["version"], r["plan_hash"]) for r in plans] == [("planned", "2026.11", plan_hash)]
    assert all(r["plan_hash"] is None for r in records if r["kind"] not in ("release", "plan"))

    # A plan is applied once: qa now holds what it planned to copy, so it changed.
    twice = cloudops("apply", str(plan_file))
    assert_clean_failure(twice, 3, "the world changed", "qa now holds ep/cortex:8.5.0", "cloudops plan")


def test_a_source_tag_repointed_after_planning_is_refused_and_nothing_written(
    ctx, sandbox, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    digests, _, release = _published(ctx, tmp_path)
    plan_file = tmp_path / "plan.json"
    assert _plan(release, plan_file).returncode == 0
    before = _qa(ctx)
    moved = _repoint(sandbox, "ep/cortex", "8.5.0")
    assert moved != digests["ep/cortex"]
    assert registry_digest(ctx, "build", "ep/cortex", "8.5.0") == moved

    refused = cloudops("apply", str(plan_file))
    assert_clean_failure(refused, 3, "the world changed", f"ep/cortex:8.5.0 at build now names {moved[:19]}")
    assert "ep/search" not in refused.stderr  # only what changed is named
    assert _qa(ctx) == before, "apply wrote into qa after the world changed"


def test_a_plan_that_would_move_a_tag_is_refused_at_plan_and_at_apply(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, release = _published(ctx, tmp_path)
    squatter = publish(ctx, "qa", "ep/cortex", "8.5.0", scale=0.07)  # qa's tag names another image
    before = _qa(ctx)
    plan_file = tmp_path / "plan.json"
    planned = _plan(release, plan_file, "--json")
    assert_clean_failure(planned, 3, "refused:", "tags never move")
    doc = json.loads(planned.stdout)
    assert doc["ok"] is False and len(doc["refusals"]) == 1 and plan_file.exists()  # written, to be shown
    cortex = next(i for i in doc["images"] if i["repository"] == "ep/cortex")
    assert (cortex["status"], cortex["destination"]) == ("refused-tag-move", squatter)

    applied = cloudops("apply", str(plan_file))
    assert_clean_failure(applied, 3, "refuses what it would do", "tags never move")
    # Only the plan's own history record (result "refused") was written; apply wrote nothing.
    records = _plan_records_added(ctx, before)
    assert [(r["result"], r["plan_hash"]) for r in records] == [("refused", doc["plan_hash"])]
    assert "tags never move" in records[0]["error"]
    assert ecr_tags(ctx, "qa", "ep/cortex") == {"8.5.0": squatter}


def test_an_edited_or_oversized_plan_file_is_refused_with_exit_2(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, release = _published(ctx, tmp_path)
    plan_file = tmp_path / "plan.json"
    assert _plan(release, plan_file).returncode == 0
    before = _qa(ctx)
    doc = json.loads(plan_file.read_text())
    doc["images"][0]["source"] = "sha256:" + "e" * 64  # still a copy: only the hash tells
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc, indent=2))
    result = cloudops("apply", str(tampered))
    assert_clean_failure(result, 2, f"plan file {tampered}", "does not match its plan_hash")

    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (MAX_PLAN_BYTES + 1))
    assert_clean_failure(cloudops("apply", str(huge)), 2, f"plan file {huge} is larger than")
    assert _qa(ctx) == before
