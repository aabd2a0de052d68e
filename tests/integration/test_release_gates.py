"""The gates a release passes (issue 14), on the sandbox: approvals of an exact plan into
prod, the self-approval rule, rejections and rollbacks, run as users run them (`cloudops
plan`, `approve`, `apply`, `reject`, `rollback`), every claim checked against what the
accounts really hold (boto3 on their buckets and ECR, their registries), never against
cloudops' own word. Setup that is not under test (publishing, promoting up to the stage
before the one tested) goes through the library, in process, to keep the file quick."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import yaml

from cloudops.package import publish_package
from cloudops.release_current import CURRENT_KEY, LOG_PREFIX
from cloudops.release_gates import APPROVALS_PREFIX, REJECTED_PREFIX, approvals_prefix, rejection_key
from cloudops.release_plan import promote_release
from cloudops.sandbox import world
from cloudops.sandbox.seed import build_package
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import context_for, ecr_tags, publish, registry_digest

MiB = 1024 * 1024
IMAGES = ("ep/cortex", "ep/search")
PROD_ID = world.ACCOUNTS["prod"]
APPROVER_PATTERN = f"arn:aws:sts::{PROD_ID}:assumed-role/release-approver/*"
CLOUDOPS_PATTERN = f"arn:aws:sts::{PROD_ID}:assumed-role/cloudops/*"
POINTER_KEY = "deployment-package/current.json"


# -- setup (not under test) ---------------------------------------------------------------


def _release_file(tmp_path: Path, name: str, tag: str) -> Path:
    path = tmp_path / f"release-{name}.yaml"
    path.write_text(
        f'release: "{name}"\nimages:\n  - {{repository: ep/cortex, tag: "{tag}"}}\n'
        f'  - {{repository: ep/search, tag: "{tag}"}}\npackage: {{version: "{tag}"}}\n'
    )
    return path


def _published(ctx: Any, tmp_path: Path, tag: str) -> tuple[dict[str, str], str]:
    """Both images and the package ``tag`` (small) in the build account: (digests, sha256)."""
    digests = {r: publish(ctx, "build", r, tag) for r in IMAGES}
    package = tmp_path / f"package-{tag}.zip"
    build_package(package, tag, size=MiB // 4)
    assert publish_package(ctx, package, tag).ok
    return digests, hashlib.sha256(package.read_bytes()).hexdigest()


def _promoted(ctx: Any, release: Path, *stages: str) -> None:
    for stage in stages:
        result = promote_release(ctx, stage, release)
        assert result.ok, result.as_dict()


def _pipeline_variant(sandbox: world.SandboxState, name: str, **prod: Any) -> Path:
    """The sandbox's pipeline.yaml with prod's approvals: entry updated by ``prod``,
    written next to it."""
    document = yaml.safe_load(sandbox.pipeline.read_text())
    entry = document["approvals"]["prod"]
    assert entry["approvers"] == [APPROVER_PATTERN], "the sandbox pipeline's prod approvers changed"
    document["approvals"]["prod"] = {**entry, **prod}
    path = sandbox.pipeline.parent / f"pipeline-{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# -- reading the accounts themselves --------------------------------------------------------


def _s3(ctx: Any, account: str) -> tuple[Any, str]:
    return ctx.session(account).client("s3"), ctx.pipeline.bucket(account)


def _holds(ctx: Any, account: str, tags: tuple[str, ...] = ("8.5.0",)) -> dict[str, Any]:
    """Everything a promotion could write into ``account``: its ECR tags (boto3), the
    manifests its registry serves, every bucket key with its ETag (an overwrite shows)."""
    s3, bucket = _s3(ctx, account)
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        "ecr": {r: ecr_tags(ctx, account, r) for r in IMAGES},
        "registry": {(r, t): registry_digest(ctx, account, r, t) for r in IMAGES for t in tags},
        "bucket": {o["Key"]: o["ETag"] for o in listing},
    }


def _objects(ctx: Any, account: str, prefix: str) -> dict[str, bytes]:
    s3, bucket = _s3(ctx, account)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def _json(ctx: Any, account: str, key: str) -> dict[str, Any]:
    s3, bucket = _s3(ctx, account)
    return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def _put(ctx: Any, account: str, key: str, body: bytes) -> None:
    s3, bucket = _s3(ctx, account)
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def _package_pointer(ctx: Any, account: str) -> tuple[str, str]:
    """(version the package pointer names, sha256 of the bytes stored under its key)."""
    pointer = _json(ctx, account, POINTER_KEY)
    s3, bucket = _s3(ctx, account)
    body = s3.get_object(Bucket=bucket, Key=pointer["key"])["Body"].read()
    return pointer["version"], hashlib.sha256(body).hexdigest()


def _gate_records(account: str) -> list[tuple[str, str, str | None, str | None]]:
    """(kind, result, version, plan_hash) of the account's release-level history records
    (plan, approval, rejection, release, rollback), oldest first."""
    found = cloudops("history", "--account", account, "--json")
    assert found.returncode == 0, found.stderr
    return [
        (r["kind"], r["result"], r["version"], r["plan_hash"])
        for r in json.loads(found.stdout)["records"]
        if r["kind"] in ("plan", "approval", "rejection", "release", "rollback")
    ]


def _history(account: str, kind: str) -> list[dict[str, Any]]:
    found = cloudops("history", "--account", account, "--json")
    assert found.returncode == 0, found.stderr
    return [r for r in json.loads(found.stdout)["records"] if r["kind"] == kind]


def _status(account: str) -> dict[str, Any]:
    result = cloudops("status", "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return dict(json.loads(result.stdout)["accounts"][account])


def _plan(to: str, release: Path, out: Path, *extra: str) -> str:
    """`cloudops plan --out`, which must succeed: the plan hash."""
    made = cloudops("plan", "--to", to, "--release", str(release), "--out", str(out), *extra)
    assert made.returncode == 0, made.stderr
    return str(json.loads(out.read_text())["plan_hash"])


def _approve(plan: Path, *extra: str) -> Any:
    return cloudops("approve", str(plan), "--role-arn", world.APPROVER_ROLE, *extra)


def _approver_keys(sandbox: world.SandboxState, prefix: str) -> dict[str, str]:
    """The approver role's own keys under ``prefix`` (as a Jenkins credentials binding
    puts them), for `cloudops approve --credentials-env PREFIX`."""
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox.moto_url,
        region_name=world.REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    keys = sts.assume_role(RoleArn=world.APPROVER_ROLE, RoleSessionName="jenkins-alice")["Credentials"]
    return {
        f"{prefix}_AWS_ACCESS_KEY_ID": keys["AccessKeyId"],
        f"{prefix}_AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
        f"{prefix}_AWS_SESSION_TOKEN": keys["SessionToken"],
    }


# -- approvals ------------------------------------------------------------------------------


def test_prod_takes_a_plan_only_with_an_approval_of_exactly_that_plan(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    digests, sha = _published(ctx, tmp_path, "8.5.0")
    release = _release_file(tmp_path, "2026.11", "8.5.0")
    _promoted(ctx, release, "qa", "preprod")
    plan_a, plan_b = tmp_path / "a.json", tmp_path / "b.json"
    made = cloudops("plan", "--to", "prod", "--release", str(release), "--out", str(plan_a))
    assert made.returncode == 0, made.stderr
    assert "prod requires an approval" in made.stderr and APPROVER_PATTERN in made.stderr
    hash_a = json.loads(plan_a.read_text())["plan_hash"]
    # Plan B: the same images under another release name (another plan, another hash).
    hash_b = _plan("prod", _release_file(tmp_path, "2026.11-hotfix", "8.5.0"), plan_b)
    assert hash_a != hash_b

    # Not approved: refused, naming what is missing; prod unchanged.
    before = _holds(ctx, "prod")
    assert not any(before["ecr"].values())
    refused = cloudops("apply", str(plan_a))
    assert_clean_failure(
        refused, 3, f"prod requires an approval of plan {hash_a[:19]}", APPROVER_PATTERN, "none recorded"
    )
    assert "cloudops approve" in refused.stderr
    # promote release (plan and apply in one step) passes the same gate.
    promoted = cloudops("promote", "release", "--to", "prod", "--release", str(release))
    assert_clean_failure(promoted, 3, "prod requires an approval of plan", "none recorded")
    assert _holds(ctx, "prod") == before

    # Approved by an identity that is not one of prod's approvers (its own cloudops role).
    not_approver = cloudops("approve", str(plan_a), "--note", "jenkins:mallory")
    assert_clean_failure(not_approver, 3, "is not an approver of prod", "assumed-role/cloudops/")
    assert _objects(ctx, "prod", APPROVALS_PREFIX) == {}
    assert _holds(ctx, "prod") == before  # no approval, no history record

    # A forged object under the plan's approvals prefix is not counted, and named.
    _put(ctx, "prod", approvals_prefix(hash_a) + "zz-forged.json", b"\x00\xff not an approval")
    forged = cloudops("apply", str(plan_a))
    assert_clean_failure(forged, 3, "none recorded", "not counted: zz-forged.json: not JSON")
    assert "\\x00" not in forged.stderr and "not an approval" not in forged.stderr  # never the content
    assert _holds(ctx, "prod")["ecr"] == before["ecr"]

    # Approved by the approver role: recorded under plan A's hash, with the note.
    approved = _approve(plan_a, "--note", "jenkins:alice", "--json")
    assert approved.returncode == 0, approved.stderr
    answer = json.loads(approved.stdout)
    assert answer["approver"].startswith(f"arn:aws:sts::{PROD_ID}:assumed-role/release-approver/")
    stored = _objects(ctx, "prod", approvals_prefix(hash_a))
    assert set(stored) == {answer["key"], approvals_prefix(hash_a) + "zz-forged.json"}
    record = json.loads(stored[answer["key"]])
    assert (record["plan_hash"], record["release"], record["purpose"]) == (hash_a, "2026.11", "release")
    assert (record["account"], record["account_id"], record["note"]) == ("prod", PROD_ID, "jenkins:alice")
    assert record["approver"] == answer["approver"]

    # The approval of plan A is no approval of plan B, even copied under B's prefix.
    s3, bucket = _s3(ctx, "prod")
    s3.put_object(
        Bucket=bucket, Key=approvals_prefix(hash_b) + "copied.json", Body=json.dumps(record).encode()
    )
    before_b = _holds(ctx, "prod")
    other = cloudops("apply", str(plan_b))
    assert_clean_failure(
        other, 3, f"prod requires an approval of plan {hash_b[:19]}", "copied.json: approves another plan"
    )
    assert _holds(ctx, "prod") == before_b

    # Plan A applies: prod's ECR, registry and current.json hold the release.
    applied = cloudops("apply", str(plan_a), "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["plan_hash"] == hash_a
    for repository, digest in digests.items():
        assert ecr_tags(ctx, "prod", repository) == {"8.5.0": digest}
        assert registry_digest(ctx, "prod", repository, "8.5.0") == digest
    current = _json(ctx, "prod", CURRENT_KEY)
    assert (current["release"], current["plan_hash"], current["account_id"]) == ("2026.11", hash_a, PROD_ID)
    assert {i["repository"]: i["digest"] for i in current["images"]} == digests
    assert current["package"] == {"version": "8.5.0", "sha256": sha}
    assert _package_pointer(ctx, "prod") == ("8.5.0", sha)

    # prod's history: both plans, the approval of A (with its note), the release of A.
    assert _gate_records("prod") == [
        ("plan", "planned", "2026.11", hash_a),
        ("plan", "planned", "2026.11-hotfix", hash_b),
        ("approval", "approved", "2026.11", hash_a),
        ("release", "promoted", "2026.11", hash_a),
    ]
    [approval] = _history("prod", "approval")
    assert approval["reason"] == "jenkins:alice" and "release-approver" in approval["who"]


def test_an_approval_only_by_who_applies_is_refused_unless_the_pipeline_allows_it(
    ctx, sandbox, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    digests, _ = _published(ctx, tmp_path, "8.5.0")
    release = _release_file(tmp_path, "2026.11", "8.5.0")
    _promoted(ctx, release, "qa", "preprod")
    both = [APPROVER_PATTERN, CLOUDOPS_PATTERN]
    self_pipeline = _pipeline_variant(sandbox, "cloudops-approves", approvers=both)
    allowed = _pipeline_variant(sandbox, "self-approval", approvers=both, allow_self_approval=True)
    plan = tmp_path / "plan.json"
    plan_hash = _plan("prod", release, plan, "--pipeline", str(self_pipeline))

    # The cloudops role is an approver in this pipeline: its approval is recorded...
    approved = cloudops("approve", str(plan), "--pipeline", str(self_pipeline), "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["approver"].startswith(
        f"arn:aws:sts::{PROD_ID}:assumed-role/cloudops/"
    )
    assert len(_objects(ctx, "prod", approvals_prefix(plan_hash))) == 1
    before = _holds(ctx, "prod")

    # ...but the same role applies it: refused.
    mine = cloudops("apply", str(plan), "--pipeline", str(self_pipeline))
    assert_clean_failure(
        mine, 3, f"the only approver of plan {plan_hash[:19]}", "assumed-role/cloudops, who is applying it"
    )
    assert "needs another approver" in mine.stderr
    assert _holds(ctx, "prod") == before
    # With the sandbox's own pipeline the cloudops role is no approver at all: the
    # patterns are checked again at apply.
    now = cloudops("apply", str(plan))
    assert_clean_failure(now, 3, "approved only by identities that are not approvers now")
    assert _holds(ctx, "prod") == before

    # A pipeline that allows self-approval applies it.
    applied = cloudops("apply", str(plan), "--pipeline", str(allowed))
    assert applied.returncode == 0, applied.stderr
    assert {r: ecr_tags(ctx, "prod", r) for r in IMAGES} == {r: {"8.5.0": d} for r, d in digests.items()}
    assert _json(ctx, "prod", CURRENT_KEY)["plan_hash"] == plan_hash


# -- rejections -----------------------------------------------------------------------------


def test_a_rejected_release_is_refused_from_the_account_and_a_broken_marker_refuses_too(
    ctx, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _published(ctx, tmp_path, "8.5.0")
    release = _release_file(tmp_path, "2026.11", "8.5.0")
    _promoted(ctx, release, "qa")
    plan = tmp_path / "plan.json"
    _plan("preprod", release, plan)  # made before the rejection

    rejected = cloudops("reject", "2026.11", "--account", "qa", "--reason", "search index corrupt", "--json")
    assert rejected.returncode == 0, rejected.stderr
    assert json.loads(rejected.stdout)["already_rejected"] is False
    markers = _objects(ctx, "qa", REJECTED_PREFIX)
    assert list(markers) == [rejection_key("2026.11")] and "2026.11" not in rejection_key("2026.11")
    marker = json.loads(markers[rejection_key("2026.11")])
    assert (marker["release"], marker["account"], marker["reason"]) == (
        "2026.11",
        "qa",
        "search index corrupt",
    )
    assert marker["who"].startswith(f"arn:aws:sts::{world.ACCOUNTS['qa']}:assumed-role/cloudops/")

    # From qa to preprod it is refused by plan, apply and promote release; preprod unchanged.
    before = _holds(ctx, "preprod")
    for attempt in (
        cloudops("plan", "--to", "preprod", "--release", str(release), "--out", str(tmp_path / "again.json")),
        cloudops("apply", str(plan)),
        cloudops("promote", "release", "--to", "preprod", "--release", str(release)),
    ):
        assert_clean_failure(
            attempt,
            3,
            "refusing to promote release 2026.11 from 'qa'",
            "rejected in qa",
            "search index corrupt",
        )
    assert not (tmp_path / "again.json").exists()
    assert _holds(ctx, "preprod") == before

    # Rejecting again keeps the first rejection as it was.
    s3, bucket = _s3(ctx, "qa")
    again = cloudops("reject", "2026.11", "--account", "qa", "--reason", "changed my mind", "--json")
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert answer["already_rejected"] is True and answer["reason"] == "search index corrupt"
    assert "rejected before" in again.stderr
    assert _objects(ctx, "qa", REJECTED_PREFIX) == markers
    versions = s3.list_object_versions(Bucket=bucket, Prefix=rejection_key("2026.11")).get("Versions", [])
    assert len(versions) == 1, "the rejection marker was written twice"
    rejections = _history("qa", "rejection")
    assert [(r["version"], r["result"], r["reason"]) for r in rejections] == [
        ("2026.11", "rejected", "search index corrupt")
    ]
    assert [r["release"] for r in _status("qa")["rejected_releases"]] == ["2026.11"]

    # A reason with control characters is refused, nothing recorded.
    for reason in ("line one\nline two", "red \x1b[31malert"):
        bad = cloudops("reject", "2026.12", "--account", "qa", "--reason", reason)
        assert_clean_failure(bad, 2, "--reason must be one line")
    assert list(_objects(ctx, "qa", REJECTED_PREFIX)) == [rejection_key("2026.11")]

    # A rejection marker that cannot be read refuses the release (fails closed), in the
    # destination as in the source.
    hotfix = _release_file(tmp_path, "2026.11-hotfix", "8.5.0")
    _put(ctx, "preprod", rejection_key("2026.11-hotfix"), b"{ not json")
    before = _holds(ctx, "preprod")
    for attempt in (
        cloudops("plan", "--to", "preprod", "--release", str(hotfix)),
        cloudops("promote", "release", "--to", "preprod", "--release", str(hotfix)),
    ):
        assert_clean_failure(
            attempt, 3, "release 2026.11-hotfix has a rejection marker in 'preprod' that cannot be read"
        )
        assert "treated as rejected" in attempt.stderr and "not JSON" in attempt.stderr
    assert _holds(ctx, "preprod") == before
    # A marker of another release moved under this release's key refuses as well.
    _put(ctx, "qa", rejection_key("2026.11-hotfix"), markers[rejection_key("2026.11")])
    moved = cloudops("plan", "--to", "preprod", "--release", str(hotfix))
    assert_clean_failure(moved, 3, "in 'qa' that cannot be read", "names another release or account")


# -- rollback -------------------------------------------------------------------------------


def test_rollback_restores_the_previous_release_from_the_accounts_own_log(
    ctx, sandbox, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    first, first_sha = _published(ctx, tmp_path, "8.5.0")
    second, second_sha = _published(ctx, tmp_path, "8.6.0")
    release_1 = _release_file(tmp_path, "2026.11", "8.5.0")
    release_2 = _release_file(tmp_path, "2026.12", "8.6.0")
    # Both releases into every stage; prod through a pipeline that needs no approval there.
    relaxed = context_for(_pipeline_variant(sandbox, "no-prod-approval", required=False))
    for release in (release_1, release_2):
        _promoted(ctx, release, "qa", "preprod")
        _promoted(relaxed, release, "prod")
    tags = ("8.5.0", "8.6.0")
    qa_before = _holds(ctx, "qa", tags)
    assert _json(ctx, "qa", CURRENT_KEY)["release"] == "2026.12"
    assert _package_pointer(ctx, "qa") == ("8.6.0", second_sha)

    # An unknown release to go back to: exit 2, nothing written.
    unknown = cloudops("rollback", "--to", "qa", "--release", "2025.01")
    assert_clean_failure(unknown, 2, "no earlier release named '2025.01'", "2026.11")
    assert _holds(ctx, "qa", tags) == qa_before

    # qa needs no approval: back to 2026.11, with a warning about the older package.
    rolled = cloudops("rollback", "--to", "qa", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert "warning:" in rolled.stderr and "package 8.5.0 is older than the current 8.6.0" in rolled.stderr
    answer = json.loads(rolled.stdout)
    assert answer["rolled_back_from"]["release"] == "2026.12"
    current = _json(ctx, "qa", CURRENT_KEY)
    assert current["release"] == "2026.11" and current["plan_hash"] == answer["plan_hash"]
    assert {i["repository"]: (i["tag"], i["digest"]) for i in current["images"]} == {
        r: ("8.5.0", d) for r, d in first.items()
    }
    assert current["package"] == {"version": "8.5.0", "sha256": first_sha}
    # Tags never move: both releases' tags are still there, naming what they named.
    qa_after = _holds(ctx, "qa", tags)
    assert qa_after["ecr"] == qa_before["ecr"] == {r: {"8.5.0": first[r], "8.6.0": second[r]} for r in IMAGES}
    assert qa_after["registry"] == qa_before["registry"]
    assert _package_pointer(ctx, "qa") == ("8.5.0", first_sha)
    assert len(_objects(ctx, "qa", LOG_PREFIX)) == 3  # the rollback is in the release log too
    [record] = _history("qa", "rollback")
    assert (record["result"], record["version"], record["plan_hash"]) == (
        "rolled-back",
        "2026.11",
        current["plan_hash"],
    )
    shown = _status("qa")["current_release"]
    assert (shown["release"], shown["plan_hash"], shown["matches"]) == ("2026.11", current["plan_hash"], True)
    # 2026.11 is now qa's current release: naming it is refused.
    same = cloudops("rollback", "--to", "qa", "--release", "2026.11")
    assert_clean_failure(same, 2, "release 2026.11 is the current release of 'qa'")

    # prod requires an approval of the rollback's own plan.
    prod_before = _holds(ctx, "prod", tags)
    refused = cloudops("rollback", "--to", "prod")
    assert_clean_failure(refused, 3, "prod requires an approval of plan", "none recorded")
    assert _holds(ctx, "prod", tags) == prod_before
    assert _json(ctx, "prod", CURRENT_KEY)["release"] == "2026.12"

    # An approved plan of release 2026.11 itself is no approval of a rollback to it.
    release_plan = tmp_path / "release-2026.11.json"
    _plan("prod", release_1, release_plan)
    assert _approve(release_plan).returncode == 0
    planned = cloudops("rollback", "--to", "prod", "--out", str(tmp_path / "rollback.json"), "--json")
    assert planned.returncode == 0, planned.stderr
    assert "package 8.5.0 is older than the current 8.6.0" in planned.stderr
    doc = json.loads(planned.stdout)
    assert doc == json.loads((tmp_path / "rollback.json").read_text())
    assert (doc["route"]["purpose"], doc["route"]["release"], doc["route"]["source"]) == (
        "rollback",
        "2026.11",
        "preprod",
    )
    assert {i["repository"]: (i["pinned"], i["status"]) for i in doc["images"]} == {
        r: (d, "present") for r, d in first.items()
    }
    before = _holds(ctx, "prod", tags)
    unapproved = cloudops("apply", str(tmp_path / "rollback.json"))
    assert_clean_failure(unapproved, 3, f"prod requires an approval of plan {doc['plan_hash'][:19]}")
    assert _holds(ctx, "prod", tags) == before

    # Approved (with the approver's own keys, as the Jenkins job binds them), it applies:
    # prod runs 2026.11 again, its tags untouched.
    approved = cloudops(
        "approve",
        str(tmp_path / "rollback.json"),
        "--credentials-env",
        "APPROVER",
        "--json",
        env=_approver_keys(sandbox, "APPROVER"),
    )
    assert approved.returncode == 0, approved.stderr
    approver = f"arn:aws:sts::{PROD_ID}:assumed-role/release-approver/jenkins-alice"
    assert json.loads(approved.stdout)["approver"] == approver  # the keys' own identity
    [stored] = _objects(ctx, "prod", approvals_prefix(doc["plan_hash"])).values()
    assert (json.loads(stored)["approver"], json.loads(stored)["purpose"]) == (approver, "rollback")
    applied = cloudops("apply", str(tmp_path / "rollback.json"))
    assert applied.returncode == 0, applied.stderr
    current = _json(ctx, "prod", CURRENT_KEY)
    assert (current["release"], current["plan_hash"]) == ("2026.11", doc["plan_hash"])
    assert {i["repository"]: i["digest"] for i in current["images"]} == first
    assert _holds(ctx, "prod", tags)["ecr"] == prod_before["ecr"]
    assert _package_pointer(ctx, "prod") == ("8.5.0", first_sha)
    assert _gate_records("prod")[-3:] == [
        ("plan", "planned", "2026.11", doc["plan_hash"]),
        ("approval", "approved", "2026.11", doc["plan_hash"]),
        ("rollback", "rolled-back", "2026.11", doc["plan_hash"]),
    ]
    shown = _status("prod")["current_release"]
    assert (shown["release"], shown["plan_hash"], shown["matches"]) == ("2026.11", doc["plan_hash"], True)
