"""`cloudops audit` on the sandbox (moto server + ECR-like registries, one per account):
quiet on a clean setup, each rule firing on a setup built to break it, an unreachable
account a finding rather than a crash. Plus the pure parts (policy reading, rules on
hand-made facts), which need no servers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudops.audit import run_audit
from cloudops.audit.facts import AccountFacts, PackageObject, RepositoryFacts
from cloudops.audit.findings import AuditReport
from cloudops.audit.rules import judge
from cloudops.aws.codecommit import CodeCommitRepositories
from cloudops.cli.main import cli
from cloudops.package import publish_package
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.model import parse_pipeline
from cloudops.release_plan import promote_release
from cloudops.repository_policy import ANYONE, PolicyError, push_grants
from cloudops.sandbox import config_seed, violations, world
from cloudops.sandbox.seed import build_package
from tests.support.sandbox import context_for, init_all, publish

# Two images instead of the sandbox's seven: every audit reads every repository of every
# account, and the rules need no more than two.
IMAGES = "images: [ep/cortex, ep/search]"


def cloudops(*args: str) -> Result:
    """The CLI in this process: a subprocess pays seconds of imports per call."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _pipeline_file(sandbox: world.SandboxState, tmp_path: Path, text: str | None = None) -> Path:
    """The sandbox's pipeline in tmp_path, so each test has its own config folder."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(text or re.sub(r"^images: .*$", IMAGES, sandbox.pipeline.read_text(), flags=re.M))
    return path


@pytest.fixture
def ctx(sandbox: world.SandboxState, tmp_path: Path) -> PipelineContext:
    world.reset(sandbox)
    # After a reset, sessions assumed earlier act in moto's default account: a new context.
    context = context_for(_pipeline_file(sandbox, tmp_path))
    init_all(context)
    config_seed.seed(context)
    return context


def _release(ctx: PipelineContext, tmp_path: Path, *, version: str = "1.0") -> None:
    """What the pipeline does: build in the build account, promote a release (two images
    and the package) to qa, which records it as qa's current release."""
    for repository in ("ep/cortex", "ep/search"):
        publish(ctx, "build", repository, version)
    package = tmp_path / f"package-{version}.zip"
    build_package(package, version, size=64 * 1024)
    publish_package(ctx, package, version)
    release = tmp_path / f"release-{version}.yaml"
    release.write_text(
        f'release: "{version}"\nimages:\n  - {{repository: ep/cortex, tag: "{version}"}}\n'
        f'  - {{repository: ep/search, tag: "{version}"}}\npackage: {{version: "{version}"}}\n'
    )
    assert promote_release(ctx, "qa", release).ok


def _counted(report: AuditReport) -> set[tuple[str, str | None]]:
    return {(f.rule, f.account) for f in report.findings if f.counts}


def test_clean_setup_audits_clean(ctx: PipelineContext, tmp_path: Path) -> None:
    _release(ctx, tmp_path)
    report = run_audit(ctx)
    assert _counted(report) == set(), [f.what for f in report.findings]
    assert {r.rule: r.status for r in report.rules} == dict.fromkeys(
        [
            "identity",
            "ownership",
            "source-repositories",
            "ecr-push-policy",
            "repository-settings",
            "image-provenance",
            "deployment-package",
            "config",
            "lifecycle-guard",
        ],
        "passed",
    )
    # Stages not yet promoted to are shown, and do not fail the audit.
    assert {(f.rule, f.account, f.severity) for f in report.findings} == {
        ("deployment-package", "preprod", "info"),
        ("deployment-package", "prod", "info"),
    }

    assert ctx.pipeline.path is not None
    result = cloudops("audit", "--json", "--pipeline", str(ctx.pipeline.path))
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["summary"] == {"error": 0, "warning": 0, "info": 2}
    assert document["accounts"]["prod"] == {
        "account_id": "444444444444",
        "reachable": True,
        "caller_account": "444444444444",
        "verified": True,
        "error": None,
        "unchecked": {},
    }
    assert set(document["findings"][0]) == {"rule", "severity", "account", "what", "where", "fix"}

    # The same clean setup with prod's credentials missing: a finding, the others audited.
    text = ctx.pipeline.path.read_text().replace(
        'credentials: {role_arn: "arn:aws:iam::444444444444:role/cloudops"}',
        "credentials: {env_prefix: NO_SUCH_PROD}",
    )
    unreachable = tmp_path / "pipeline-unreachable.yaml"
    unreachable.write_text(text)

    result = cloudops("audit", "--json", "--pipeline", str(unreachable))

    assert result.exit_code == 4, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    counted = [f for f in document["findings"] if f["severity"] != "info"]
    assert [(f["rule"], f["account"]) for f in counted] == [("identity", "prod")]
    assert (
        "cannot be reached" in counted[0]["what"] and "NO_SUCH_PROD_AWS_ACCESS_KEY_ID" in counted[0]["what"]
    )
    assert document["accounts"]["prod"]["reachable"] is False
    assert document["accounts"]["qa"]["verified"] is True  # the others were audited
    notes = {r["rule"]: r["note"] for r in document["rules"]}
    assert "not checked in prod" in notes["ecr-push-policy"]


def test_each_rule_fires_on_a_setup_built_to_break_it(ctx: PipelineContext, tmp_path: Path) -> None:
    _release(ctx, tmp_path)
    broken = violations.introduce(ctx)
    assert len(broken) == 9
    swapped = PipelineContext(ctx.pipeline, credential_overrides=violations.swapped_credentials(ctx.pipeline))

    report = run_audit(swapped)

    errors = {(f.rule, f.account) for f in report.findings if f.severity == "error"}
    assert errors == {
        ("identity", "prod"),
        ("source-repositories", "qa"),
        ("ecr-push-policy", "preprod"),
        ("image-provenance", "qa"),
        ("deployment-package", "preprod"),
        ("config", "prod"),
        ("config", "preprod"),
        ("lifecycle-guard", "qa"),
    }, [f.what for f in report.findings]
    # A bucket of another account needs a pipeline file of its own: test_bucket_owner.py.
    assert all(r.status == "failed" for r in report.rules if r.rule != "ownership")
    what = {f.rule: f.what for f in report.findings if f.severity == "error"}
    assert "act in account 333333333333 (account preprod's), not in 444444444444" in what["identity"]
    assert "lets account 222222222222 (qa) push (ecr:PutImage" in what["ecr-push-policy"]
    assert "(tags hotfix-local) in qa does not exist in build, the build account" in what["image-provenance"]
    # Config findings point at file and line, and never carry the secret itself.
    config = [f for f in report.findings if f.rule == "config"]
    assert {f.where for f in config} >= {"prod/AWS/Config/live.env:4", "prod/AWS/Config/live.env:7"}
    qa_password = (
        (ctx.pipeline.config_dir / "qa/AWS/Config/live.env").read_text().split('EP_DB_PASS="')[1][:20]
    )
    assert qa_password not in json.dumps(report.as_dict())

    # The CLI (with the credentials as configured) reports the rest and exits 4.
    assert ctx.pipeline.path is not None
    result = cloudops("audit", "--json", "--pipeline", str(ctx.pipeline.path))
    assert result.exit_code == 4, result.stderr
    rules = {f["rule"] for f in json.loads(result.stdout)["findings"] if f["severity"] == "error"}
    assert rules == {
        "source-repositories",
        "ecr-push-policy",
        "image-provenance",
        "deployment-package",
        "config",
        "lifecycle-guard",
    }

    # What the demo does before its audit: repair, then the clean seed; the audit is clean again.
    violations.repair(ctx)
    config_seed.seed(ctx)
    assert _counted(run_audit(ctx)) == set()


def test_hosting_account_and_package_details(ctx: PipelineContext, tmp_path: Path) -> None:
    _release(ctx, tmp_path, version="1.0")
    package = tmp_path / "package-2.0.zip"
    build_package(package, "2.0", size=64 * 1024)
    publish_package(ctx, package, "2.0")  # qa now lags behind the build account
    CodeCommitRepositories(ctx.session("build")).delete("docker")
    qa_s3: Any = ctx.session("qa").client("s3")
    qa_s3.put_object(Bucket=ctx.pipeline.bucket("qa"), Key="deployment-package/hand-made.zip", Body=b"zip")
    ecr: Any = ctx.session("qa").client("ecr")
    ecr.set_repository_policy(
        repositoryName="ep/cortex",
        policyText=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {  # pulling from another account is fine; pushing within one's own too
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::444444444444:root"},
                        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                    },
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::222222222222:role/jenkins"},
                        "Action": "ecr:*",
                    },
                ],
            }
        ),
    )

    report = run_audit(ctx)

    found = {(f.rule, f.account, f.severity): f for f in report.findings}
    assert set(found) == {
        ("source-repositories", "build", "error"),
        # The pipeline's repositories: section wants no policy: a pull grant is drift, not a push grant.
        ("repository-settings", "qa", "warning"),
        ("deployment-package", "qa", "warning"),
        ("deployment-package", "qa", "info"),
        ("deployment-package", "preprod", "info"),
        ("deployment-package", "prod", "info"),
    }, [f.what for f in report.findings]
    assert (
        "docker does not exist in its hosting account build"
        in found[("source-repositories", "build", "error")].what
    )
    assert "hand-made.zip records no SHA-256" in found[("deployment-package", "qa", "warning")].what
    assert (
        found[("deployment-package", "qa", "info")].what == "qa's current package 1.0 lags behind build's 2.0"
    )


def test_sandbox_up_writes_a_clean_config(sandbox: world.SandboxState) -> None:
    up = cloudops("sandbox", "up", "--json")
    assert up.exit_code == 0, up.stderr
    for account in world.ACCOUNTS:
        assert (sandbox.root / "config" / account / "AWS" / "Config" / "live.env").is_file()
    check = cloudops("config", "check", "--json")  # the sandbox's pipeline, from $CLOUDOPS_PIPELINE
    assert check.exit_code == 0, check.stdout
    assert json.loads(check.stdout)["files_parsed"] == 2 * len(world.ACCOUNTS)


# --- pure: no servers ------------------------------------------------------------------


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_push_grants_read_principals_and_actions() -> None:
    own = "333333333333"
    allow = {"Effect": "Allow"}
    assert push_grants(_policy({**allow, "Principal": "*", "Action": "ecr:*"}), own)[0].principal == ANYONE
    [grant] = push_grants(
        _policy({**allow, "Principal": {"AWS": ["222222222222"]}, "Action": "ecr:Put*"}), own
    )
    assert (grant.principal, grant.actions) == ("222222222222", ("ecr:PutImage",))
    assert push_grants(_policy({**allow, "Principal": {"AWS": "*"}, "Action": "*"}), own)[0].actions[0] == (
        "ecr:PutImage"
    )
    # NotAction that leaves a push action allowed is a push grant.
    not_action = {
        **allow,
        "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
        "NotAction": "ecr:PutImage",
    }
    assert push_grants(_policy(not_action), own)[0].actions == (
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:BatchCheckLayerAvailability",
    )
    quiet: list[dict[str, Any]] = [
        {**allow, "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": ["ecr:BatchGetImage"]},
        {**allow, "Principal": {"AWS": f"arn:aws:iam::{own}:role/jenkins"}, "Action": "ecr:*"},
        {"Effect": "Deny", "Principal": "*", "Action": "ecr:*"},
        {**allow, "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "ecr:PutImage"},
    ]
    assert push_grants(_policy(*quiet), own) == []
    with pytest.raises(PolicyError):
        push_grants("{not json", own)


def _facts(name: str, account_id: str, **fields: Any) -> AccountFacts:
    facts = AccountFacts(name, account_id, f"ep-cloudops-{account_id}", caller_account=account_id)
    for key, value in fields.items():
        setattr(facts, key, value)
    return facts


PIPELINE = """\
accounts:
  build: {account_id: "111111111111", region: us-west-2, builds_images: true}
  qa:    {account_id: "222222222222", region: us-west-2}
stages: [build, qa]
source_repositories: {account: build, names: [docker]}
config_root: /nonexistent-config-for-this-test
"""


def test_rules_on_hand_made_facts() -> None:
    pipeline = parse_pipeline(PIPELINE)
    built = "sha256:" + "a" * 64
    facts = {
        "build": _facts(
            "build",
            "111111111111",
            source_repositories={"docker": True},
            repositories={"ep/cortex": RepositoryFacts(None, {built: ["1"]})},
            packages=[PackageObject("deployment-package/versions/1/p.zip", "b" * 64)],
            current_package={"version": "1", "sha256": "b" * 64},
        ),
        "qa": _facts(
            "qa",
            "222222222222",
            source_repositories={"docker": False},
            repositories={"ep/cortex": RepositoryFacts(None, {built: ["1"], "sha256:" + "c" * 64: []})},
            packages=[PackageObject("deployment-package/versions/1/p.zip", "b" * 64)],
            current_package={"version": "1", "sha256": "b" * 64},
        ),
    }
    findings, results = judge(pipeline, facts)
    status = {r.rule: r.status for r in results}
    assert [(f.rule, f.account, f.severity) for f in findings if f.rule != "config"] == [
        ("image-provenance", "qa", "error")
    ]
    assert "(untagged)" in findings[0].what
    assert status["config"] == "failed"  # the config folder does not exist: a finding

    facts["build"].unchecked["image-provenance"] = "AccessDenied"
    facts["build"].unchecked["deployment-package"] = "AccessDenied"
    findings, results = judge(pipeline, facts)
    status = {r.rule: r.status for r in results}
    assert status["image-provenance"] == status["deployment-package"] == "skipped"
    assert not [f for f in findings if f.rule in ("image-provenance", "deployment-package")]
