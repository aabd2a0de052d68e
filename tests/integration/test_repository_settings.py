"""Settings as code (issue 16) on the sandbox (moto server): `cloudops init` applies
pipeline.yaml's repositories: section to every pipeline image's repository, drift made
behind its back with boto3 is reported by `audit` and `init --dry-run` and corrected by
`init`, and a second init changes nothing. Every setting is read back from the account
with boto3 (DescribeRepositories, GetLifecyclePolicy, GetRepositoryPolicy,
not BatchGetRepositoryScanningConfiguration, which moto answers wrong), never from
cloudops' own report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudops.audit import run_audit
from cloudops.cli.main import cli
from cloudops.lifecycle import expand_short_form
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.init import init_account
from cloudops.sandbox import config_seed, world
from tests.support.run import assert_clean_failure
from tests.support.run import cloudops as cloudops_process
from tests.support.sandbox import context_for, init_all

IMAGES = "images: [ep/cortex, ep/search]"
QA_KEY = "arn:aws:kms:us-west-2:222222222222:key/0a1b2c3d-0000-4000-8000-00000000000a"
KMS_KEYS = {
    name: f"arn:aws:kms:{world.REGION}:{account_id}:key/0a1b2c3d-0000-4000-8000-{account_id}"
    for name, account_id in world.ACCOUNTS.items()
}
PULL_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "PullForJenkins",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::444444444444:root"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        }
    ],
}
# The sandbox's short form, as cloudops expands it (lifecycle.expand_short_form).
UNTAGGED_14_LAST_50 = expand_short_form({"keep_untagged_days": 14, "keep_last_tags": 50})


def cli_run(*args: str) -> Result:
    """The CLI in this process (a subprocess pays seconds of imports per call)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _pipeline(
    sandbox: world.SandboxState, tmp_path: Path, section: str | None, name: str = "pipeline.yaml"
) -> Path:
    """The sandbox's pipeline with two images and ``section`` as its repositories: (none
    when None)."""
    text = sandbox.pipeline.read_text().split("\nrepositories:\n")[0] + "\n"
    text = re.sub(r"^images: .*$", IMAGES, text, flags=re.M)
    path = tmp_path / name
    path.write_text(text + (section or ""))
    return path


SECTION = f"""\
repositories:
  defaults:
    lifecycle: {{keep_untagged_days: 14, keep_last_tags: 50}}
  overrides:
    ep/search:
      scan_on_push: false
      lifecycle: {{keep_last_tags: 100}}
      encryption:
        type: KMS
        kms_key: {json.dumps(KMS_KEYS)}
      policy:
        Version: 2012-10-17
        Statement:
          - Sid: PullForJenkins
            Effect: Allow
            Principal: {{AWS: "arn:aws:iam::444444444444:root"}}
            Action: [ecr:BatchGetImage, ecr:GetDownloadUrlForLayer]
"""


@pytest.fixture
def world_with(sandbox: world.SandboxState, tmp_path: Path) -> Any:
    """A clean world and a function making a context (config seeded) for a repositories:
    section; nothing initialized."""
    world.reset(sandbox)

    def make(section: str | None) -> PipelineContext:
        context = context_for(_pipeline(sandbox, tmp_path, section))
        config_seed.seed(context)
        return context

    return make


def read_back(context: PipelineContext, account: str, repository: str) -> dict[str, Any]:
    """The repository's settings as the account's ECR answers them."""
    ecr: Any = context.session(account).client("ecr")
    [repo] = ecr.describe_repositories(repositoryNames=[repository])["repositories"]
    try:
        lifecycle = json.loads(ecr.get_lifecycle_policy(repositoryName=repository)["lifecyclePolicyText"])
    except ecr.exceptions.LifecyclePolicyNotFoundException:
        lifecycle = None
    try:
        policy = json.loads(ecr.get_repository_policy(repositoryName=repository)["policyText"])
    except ecr.exceptions.RepositoryPolicyNotFoundException:
        policy = None
    # Scan on push from DescribeRepositories: moto's BatchGetRepositoryScanningConfiguration
    # always answers scanOnPush false (moto 5.2.5 never updates what it answers).
    return {
        "mutability": repo["imageTagMutability"],
        "scan_on_push": repo["imageScanningConfiguration"]["scanOnPush"],
        "encryption": repo["encryptionConfiguration"],
        "lifecycle": lifecycle,
        "policy": policy,
    }


def _everything(context: PipelineContext) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (account, repo): read_back(context, account, repo)
        for account in context.pipeline.stages
        for repo in context.pipeline.images
    }


def test_init_applies_every_setting_and_a_second_run_changes_nothing(world_with: Any) -> None:
    context = world_with(SECTION)
    for account in context.pipeline.stages:
        report = init_account(context, account)
        assert report.repositories == {"ep/cortex": "created", "ep/search": "created"}

    for account in context.pipeline.stages:
        assert read_back(context, account, "ep/cortex") == {
            "mutability": "IMMUTABLE",
            "scan_on_push": True,
            "encryption": {"encryptionType": "AES256"},
            "lifecycle": UNTAGGED_14_LAST_50,
            "policy": None,
        }
        search = read_back(context, account, "ep/search")
        # The override's lifecycle merges with the defaults' key by key.
        keep_100 = json.loads(json.dumps(UNTAGGED_14_LAST_50).replace("50", "100"))
        assert search == {
            "mutability": "IMMUTABLE",
            "scan_on_push": False,
            "encryption": {"encryptionType": "KMS", "kmsKey": KMS_KEYS[account]},  # each its own key
            "lifecycle": keep_100,
            "policy": PULL_POLICY,  # "Version: 2012-10-17" (a YAML date) sent as the text
        }

    before = _everything(context)
    again = cli_run("init", "qa", "--json", "--pipeline", str(context.pipeline.path))
    assert again.exit_code == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["changed"] is False and document["changes"] == [] and document["uncorrectable"] == []
    assert set(document["repositories"].values()) == {"unchanged"}
    assert _everything(context) == before

    audit = cli_run("audit", "--json", "--pipeline", str(context.pipeline.path))
    assert audit.exit_code == 0, audit.stdout
    rules = {r["rule"]: r["status"] for r in json.loads(audit.stdout)["rules"]}
    assert rules["repository-settings"] == "passed"


def _drift(context: PipelineContext) -> None:
    """Drift made behind cloudops' back, in qa: mutable tags, scan off, another lifecycle
    on ep/cortex; a policy added on ep/cortex and the lifecycle deleted on ep/search."""
    ecr: Any = context.session("qa").client("ecr")
    ecr.put_image_tag_mutability(repositoryName="ep/cortex", imageTagMutability="MUTABLE")
    ecr.put_image_scanning_configuration(
        repositoryName="ep/cortex", imageScanningConfiguration={"scanOnPush": False}
    )
    ecr.put_lifecycle_policy(
        repositoryName="ep/cortex",
        lifecyclePolicyText=json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {
                            "tagStatus": "any",
                            "countType": "imageCountMoreThan",
                            "countNumber": 5,
                        },
                        "action": {"type": "expire"},
                    }
                ]
            }
        ),
    )
    ecr.set_repository_policy(repositoryName="ep/cortex", policyText=json.dumps(PULL_POLICY))
    ecr.delete_lifecycle_policy(repositoryName="ep/search")


EXPECTED_DRIFT = {
    ("ep/cortex", "tag_immutability"),
    ("ep/cortex", "scan_on_push"),
    ("ep/cortex", "lifecycle"),
    ("ep/cortex", "policy"),
    ("ep/search", "lifecycle"),
}


def test_drift_is_reported_by_audit_and_dry_run_and_corrected_by_init(world_with: Any) -> None:
    context = world_with(SECTION)
    init_all(context)
    wanted = _everything(context)
    _drift(context)
    drifted = _everything(context)
    assert drifted != wanted
    path = str(context.pipeline.path)

    audit = cli_run("audit", "--json", "--pipeline", path)
    assert audit.exit_code == 4, audit.stdout
    findings = [f for f in json.loads(audit.stdout)["findings"] if f["rule"] == "repository-settings"]
    assert {(f["account"], f["where"], f["severity"]) for f in findings} == {
        ("qa", "ecr:ep/cortex", "error"),  # mutable tags: an error
        ("qa", "ecr:ep/cortex", "warning"),
        ("qa", "ecr:ep/search", "warning"),
    }
    assert len(findings) == len(EXPECTED_DRIFT)
    mutable = next(f for f in findings if f["severity"] == "error")
    assert "tag_immutability is MUTABLE, pipeline.yaml says IMMUTABLE" in mutable["what"]
    assert "cloudops init qa" in mutable["fix"]
    other_rules = {f["rule"] for f in json.loads(audit.stdout)["findings"] if f["severity"] != "info"}
    assert other_rules == {"repository-settings"}  # a pull grant is no push grant

    dry = cli_run("init", "qa", "--dry-run", "--json", "--pipeline", path)
    assert dry.exit_code == 0, dry.stderr
    document = json.loads(dry.stdout)
    assert {(c["repository"], c["setting"]) for c in document["changes"]} == EXPECTED_DRIFT
    changes = {(c["repository"], c["setting"]): c for c in document["changes"]}
    assert (
        changes[("ep/cortex", "tag_immutability")]["was"],
        changes[("ep/cortex", "tag_immutability")]["now"],
    ) == (
        "MUTABLE",
        "IMMUTABLE",
    )
    assert changes[("ep/cortex", "scan_on_push")]["was"] == "false"
    assert changes[("ep/cortex", "policy")]["now"] == "none"
    assert changes[("ep/search", "lifecycle")]["was"] == "none"
    assert document["repositories"] == {"ep/cortex": "updated", "ep/search": "updated"}
    assert _everything(context) == drifted, "the dry run changed something"

    human = cli_run("init", "qa", "--pipeline", path)
    assert human.exit_code == 0, human.stderr
    assert "tag_immutability: MUTABLE -> IMMUTABLE (corrected)" in human.stderr
    assert _everything(context) == wanted  # read back: every setting as pipeline.yaml says

    again = cli_run("init", "qa", "--dry-run", "--json", "--pipeline", path)
    assert json.loads(again.stdout)["changes"] == []
    assert cli_run("audit", "--json", "--pipeline", path).exit_code == 0


def test_encryption_that_differs_is_drift_init_cannot_correct(
    world_with: Any, sandbox: world.SandboxState, tmp_path: Path
) -> None:
    context = world_with(SECTION)
    # ep/search made by hand in qa before init, with AES256 where pipeline.yaml wants KMS.
    ecr: Any = context.session("qa").client("ecr")
    ecr.create_repository(repositoryName="ep/search", imageTagMutability="IMMUTABLE")

    result = cloudops_process("init", "qa", "--json", "--pipeline", str(context.pipeline.path))

    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["complete"] is False
    [drift] = document["uncorrectable"]
    assert (drift["repository"], drift["setting"], drift["was"]) == ("ep/search", "encryption", "AES256")
    assert drift["now"] == f"KMS ({KMS_KEYS['qa']})"
    assert "recreate ep/search" in drift["fix"]
    # What init can correct it did; the encryption is still AES256 (ECR cannot change it).
    search = read_back(context, "qa", "ep/search")
    assert search["encryption"] == {"encryptionType": "AES256"}
    assert search["policy"] == PULL_POLICY and search["scan_on_push"] is False

    human = cloudops_process("init", "qa", "--pipeline", str(context.pipeline.path))
    assert_clean_failure(human, 4, "encryption: AES256, pipeline.yaml wants KMS", "init cannot change it")

    init_all_but_qa = [init_account(context, n) for n in context.pipeline.stages if n != "qa"]
    assert all(r.complete for r in init_all_but_qa)
    report = run_audit(context)
    errors = [(f.account, f.where) for f in report.findings if f.rule == "repository-settings"]
    assert errors == [("qa", "ecr:ep/search")]
    assert [f.severity for f in report.findings if f.rule == "repository-settings"] == ["error"]


def test_without_a_repositories_section_policies_are_left_alone(world_with: Any) -> None:
    """A pipeline.yaml from before the section: init sets what it always set (immutable
    tags, scan on push, AES256) and neither sets nor deletes lifecycle or repository
    policies; the audit does not report them."""
    context = world_with(None)
    init_all(context)
    ecr: Any = context.session("qa").client("ecr")
    ecr.set_repository_policy(repositoryName="ep/cortex", policyText=json.dumps(PULL_POLICY))
    ecr.put_lifecycle_policy(repositoryName="ep/cortex", lifecyclePolicyText=json.dumps(UNTAGGED_14_LAST_50))
    ecr.put_image_scanning_configuration(
        repositoryName="ep/cortex", imageScanningConfiguration={"scanOnPush": False}
    )

    report = init_account(context, "qa")

    assert [(d.repository, d.setting) for d in report.changes] == [("ep/cortex", "scan_on_push")]
    assert read_back(context, "qa", "ep/cortex") == {
        "mutability": "IMMUTABLE",
        "scan_on_push": True,
        "encryption": {"encryptionType": "AES256"},
        "lifecycle": UNTAGGED_14_LAST_50,
        "policy": PULL_POLICY,
    }
    assert read_back(context, "qa", "ep/search")["lifecycle"] is None
    audit = run_audit(context)
    assert [f for f in audit.findings if f.rule == "repository-settings"] == []
    note = next(r.note for r in audit.rules if r.rule == "repository-settings")
    assert "not managed" in note


def test_a_missing_repository_and_a_mutable_setting_are_warnings(world_with: Any) -> None:
    section = "repositories:\n  defaults: {tag_immutability: MUTABLE, policy: null}\n"
    context = world_with(section)
    init_all(context)
    assert read_back(context, "prod", "ep/cortex")["mutability"] == "MUTABLE"
    context.session("prod").client("ecr").delete_repository(repositoryName="ep/search", force=True)

    report = run_audit(context)

    found = sorted(
        (f.account, f.where, f.severity) for f in report.findings if f.rule == "repository-settings"
    )
    assert found == sorted(
        [
            (account, f"ecr:{repo}", "warning")
            for account in world.ACCOUNTS
            for repo in ("ep/cortex", "ep/search")
        ]
        # prod's ep/search is gone: one warning for that instead of the mutable one
    )
    what = {(f.account, f.where): f.what for f in report.findings if f.rule == "repository-settings"}
    assert "does not exist in prod" in what[("prod", "ecr:ep/search")]
    assert "mutable tags, as pipeline.yaml asks" in what[("qa", "ecr:ep/cortex")]
