"""Deployment package publication and propagation on moto server, and whole releases."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops, interruptible
from tests.support.sandbox import assumed_keys, ecr_tags, pipeline_without_approvals, publish, registry_digest

MiB = 1024 * 1024
KEY = "deployment-package/versions/{v}/ext-deployment-package.zip"


def _s3(ctx: Any, account: str) -> Any:
    return ctx.session(account).client("s3")


def _current(ctx: Any, account: str) -> dict[str, str] | None:
    try:
        body = _s3(ctx, account).get_object(
            Bucket=ctx.pipeline.bucket(account), Key="deployment-package/current.json"
        )
    except Exception:
        return None
    return json.loads(body["Body"].read())  # type: ignore[no-any-return]


def _uploads(ctx: Any, account: str) -> list[Any]:
    return _s3(ctx, account).list_multipart_uploads(Bucket=ctx.pipeline.bucket(account)).get("Uploads", [])


def _package(tmp_path: Path, version: str, size: int = 1 * MiB) -> Path:
    path = tmp_path / f"pkg-{version}.zip"
    build_package(path, version, size=size)
    return path


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publish_then_promote_through_every_account_with_equal_checksums(
    ctx, sandbox, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    package = _package(tmp_path, "8.5.0")
    published = cloudops("package", "publish", str(package), "--version", "8.5.0", "--json")
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["sha256"] == _sha256(package)
    refused = cloudops("promote", "package", "--to", "prod")  # prod takes approved releases only
    assert_clean_failure(refused, 3, "'prod' requires an approval", "cloudops plan --to prod")
    assert _current(ctx, "prod") is None
    unapproved = pipeline_without_approvals(sandbox.pipeline, tmp_path)
    for stage in ("qa", "preprod", "prod"):
        result = cloudops("promote", "package", "--to", stage, "--json", "--pipeline", str(unapproved))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "promoted"

    expected = _sha256(package)
    for account in ("build", "qa", "preprod", "prod"):
        assert _current(ctx, account) is not None and _current(ctx, account)["sha256"] == expected  # type: ignore[index]
        head = subprocess.run(
            [
                "/usr/bin/aws",
                "--endpoint-url",
                sandbox.moto_url,
                "s3api",
                "head-object",
                "--bucket",
                ctx.pipeline.bucket(account),
                "--key",
                KEY.format(v="8.5.0"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**assumed_keys(sandbox, account), "PATH": "/usr/bin:/bin"},
        )
        assert json.loads(head.stdout)["Metadata"]["sha256"] == expected
        body = _s3(ctx, account).get_object(Bucket=ctx.pipeline.bucket(account), Key=KEY.format(v="8.5.0"))
        import hashlib

        assert hashlib.sha256(body["Body"].read()).hexdigest() == expected  # the bytes, not just the label

    before = _s3(ctx, "qa").head_object(Bucket=ctx.pipeline.bucket("qa"), Key=KEY.format(v="8.5.0"))
    again = cloudops("promote", "package", "--to", "qa", "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["status"], json.loads(again.stdout)["bytes_uploaded"]) == (
        "already-promoted",
        0,
    )
    after = _s3(ctx, "qa").head_object(Bucket=ctx.pipeline.bucket("qa"), Key=KEY.format(v="8.5.0"))
    assert after["LastModified"] == before["LastModified"] and after.get("VersionId") == before.get(
        "VersionId"
    )


def test_large_package_goes_multipart_and_verifies(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    package = _package(tmp_path, "9.0.0", size=12 * MiB)
    env = {"CLOUDOPS_MULTIPART_THRESHOLD_MIB": "5", "CLOUDOPS_PART_SIZE_MIB": "5"}
    assert cloudops("package", "publish", str(package), "--version", "9.0.0", env=env).returncode == 0
    result = cloudops("promote", "package", "--to", "qa", "--json", env=env)
    assert result.returncode == 0, result.stderr
    head = _s3(ctx, "qa").head_object(
        Bucket=ctx.pipeline.bucket("qa"), Key=KEY.format(v="9.0.0"), PartNumber=1
    )
    assert head["PartsCount"] == 3
    assert _current(ctx, "qa")["sha256"] == _sha256(package)  # type: ignore[index]
    assert _uploads(ctx, "qa") == []


def test_interrupted_transfer_leaves_current_untouched_and_no_upload_open(
    ctx, sandbox, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    small, big = _package(tmp_path, "1.0"), _package(tmp_path, "2.0", size=64 * MiB)
    env = {"CLOUDOPS_MULTIPART_THRESHOLD_MIB": "5", "CLOUDOPS_PART_SIZE_MIB": "5", "CLOUDOPS_S3_WORKERS": "1"}
    for version, path in (("1.0", small), ("2.0", big)):
        assert cloudops("package", "publish", str(path), "--version", version, env=env).returncode == 0
    assert cloudops("promote", "package", "--to", "qa", "--version", "1.0").returncode == 0

    for sig in (signal.SIGINT, signal.SIGKILL):
        process = interruptible(
            [sys.executable, "-m", "cloudops", "promote", "package", "--to", "qa", "--version", "2.0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**__import__("os").environ, **env},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _uploads(ctx, "qa") and process.poll() is None:
            time.sleep(0.02)
        assert process.poll() is None, "the transfer finished before it could be interrupted"
        if sig == signal.SIGINT:
            time.sleep(0.2)  # well inside the transfer: the handler aborts what is open
        # kill -9 at once: with a worker on another test file the transfer may otherwise
        # complete in the pause (seen on CI), leaving no open upload to find.
        process.send_signal(sig)
        process.wait(timeout=30)
        assert _current(ctx, "qa")["version"] == "1.0"  # type: ignore[index]
        if sig == signal.SIGINT:
            assert _uploads(ctx, "qa") == []  # aborted on the way out
        else:
            assert len(_uploads(ctx, "qa")) == 1  # a kill -9 cannot abort; the next run does

    rerun = cloudops("promote", "package", "--to", "qa", "--version", "2.0", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert _uploads(ctx, "qa") == []
    assert _current(ctx, "qa") == {
        "version": "2.0",
        "sha256": _sha256(big),
        "key": KEY.format(v="2.0"),
        "size": str(40 * MiB + big.stat().st_size - 40 * MiB),
    }


def test_source_whose_bytes_do_not_match_their_checksum_is_refused(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    package = _package(tmp_path, "3.0")
    s3 = _s3(ctx, "build")
    s3.put_object(
        Bucket=ctx.pipeline.bucket("build"),
        Key=KEY.format(v="3.0"),
        Body=package.read_bytes(),
        Metadata={"sha256": "0" * 64, "version": "3.0"},
    )
    result = cloudops("promote", "package", "--to", "qa", "--version", "3.0")
    assert_clean_failure(result, 1, "recorded checksum", "corrupt")
    listed = _s3(ctx, "qa").list_objects_v2(Bucket=ctx.pipeline.bucket("qa"), Prefix="deployment-package/")
    assert listed.get("Contents") is None and _uploads(ctx, "qa") == []


class TestBadInput:
    def test_missing_version(self, ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        assert_clean_failure(cloudops("package", "publish", str(_package(tmp_path, "x"))), 2, "--version")

    def test_unknown_version(self, ctx) -> None:  # type: ignore[no-untyped-def]
        result = cloudops("promote", "package", "--to", "qa", "--version", "7.7.7")
        assert_clean_failure(result, 2, "package version 7.7.7 does not exist in account 'build'")
        assert _current(ctx, "qa") is None

    def test_not_a_zip_and_truncated_zip(self, ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        text = tmp_path / "notes.zip"
        text.write_text("hello")
        assert_clean_failure(
            cloudops("package", "publish", str(text), "--version", "1"), 2, "not a readable zip"
        )
        whole = _package(tmp_path, "t")
        truncated = tmp_path / "truncated.zip"
        truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        assert_clean_failure(cloudops("package", "publish", str(truncated), "--version", "1"), 2, "zip")
        assert _s3(ctx, "build").list_objects_v2(Bucket=ctx.pipeline.bucket("build")).get("Contents") is None

    def test_zip_without_tools(self, ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        path = tmp_path / "no-tools.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("webapps/a.war", "x")
            archive.writestr("database/s.sql", "x")
        assert_clean_failure(cloudops("package", "publish", str(path), "--version", "1"), 2, "lacks tools/")
        assert _s3(ctx, "build").list_objects_v2(Bucket=ctx.pipeline.bucket("build")).get("Contents") is None

    def test_version_is_immutable(self, ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        assert cloudops("package", "publish", str(_package(tmp_path, "a")), "--version", "5").returncode == 0
        same = cloudops("package", "publish", str(_package(tmp_path, "a")), "--version", "5")
        assert same.returncode == 0 and "already published" in same.stderr
        other = cloudops("package", "publish", str(_package(tmp_path, "b")), "--version", "5")
        assert_clean_failure(other, 3, "already exists", "immutable")


def _package_in(ctx: Any, account: str) -> tuple[str | None, str | None]:
    """(version current.json names, sha256 of the bytes stored under the key it names),
    read straight from the account's bucket."""
    pointer = _current(ctx, account)
    if pointer is None:
        return None, None
    body = (
        _s3(ctx, account).get_object(Bucket=ctx.pipeline.bucket(account), Key=pointer["key"])["Body"].read()
    )
    import hashlib

    return pointer["version"], hashlib.sha256(body).hexdigest()


def _package_keys(ctx: Any, account: str) -> list[str]:
    listing = _s3(ctx, account).list_objects_v2(
        Bucket=ctx.pipeline.bucket(account), Prefix="deployment-package/"
    )
    return [o["Key"] for o in listing.get("Contents", [])]


def test_release_promotes_images_and_package_and_a_failed_part_completes_on_rerun(
    ctx, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cortex = publish(ctx, "build", "ep/cortex", "8.6.0")
    package = _package(tmp_path, "8.6.0")
    assert cloudops("package", "publish", str(package), "--version", "8.6.0").returncode == 0
    release = tmp_path / "release.yaml"
    release.write_text(
        'release: "2026.12"\nimages:\n  - {repository: ep/cortex, tag: "8.6.0"}\n'
        '  - {repository: ep/search, tag: "8.6.0"}\npackage: {version: "8.6.0"}\n'
    )
    dry = cloudops("promote", "release", "--to", "qa", "--release", str(release), "--dry-run", "--json")
    assert dry.returncode == 1  # ep/search:8.6.0 is missing: the plan says so
    # Read qa itself: the dry run wrote nothing into its ECR, its registry or its bucket.
    assert ecr_tags(ctx, "qa", "ep/cortex") == {} and ecr_tags(ctx, "qa", "ep/search") == {}
    assert registry_digest(ctx, "qa", "ep/cortex", "8.6.0") is None
    assert _current(ctx, "qa") is None and _package_keys(ctx, "qa") == []

    failed = cloudops("promote", "release", "--to", "qa", "--release", str(release), "--json")
    assert failed.returncode == 1
    doc = json.loads(failed.stdout)
    assert [i["status"] for i in doc["images"]] == ["promoted", "failed"] and doc["package"][
        "status"
    ] == "promoted"
    assert "ep/search:8.6.0 does not exist" in failed.stderr
    # What is really in qa: cortex by the build's digest (ECR and the registry), no search,
    # and the package's very bytes under its version, but the pointer not moved: a release
    # with a failed image leaves the account on its current package.
    assert ecr_tags(ctx, "qa", "ep/cortex") == {"8.6.0": cortex}
    assert registry_digest(ctx, "qa", "ep/cortex", "8.6.0") == cortex
    assert ecr_tags(ctx, "qa", "ep/search") == {}
    version_key = "deployment-package/versions/8.6.0/ext-deployment-package.zip"
    stored = _s3(ctx, "qa").get_object(Bucket=ctx.pipeline.bucket("qa"), Key=version_key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == _sha256(package)
    assert _current(ctx, "qa") is None and doc["package"]["current_moved"] is False

    search = publish(ctx, "build", "ep/search", "8.6.0")
    done = cloudops("promote", "release", "--to", "qa", "--release", str(release), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [i["status"] for i in doc["images"]] == ["already-promoted", "promoted"]
    assert doc["images"][0]["source_digest"] == cortex and doc["package"]["status"] == "already-promoted"
    assert ecr_tags(ctx, "qa", "ep/cortex") == {"8.6.0": cortex}
    assert ecr_tags(ctx, "qa", "ep/search") == {"8.6.0": search}
    assert registry_digest(ctx, "qa", "ep/search", "8.6.0") == search
    assert _package_in(ctx, "qa") == ("8.6.0", _sha256(package))
    records = json.loads(cloudops("history", "--account", "qa", "--json").stdout)["records"]
    assert [r["result"] for r in records if r["kind"] == "release"] == ["failed", "promoted"]
