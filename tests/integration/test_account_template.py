"""An account's setup as CloudFormation (issue 16): the template `cloudops init ACCOUNT
--emit cloudformation` writes is linted by cfn-lint, deployed to moto's CloudFormation in
the sandbox, and then used: the next stage promotes through the read-only role the stack
created, and `init` reports and corrects what moto's CloudFormation did not apply.

moto does not enforce IAM policies, so the role's narrowness is checked in the template
itself (what it allows, on which resources), not by a refused call."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3

from cloudops.pipeline.account_template import PULL_ACTIONS, account_template, pull_role_name
from cloudops.pipeline.init import init_account
from cloudops.release_gates import REJECTED_PREFIX
from cloudops.sandbox import world
from tests.support.run import cloudops
from tests.support.sandbox import context_for, ecr_tags, publish, registry_digest

CFN_LINT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "cfn-lint"


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CFN_LINT), str(path)], capture_output=True, text=True, timeout=120)


def test_every_accounts_template_passes_cfn_lint_and_the_pull_role_reads_only_packages(
    sandbox: world.SandboxState, tmp_path: Path
) -> None:
    context = context_for(sandbox.pipeline)
    pipeline = context.pipeline
    for account in pipeline.stages:
        path = tmp_path / f"{account}.json"
        emitted = cloudops("init", account, "--emit", "cloudformation", "--out", str(path))
        assert emitted.returncode == 0, emitted.stderr
        template = json.loads(path.read_text())
        assert template == account_template(pipeline, account)
        linted = _lint(path)
        assert linted.returncode == 0, linted.stdout + linted.stderr
        repositories = {
            r["Properties"]["RepositoryName"]: r["Properties"]
            for r in template["Resources"].values()
            if r["Type"] == "AWS::ECR::Repository"
        }
        assert sorted(repositories) == sorted(pipeline.images)
        assert all(p["ImageTagMutability"] == "IMMUTABLE" for p in repositories.values())
        bucket = template["Resources"]["Bucket"]["Properties"]
        assert bucket["BucketName"] == pipeline.bucket(account)
        assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
        assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
        role = template["Resources"].get("PullRole")
        if account == pipeline.stages[-1]:
            assert role is None  # nobody pulls from the last stage
            continue
        reader = pipeline.stages[pipeline.stages.index(account) + 1]
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"AWS": f"arn:aws:iam::{sandbox.account_id(reader)}:root"}]
        statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        allowed = {
            (a, r)
            for s in statements
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
            for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
        }
        bucket_arn = f"arn:aws:s3:::{pipeline.bucket(account)}"
        assert ("s3:GetObject", f"{bucket_arn}/{REJECTED_PREFIX}*") in allowed  # gates read rejections
        assert {a for a, _ in allowed} == {
            "ecr:GetAuthorizationToken",
            "s3:GetObject",
            "s3:ListBucket",
            *PULL_ACTIONS,
        }
        assert ("s3:GetObject", f"{bucket_arn}/deployment-package/*") in allowed  # the package prefix only
        assert not any(
            a.startswith(("s3:Put", "s3:Delete", "ecr:Put", "ecr:Batch" + "Delete")) for a, _ in allowed
        )
        assert all(r.startswith(f"arn:aws:ecr:{world.REGION}:{sandbox.account_id(account)}:repository/")
                   for a, r in allowed if a in PULL_ACTIONS)  # fmt: skip


def test_a_stack_deployed_from_the_template_is_an_account_the_pipeline_promotes_through(
    sandbox: world.SandboxState, tmp_path: Path
) -> None:
    world.reset(sandbox)
    context = context_for(sandbox.pipeline)
    pipeline = context.pipeline
    for account in ("build", "preprod"):
        init_account(context, account)
    # qa comes from CloudFormation only, deployed with qa's own credentials.
    template = account_template(pipeline, "qa")
    cfn = context.session("qa").client("cloudformation")
    cfn.create_stack(
        StackName="cloudops-qa", TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_NAMED_IAM"]
    )
    stack = cfn.describe_stacks(StackName="cloudops-qa")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    role_arn = outputs["PullRoleArn"]
    assert role_arn == f"arn:aws:iam::{sandbox.account_id('qa')}:role/{pull_role_name('qa', 'preprod')}"

    # What moto's CloudFormation did not apply (it keeps tag immutability and the bucket's
    # encryption, drops scanning, lifecycle, versioning, public access block: moto 5.2) is
    # drift that init reports, then corrects; after that init has nothing left to do.
    dry = json.loads(cloudops("init", "qa", "--dry-run", "--json").stdout)
    assert dry["complete"] is True and dry["changed"] is True, dry
    assert "enable versioning" in dry["bucket"]["steps"]
    assert cloudops("init", "qa").returncode == 0
    again = json.loads(cloudops("init", "qa", "--dry-run", "--json").stdout)
    assert again["changed"] is False and again["changes"] == [] and again["bucket"]["steps"] == [], again
    s3 = context.session("qa").client("s3")
    assert s3.get_bucket_versioning(Bucket=pipeline.bucket("qa"))["Status"] == "Enabled"

    # build -> qa into the stack's repositories and bucket, then qa -> preprod with the
    # source read through the stack's pull role, assumed with preprod's credentials.
    digest = publish(context, "build", "ep/cortex", "8.5.0")
    assert (
        cloudops("promote", "image", "--to", "qa", "--repository", "ep/cortex", "--tag", "8.5.0").returncode
        == 0
    )
    keys = _assume(context, "preprod", role_arn)
    env = {f"PULL_AWS_{k}": v for k, v in keys.items()}
    promoted = cloudops(
        "promote", "image", "--to", "preprod", "--repository", "ep/cortex", "--tag", "8.5.0",
        "--source-credentials-env", "PULL", env=env,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    assert ecr_tags(context, "preprod", "ep/cortex") == {"8.5.0": digest}
    assert registry_digest(context, "preprod", "ep/cortex", "8.5.0") == digest
    history = json.loads(cloudops("history", "--account", "preprod", "--json").stdout)["records"]
    assert [(r["source_account"], r["result"]) for r in history] == [("qa", "promoted")]


def _assume(context: Any, account: str, role_arn: str) -> dict[str, str]:
    session: boto3.Session = context.session(account).session
    answer = session.client("sts", endpoint_url=context.session(account).endpoint_url).assume_role(
        RoleArn=role_arn, RoleSessionName="jenkins-preprod"
    )["Credentials"]
    return {
        "ACCESS_KEY_ID": answer["AccessKeyId"],
        "SECRET_ACCESS_KEY": answer["SecretAccessKey"],
        "SESSION_TOKEN": answer["SessionToken"],
    }
