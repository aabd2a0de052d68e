"""Which release each account runs (issue 14), on the sandbox: releases/current.json and
the release log in the destination's bucket, written after a release is complete, never
after a failed one, and shown by `cloudops status` with whether qa still holds it. Every
claim is checked against what qa really holds (boto3 on its bucket and its ECR)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cloudops.cli.commands.plan import show_release
from cloudops.errors import CloudopsError
from cloudops.release_current import CURRENT_KEY, LOG_PREFIX, CurrentRelease, ReleaseStore, read_current
from cloudops.release_plan import promote_release
from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import ecr_tags, publish

MiB = 1024 * 1024
IMAGES = ("ep/cortex", "ep/search")


def _release(tmp_path: Path, name: str, tag: str, *, search_tag: str | None = None) -> Path:
    path = tmp_path / f"release-{name}.yaml"
    path.write_text(
        f'release: "{name}"\nimages:\n  - {{repository: ep/cortex, tag: "{tag}"}}\n'
        f'  - {{repository: ep/search, tag: "{search_tag or tag}"}}\npackage: {{version: "{tag}"}}\n'
    )
    return path


def _published(ctx: Any, tmp_path: Path, tag: str) -> tuple[dict[str, str], str]:
    """Both images and the package ``tag`` in the build account: (digests, package sha256)."""
    digests = {r: publish(ctx, "build", r, tag) for r in IMAGES}
    package = tmp_path / f"package-{tag}.zip"
    build_package(package, tag, size=MiB // 4)
    published = cloudops("package", "publish", str(package), "--version", tag)
    assert published.returncode == 0, published.stderr
    return digests, hashlib.sha256(package.read_bytes()).hexdigest()


def _s3(ctx: Any) -> tuple[Any, str]:
    return ctx.session("qa").client("s3"), ctx.pipeline.bucket("qa")


def _current(ctx: Any) -> dict[str, Any]:
    s3, bucket = _s3(ctx)
    return dict(json.loads(s3.get_object(Bucket=bucket, Key=CURRENT_KEY)["Body"].read()))


def _log(ctx: Any) -> dict[str, bytes]:
    s3, bucket = _s3(ctx)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=LOG_PREFIX).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def _releases_keys(ctx: Any) -> list[str]:
    s3, bucket = _s3(ctx)
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="releases/").get("Contents", []))


def _status(*extra: str) -> dict[str, Any]:
    result = cloudops("status", "--json", *extra)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return dict(json.loads(result.stdout)["accounts"]["qa"])


def _check_current(ctx: Any, doc: dict[str, Any], release: str, plan_hash: str, sha: str, tag: str) -> None:
    assert doc["format"] == 1 and doc["release"] == release and doc["plan_hash"] == plan_hash
    assert (doc["account"], doc["account_id"]) == ("qa", ctx.pipeline.account("qa").account_id)
    # The digests are what qa's ECR (boto3) holds under the tags, not cloudops' word.
    assert {(i["repository"], i["tag"]): i["digest"] for i in doc["images"]} == {
        (r, tag): ecr_tags(ctx, "qa", r)[tag] for r in IMAGES
    }
    assert doc["package"] == {"version": tag, "sha256": sha}
    assert doc["who"].startswith("arn:aws:sts::" + ctx.pipeline.account("qa").account_id)
    assert doc["when"].endswith("+00:00")
    CurrentRelease.model_validate(doc)  # the reader's own model accepts what was written


def test_apply_writes_current_json_and_a_log_then_a_second_release_moves_it(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    digests, sha = _published(ctx, tmp_path, "8.5.0")
    plan_file = tmp_path / "plan.json"
    planned = cloudops("plan", "--to", "qa", "--release", str(_release(tmp_path, "2026.11", "8.5.0")))
    assert planned.returncode == 0 and not _releases_keys(ctx), "planning wrote a release object"
    assert (
        cloudops(
            "plan", "--to", "qa", "--release", str(tmp_path / "release-2026.11.yaml"), "--out", str(plan_file)
        ).returncode
        == 0
    )
    plan_hash = json.loads(plan_file.read_text())["plan_hash"]

    applied = cloudops(
        "apply", str(plan_file), "--json", env={"BUILD_URL": "https://jenkins.example/job/qa/7/"}
    )
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["current_release"] == {"written": True, "error": None}
    assert "current release of qa: 2026.11" in applied.stderr
    first = _current(ctx)
    _check_current(ctx, first, "2026.11", plan_hash, sha, "8.5.0")
    assert {i["digest"] for i in first["images"]} == set(digests.values())
    assert first["jenkins_build"] == "https://jenkins.example/job/qa/7/"
    [(first_key, first_body)] = _log(ctx).items()
    assert first_key.startswith(LOG_PREFIX) and first_key.endswith(f"-{plan_hash[7:19]}.json")
    assert json.loads(first_body) == first  # the log object holds the same document
    assert read_current(ctx, "qa") == CurrentRelease.model_validate(first)

    # A second release, through promote release: current.json moves, a second log object.
    _published(ctx, tmp_path, "8.6.0")
    second_run = cloudops(
        "promote", "release", "--to", "qa", "--release", str(_release(tmp_path, "2026.12", "8.6.0")), "--json"
    )
    assert second_run.returncode == 0, second_run.stderr
    second_hash = json.loads(second_run.stdout)["plan_hash"]
    second = _current(ctx)
    _check_current(ctx, second, "2026.12", second_hash, second["package"]["sha256"], "8.6.0")
    assert second["jenkins_build"] is None and second_hash != plan_hash
    log = _log(ctx)
    assert len(log) == 2 and log[first_key] == first_body  # the first one untouched
    s3, bucket = _s3(ctx)
    versions = s3.list_object_versions(Bucket=bucket, Prefix=first_key).get("Versions", [])
    assert len(versions) == 1, "a release log object was written twice"
    assert json.loads(log[max(log)]) == second


def test_a_failed_release_or_a_dry_run_never_moves_current_json(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _published(ctx, tmp_path, "8.5.0")
    dry = cloudops(
        "promote",
        "release",
        "--to",
        "qa",
        "--release",
        str(_release(tmp_path, "2026.11", "8.5.0")),
        "--dry-run",
    )
    assert dry.returncode == 0, dry.stderr
    assert _releases_keys(ctx) == [], "a dry run wrote a release object"
    assert (
        cloudops(
            "promote", "release", "--to", "qa", "--release", str(tmp_path / "release-2026.11.yaml")
        ).returncode
        == 0
    )
    s3, bucket = _s3(ctx)
    before = s3.get_object(Bucket=bucket, Key=CURRENT_KEY)
    before_body, before_version = before["Body"].read(), before["VersionId"]
    before_log = _log(ctx)

    # 8.6.0 of cortex and the package exist, ep/search:9.9.9 is not at the source.
    publish(ctx, "build", "ep/cortex", "8.6.0")
    package = tmp_path / "package-8.6.0.zip"
    build_package(package, "8.6.0", size=MiB // 4)
    assert cloudops("package", "publish", str(package), "--version", "8.6.0").returncode == 0
    failed = cloudops(
        "promote",
        "release",
        "--to",
        "qa",
        "--release",
        str(_release(tmp_path, "2026.12", "8.6.0", search_tag="9.9.9")),
    )
    assert_clean_failure(failed, 1, "FAILED")
    assert "current release of qa" not in failed.stderr
    assert ecr_tags(ctx, "qa", "ep/cortex").get("8.6.0"), "the rest of the release was promoted"
    after = s3.get_object(Bucket=bucket, Key=CURRENT_KEY)
    assert (after["Body"].read(), after["VersionId"]) == (before_body, before_version)
    assert _log(ctx) == before_log
    assert _status()["current_release"]["release"] == "2026.11"

    # A part refused although every digest is known (qa's tag already names another image,
    # tags never move): current.json must not name a release qa does not hold.
    publish(ctx, "build", "ep/search", "8.7.0")
    squatter = publish(ctx, "qa", "ep/search", "8.7.0", scale=0.07)
    publish(ctx, "build", "ep/cortex", "8.7.0")
    package = tmp_path / "package-8.7.0.zip"
    build_package(package, "8.7.0", size=MiB // 4)
    assert cloudops("package", "publish", str(package), "--version", "8.7.0").returncode == 0
    refused = cloudops(
        "promote", "release", "--to", "qa", "--release", str(_release(tmp_path, "2027.01", "8.7.0"))
    )
    assert refused.returncode in (1, 3) and "Traceback" not in refused.stderr, refused.stderr
    assert "tags never move" in refused.stderr
    assert ecr_tags(ctx, "qa", "ep/search")["8.7.0"] == squatter
    after = s3.get_object(Bucket=bucket, Key=CURRENT_KEY)
    assert (after["Body"].read(), after["VersionId"]) == (before_body, before_version)
    assert _log(ctx) == before_log


def test_status_shows_the_current_release_and_whether_qa_still_holds_it(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _published(ctx, tmp_path, "8.5.0")
    assert (
        cloudops(
            "promote", "release", "--to", "qa", "--release", str(_release(tmp_path, "2026.11", "8.5.0"))
        ).returncode
        == 0
    )
    written = _current(ctx)
    qa = _status()
    assert qa["current_release"] == {
        "release": "2026.11",
        "plan_hash": written["plan_hash"],
        "when": written["when"],
        "who": written["who"],
        "matches": True,
        "differences": [],
    }
    assert qa["current_release_error"] is None
    build = _status_account("build")
    assert build["current_release"] is None and build["current_release_error"] is None  # none recorded
    human = cloudops("status")
    assert human.returncode == 0 and "current release" in human.stderr
    assert (
        "2026.11" in human.stderr and written["plan_hash"][7:19] in human.stderr and "matches" in human.stderr
    )

    # The package pointer moved to another version behind cloudops' back.
    s3, bucket = _s3(ctx)
    pointer_key = "deployment-package/current.json"
    pointer = json.loads(s3.get_object(Bucket=bucket, Key=pointer_key)["Body"].read())
    s3.put_object(Bucket=bucket, Key=pointer_key, Body=json.dumps({**pointer, "version": "8.4.0"}).encode())
    qa = _status()
    assert qa["current_release"]["matches"] is False
    assert qa["current_release"]["differences"] == ["the package pointer names no stored version, not 8.5.0"]
    s3.put_object(Bucket=bucket, Key=pointer_key, Body=json.dumps(pointer).encode())
    assert _status()["current_release"]["matches"] is True

    # An image of the release deleted from qa's ECR.
    ecr = ctx.session("qa").client("ecr")
    ecr.batch_delete_image(repositoryName="ep/search", imageIds=[{"imageTag": "8.5.0"}])
    assert "8.5.0" not in ecr_tags(ctx, "qa", "ep/search")
    qa = _status()
    assert qa["current_release"]["matches"] is False
    assert qa["current_release"]["differences"] == ["ep/search:8.5.0 is gone"]
    assert "DOES NOT MATCH" in cloudops("status").stderr


def _status_account(name: str) -> dict[str, Any]:
    result = cloudops("status", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["accounts"][name])


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x00\xff not json {", "not JSON"),
        (json.dumps({"release": "2026.11", "surprise": 1}).encode(), "invalid:"),
        (b"{" + b'"a":"' + b"x" * (70 * 1024) + b'"}', "larger than"),
        (b"[" * 60_000, "not JSON"),
    ],
    ids=["not-json", "wrong-fields", "huge", "nested"],
)
def test_a_hostile_current_json_is_reported_unreadable_without_a_traceback(
    ctx: Any, body: bytes, why: str
) -> None:
    s3, bucket = _s3(ctx)
    s3.put_object(Bucket=bucket, Key=CURRENT_KEY, Body=body)
    qa = _status()
    assert qa["current_release"] is None
    assert "is unreadable" in qa["current_release_error"] and why in qa["current_release_error"]
    assert "x" * 100 not in qa["current_release_error"]  # never the content
    human = cloudops("status")
    assert human.returncode == 0 and "Traceback" not in human.stderr and "UNREADABLE" in human.stderr


def test_a_current_json_of_another_account_is_unreadable(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _published(ctx, tmp_path, "8.5.0")
    assert (
        cloudops(
            "promote", "release", "--to", "qa", "--release", str(_release(tmp_path, "2026.11", "8.5.0"))
        ).returncode
        == 0
    )
    doc = _current(ctx)
    s3 = ctx.session("preprod").client("s3")
    s3.put_object(Bucket=ctx.pipeline.bucket("preprod"), Key=CURRENT_KEY, Body=json.dumps(doc).encode())
    preprod = _status_account("preprod")
    assert preprod["current_release"] is None and "names account" in preprod["current_release_error"]


def test_a_current_json_that_cannot_be_written_or_reads_back_otherwise_fails_the_release(
    ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _published(ctx, tmp_path, "8.5.0")
    release = _release(tmp_path, "2026.11", "8.5.0")

    def refuse(self: ReleaseStore, current: CurrentRelease, now: Any) -> str:
        raise CloudopsError("writing the release log (s3://...): AccessDenied")

    monkeypatch.setattr(ReleaseStore, "write", refuse)
    result = promote_release(ctx, "qa", release)
    assert result.parts_ok and not result.ok and result.current is None
    assert "not recorded as its current release" in str(result.current_error)
    assert result.as_dict()["current_release"] == {"written": False, "error": str(result.current_error)}
    assert show_release(result) == 1  # `cloudops apply`'s exit code for it
    assert _releases_keys(ctx) == []
    records = json.loads(cloudops("history", "--account", "qa", "--json").stdout)["records"]
    assert [r["result"] for r in records if r["kind"] == "release"] == ["failed"]
    monkeypatch.undo()

    # current.json written, but another document reads back (another run moved it).
    original = ReleaseStore.read
    monkeypatch.setattr(ReleaseStore, "read", lambda self: None)
    again = promote_release(ctx, "qa", release)
    assert not again.ok and "does not read back" in str(again.current_error)
    monkeypatch.setattr(ReleaseStore, "read", original)
