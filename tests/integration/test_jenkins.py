"""The destination accounts' Jenkins jobs: rendered from the sandbox's pipeline, loaded by
jenkins-job-builder's own CLI, compiled by Debian's groovyc, and their shell steps run
exactly as Jenkins runs them (same environment: parameters, the AWS credentials bindings'
variables, WORKSPACE, BUILD_URL ...) against the sandbox, with the agent's own AWS
credentials. prod requires an approval (the sandbox's pipeline): its release job plans,
waits for an input step, approves with the approver's credentials, then applies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
import yaml
from click.testing import CliRunner

from cloudops.cli.main import cli
from cloudops.oci import ACCEPT_MANIFESTS
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.init import init_account
from cloudops.sandbox import world
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import assumed_keys, context_for, publish, registry_token

DESTINATIONS = ("qa", "preprod", "prod")
KINDS = ("image", "package", "release")
PARAMETERS = {
    "image": [
        ("com.cloudbees.plugins.credentials.CredentialsParameterDefinition", "SOURCE_ACCOUNT_CREDENTIALS"),
        ("hudson.model.ChoiceParameterDefinition", "ECR_REPOSITORY"),
        ("hudson.model.StringParameterDefinition", "IMAGE_TAG"),
    ],
    "package": [
        ("com.cloudbees.plugins.credentials.CredentialsParameterDefinition", "SOURCE_ACCOUNT_CREDENTIALS"),
        ("hudson.model.StringParameterDefinition", "PACKAGE_VERSION"),
    ],
    "release": [
        ("com.cloudbees.plugins.credentials.CredentialsParameterDefinition", "SOURCE_ACCOUNT_CREDENTIALS"),
        ("hudson.model.StringParameterDefinition", "RELEASE_FILE"),
    ],
}
BIN = Path(sys.executable).parent
APPROVER_CREDENTIALS = "cloudops-prod-approver"
"""The Jenkins AWS credentials (of prod's release-approver role) prod's release job approves with."""
APPROVAL_STEPS = ("plan-release.sh", "approve-release.sh", "apply-release.sh")
GATED = "cloudops-promote-release-into-prod"
"""The one job that waits for an approval: the sandbox's pipeline requires one for prod, which
therefore gets no image or package job (cloudops promotes only releases into it)."""
JOB_NAMES = {
    f"cloudops-promote-{kind}-into-{account}"
    for account in DESTINATIONS
    for kind in KINDS
    if account != "prod" or kind == "release"
}


@pytest.fixture
def ctx(sandbox: world.SandboxState) -> PipelineContext:
    world.reset(sandbox)
    context = context_for(sandbox.pipeline)
    for account in ("build", "qa"):  # the jobs run here promote build -> qa
        init_account(context, account)
    return context


@pytest.fixture(scope="module")
def agent_pipeline(sandbox: world.SandboxState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox's pipeline as a destination's Jenkins agent has it: the destinations
    take the default credential chain (the agent's own keys), endpoints stay the sandbox's."""
    data = yaml.safe_load(sandbox.pipeline.read_text())
    for account in data["accounts"].values():
        if not account.get("builds_images"):
            account.pop("credentials", None)
    # prod's release job records its approval with the approver role's Jenkins credentials,
    # after someone of release-managers answers its input step.
    prod = data["approvals"]["prod"]
    prod.update(jenkins_credentials_id=APPROVER_CREDENTIALS, jenkins_submitters=["release-managers"])
    path = tmp_path_factory.mktemp("agent") / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass(frozen=True)
class Rendered:
    out: Path
    secrets: tuple[str, ...]
    """AWS key material that was in the environment while the jobs were rendered."""


@pytest.fixture(scope="module")
def rendered(
    sandbox: world.SandboxState, agent_pipeline: Path, tmp_path_factory: pytest.TempPathFactory
) -> Rendered:
    """Every destination's jobs, rendered by the CLI (in this process: one import, not
    three) in an environment full of AWS keys, as on a machine that has some."""
    keys = assumed_keys(sandbox, "qa")
    env = {
        **keys,
        "SOURCE_AWS_ACCESS_KEY_ID": keys["AWS_ACCESS_KEY_ID"],
        "SOURCE_AWS_SECRET_ACCESS_KEY": "x" * 40,
    }
    out = tmp_path_factory.mktemp("jobs")
    for account in DESTINATIONS:
        args = [
            "jenkins",
            "render",
            "--account",
            account,
            "--out",
            str(out),
            "--pipeline",
            str(agent_pipeline),
        ]
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
    secrets = (keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"], keys["AWS_SESSION_TOKEN"], "x" * 40)
    return Rendered(out, secrets)


@pytest.fixture(scope="module")
def jobs(rendered: Rendered) -> Path:
    return rendered.out


def embedded_script(jenkinsfile: str) -> str:
    match = re.search(r"script: '''(.*?)'''\)", jenkinsfile, re.DOTALL)
    assert match is not None, jenkinsfile
    return match.group(1)


def embedded_scripts(jenkinsfile: str) -> list[str]:
    return re.findall(r"script: '''(.*?)'''\)", jenkinsfile, re.DOTALL)


def run_job(
    job_dir: Path,
    workspace: Path,
    *,
    agent: dict[str, str],
    binding: dict[str, str],
    params: dict[str, str],
    pipeline: Path,
    path: str | None = None,
    step: str | None = None,
    with_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The job's shell step as Jenkins runs it: the sh step's text, taken from the
    Jenkinsfile, written to a durable-task script beside the workspace and executed in the
    workspace, with the agent's environment plus what Jenkins adds for the build. ``step``
    names one step of a job that has several (its script file); ``with_env`` is what a
    withEnv around the step adds."""
    scripts = embedded_scripts((job_dir / "Jenkinsfile").read_text())
    kind = job_dir.name.split("-")[2]
    if step is None:
        [script] = scripts
        assert script == (job_dir / f"promote-{kind}.sh").read_text()  # the artifact is the very text
    else:
        script = (job_dir / step).read_text()
        assert script == scripts[APPROVAL_STEPS.index(step)]  # the artifact is the very text
    workspace.mkdir(parents=True, exist_ok=True)
    durable = workspace.parent / f"{workspace.name}@tmp" / "durable-0a1b2c3d"
    durable.mkdir(parents=True, exist_ok=True)
    (durable / "script.sh").write_text(script)
    (durable / "script.sh").chmod(0o755)
    home = workspace.parent / "agent-home"
    home.mkdir(exist_ok=True)
    env = {
        # the agent: its PATH (cloudops installed), its own AWS keys, where its pipeline.yaml is
        "PATH": path or f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "CLOUDOPS_PIPELINE": str(pipeline),
        **agent,
        # what Jenkins sets for every build step
        "WORKSPACE": str(workspace),
        "WORKSPACE_TMP": str(durable.parent),
        "JENKINS_URL": "http://jenkins.example:8080/",
        "JOB_NAME": job_dir.name,
        "JOB_BASE_NAME": job_dir.name,
        "JOB_URL": f"http://jenkins.example:8080/job/{job_dir.name}/",
        "BUILD_NUMBER": "7",
        "BUILD_ID": "7",
        "BUILD_TAG": f"jenkins-{job_dir.name}-7",
        "BUILD_URL": f"http://jenkins.example:8080/job/{job_dir.name}/7/",
        "NODE_NAME": "built-in",
        "EXECUTOR_NUMBER": "0",
        "STAGE_NAME": f"Promote {kind}",
        # the build's parameters (a credentials parameter's value is the credentials id)
        "SOURCE_ACCOUNT_CREDENTIALS": "cloudops-build",
        **params,
        # withEnv([...]) around the step
        **(with_env or {}),
        # withCredentials([AmazonWebServicesCredentialsBinding ...])
        **binding,
    }
    return subprocess.run(
        [str(durable / "script.sh")], cwd=workspace, env=env, capture_output=True, text=True, timeout=120
    )


def iam_user_keys(sandbox: world.SandboxState, account: str, user: str) -> dict[str, str]:
    """Long-lived access keys of an IAM user of ``account``: what a Jenkins AWS credential holds."""
    keys = assumed_keys(sandbox, account)
    iam = boto3.client(
        "iam",
        endpoint_url=sandbox.moto_url,
        region_name=world.REGION,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys["AWS_SESSION_TOKEN"],
    )
    iam.create_user(UserName=user)
    created = iam.create_access_key(UserName=user)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": created["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": created["SecretAccessKey"]}


def source_binding(keys: dict[str, str]) -> dict[str, str]:
    """The variables the binding sets: its key names, and AWS_SESSION_TOKEN for temporary keys."""
    bound = {
        "SOURCE_AWS_ACCESS_KEY_ID": keys["AWS_ACCESS_KEY_ID"],
        "SOURCE_AWS_SECRET_ACCESS_KEY": keys["AWS_SECRET_ACCESS_KEY"],
    }
    if "AWS_SESSION_TOKEN" in keys:
        bound["AWS_SESSION_TOKEN"] = keys["AWS_SESSION_TOKEN"]
    return bound


def digest_in(context: PipelineContext, account: str, repository: str, tag: str) -> str | None:
    user, password = registry_token(context, account).split(":", 1)
    answer = httpx.head(
        f"http://{context.registry_host(account)}/v2/{repository}/manifests/{tag}",
        auth=(user, password),
        headers={"Accept": ACCEPT_MANIFESTS},
        timeout=30,
    )
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.status_code
    return answer.headers["Docker-Content-Digest"]


def test_jjb_loads_every_destinations_jobs_with_the_promised_parameters(jobs: Path, tmp_path: Path) -> None:
    (tmp_path / "jenkins_jobs.ini").write_text("[job_builder]\n")
    rendered = subprocess.run(
        [
            str(BIN / "jenkins-jobs"),
            "--conf",
            str(tmp_path / "jenkins_jobs.ini"),
            "test",
            "--recursive",
            "--config-xml",
            "-o",
            str(tmp_path / "xml"),
            str(jobs),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert {p.name for p in (tmp_path / "xml").iterdir()} == JOB_NAMES

    previous = {"qa": "build", "preprod": "qa", "prod": "preprod"}
    for account in DESTINATIONS:
        for kind in KINDS:
            name = f"cloudops-promote-{kind}-into-{account}"
            if name not in JOB_NAMES:
                assert not (jobs / name).exists()
                continue
            xml = (tmp_path / "xml" / name / "config.xml").read_text()
            assert xml == (jobs / name / "config.xml").read_text()  # what we shipped is what JJB makes
            root = ET.fromstring(xml)
            definitions = root.findall(
                "properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions/*"
            )
            assert [(d.tag, d.findtext("name")) for d in definitions] == PARAMETERS[kind]
            credentials = definitions[0]
            assert credentials.findtext("credentialType") == (
                "com.cloudbees.jenkins.plugins.awscredentials.AWSCredentialsImpl"
            )
            assert credentials.findtext("defaultValue") == f"cloudops-{previous[account]}"
            assert credentials.findtext("required") == "true"
            if kind == "image":
                assert [s.text for s in definitions[1].iter("string")] == world.IMAGES
                assert definitions[2].findtext("trim") == "true"
            flow = root.find("definition")
            assert (
                flow is not None
                and flow.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition"
            )
            script = flow.findtext("script") or ""
            assert script == (jobs / name / "Jenkinsfile").read_text()
            assert 'cloudops "${args[@]}"' in script
            if name == GATED:
                steps = [(jobs / name / step).read_text() for step in APPROVAL_STEPS]
                assert embedded_scripts(script) == steps
                assert "plan --to prod" in steps[0] and "input(message: " in script
                assert f"credentialsId: '{APPROVER_CREDENTIALS}'" in script
                assert "submitter: 'release-managers'" in script
                assert "which requires an approval" in (root.findtext("description") or "")
            else:
                assert embedded_script(script) == (jobs / name / f"promote-{kind}.sh").read_text()
                assert f"promote {kind} --to {account}" in script and "input(" not in script
            assert (
                "withCredentials([[$class: 'AmazonWebServicesCredentialsBinding', credentialsId: "
                "params.SOURCE_ACCOUNT_CREDENTIALS, accessKeyVariable: 'SOURCE_AWS_ACCESS_KEY_ID', "
                "secretKeyVariable: 'SOURCE_AWS_SECRET_ACCESS_KEY']])"
            ) in script


def test_the_image_job_pulls_into_its_account_with_the_agents_credentials(
    ctx: PipelineContext, sandbox: world.SandboxState, jobs: Path, agent_pipeline: Path, tmp_path: Path
) -> None:
    digest = publish(ctx, "build", "ep/cortex", "9.1.0")
    source = iam_user_keys(sandbox, "build", "jenkins-source")  # the Jenkins credential: IAM user keys
    agent = assumed_keys(sandbox, "qa")  # the agent's own role in qa
    workspace = tmp_path / "workspace"

    result = run_job(
        jobs / "cloudops-promote-image-into-qa",
        workspace,
        agent=agent,
        binding=source_binding(source),
        params={"ECR_REPOSITORY": "ep/cortex", "IMAGE_TAG": "9.1.0"},
        pipeline=agent_pipeline,
    )

    assert result.returncode == 0, result.stderr
    archived = json.loads((workspace / "cloudops-result.json").read_text())
    [image] = archived["images"]
    assert (image["status"], image["source_digest"], image["destination_account"]) == (
        "promoted",
        digest,
        "qa",
    )
    assert not (workspace / "cloudops-error.txt").exists()
    assert digest_in(ctx, "qa", "ep/cortex", "9.1.0") == digest
    log = result.stdout + result.stderr
    for secret in (
        source["AWS_SECRET_ACCESS_KEY"],
        source["AWS_ACCESS_KEY_ID"],
        agent["AWS_SECRET_ACCESS_KEY"],
    ):
        assert secret not in log and secret not in json.dumps(archived)


def test_the_job_refuses_an_agent_whose_credentials_belong_to_another_account(
    ctx: PipelineContext, sandbox: world.SandboxState, jobs: Path, agent_pipeline: Path, tmp_path: Path
) -> None:
    publish(ctx, "build", "ep/search", "2.0")
    workspace = tmp_path / "workspace"
    storage = sandbox.root / "registries" / "qa" / "storage"
    before = {p: p.stat().st_mtime_ns for p in storage.rglob("*")}

    result = run_job(
        jobs / "cloudops-promote-image-into-qa",
        workspace,
        agent=assumed_keys(sandbox, "preprod"),  # qa's job on an agent of preprod
        binding=source_binding(iam_user_keys(sandbox, "build", "jenkins-source")),
        params={"ECR_REPOSITORY": "ep/search", "IMAGE_TAG": "2.0"},
        pipeline=agent_pipeline,
    )

    assert result.returncode == 3, result.stderr
    reason = (workspace / "cloudops-error.txt").read_text()  # the build's failure reason
    assert (
        reason.startswith("error: refusing to promote into 'qa'")
        and "belong to account 333333333333" in reason
    )
    assert "fix:" in reason and "Traceback" not in result.stderr
    assert not (workspace / "cloudops-result.json").exists()
    assert digest_in(ctx, "qa", "ep/search", "2.0") is None
    assert {p: p.stat().st_mtime_ns for p in storage.rglob("*")} == before  # nothing written


def test_role_based_source_credentials_keep_their_session_token_to_themselves(
    ctx: PipelineContext, sandbox: world.SandboxState, jobs: Path, agent_pipeline: Path, tmp_path: Path
) -> None:
    """A Jenkins AWS credential with an IAM role binds temporary keys and always names their
    token AWS_SESSION_TOKEN: the step hands it to the source, not to the agent's own keys."""
    digest = publish(ctx, "build", "ep/batch", "3.1")
    result = run_job(
        jobs / "cloudops-promote-image-into-qa",
        tmp_path / "workspace",
        agent=iam_user_keys(sandbox, "qa", "jenkins-agent"),
        binding=source_binding(assumed_keys(sandbox, "build")),
        params={"ECR_REPOSITORY": "ep/batch", "IMAGE_TAG": "3.1"},
        pipeline=agent_pipeline,
    )
    assert result.returncode == 0, result.stderr
    assert digest_in(ctx, "qa", "ep/batch", "3.1") == digest


@pytest.mark.parametrize(
    ("job", "params", "needle"),
    [
        ("image", {"ECR_REPOSITORY": "ep/cortex", "IMAGE_TAG": "-rf"}, "IMAGE_TAG '-rf' is not a tag"),
        ("image", {"ECR_REPOSITORY": "ep/cortex", "IMAGE_TAG": ""}, "IMAGE_TAG '' is not a tag"),
        ("image", {"ECR_REPOSITORY": "ep/other", "IMAGE_TAG": "1"}, "is not one of the pipeline's images"),
        ("release", {"RELEASE_FILE": "../release.yaml"}, "must be a path inside the workspace"),
        ("release", {"RELEASE_FILE": "/etc/release.yaml"}, "must be a path inside the workspace"),
        ("release", {"RELEASE_FILE": "missing.yaml"}, "is not a file in the workspace"),
    ],
)
def test_bad_parameters_are_refused_before_cloudops_runs(
    jobs: Path, agent_pipeline: Path, tmp_path: Path, job: str, params: dict[str, str], needle: str
) -> None:
    calls = tmp_path / "calls"
    fake = _fake_cloudops(tmp_path, calls, status=0)
    workspace = tmp_path / "workspace"
    result = run_job(
        jobs / f"cloudops-promote-{job}-into-qa",
        workspace,
        agent={},
        binding={},
        params=params,
        pipeline=agent_pipeline,
        path=f"{fake}:/usr/bin:/bin",
    )
    assert result.returncode == 2, result.stderr
    assert needle in (workspace / "cloudops-error.txt").read_text()
    assert not calls.exists()  # cloudops never ran


def _fake_cloudops(tmp_path: Path, calls: Path, *, status: int) -> Path:
    """A `cloudops` that records its arguments (one per line) and the AWS variables it saw
    (its own, the source's and the approver's)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "cloudops"
    fake.write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "$@" > {calls}\n'
        f'env | grep -oE "^(SOURCE_|CLOUDOPS_APPROVER_)?AWS_[A-Z_]*" | sort > {calls}.env\n'
        "echo '{\"ok\": true}'\n"
        + (f"echo 'error: it failed' >&2; echo '  fix: do this' >&2; exit {status}\n" if status else "")
    )
    fake.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("job", "params", "arguments"),
    [
        (
            "package",
            {"PACKAGE_VERSION": "8.5.0-1"},
            ["promote", "package", "--to", "qa", "--version=8.5.0-1"],
        ),
        ("package", {"PACKAGE_VERSION": ""}, ["promote", "package", "--to", "qa"]),
        (
            "release",
            {"RELEASE_FILE": "releases/r1.yaml"},
            ["promote", "release", "--to", "qa", "--release=releases/r1.yaml"],
        ),
    ],
)
def test_package_and_release_jobs_pass_their_parameters_as_single_arguments(
    jobs: Path, agent_pipeline: Path, tmp_path: Path, job: str, params: dict[str, str], arguments: list[str]
) -> None:
    calls = tmp_path / "calls"
    workspace = tmp_path / "workspace"
    (workspace / "releases").mkdir(parents=True)
    (workspace / "releases" / "r1.yaml").write_text("images: []\n")
    result = run_job(
        jobs / f"cloudops-promote-{job}-into-qa",
        workspace,
        agent={},
        binding={
            "SOURCE_AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE12",
            "SOURCE_AWS_SECRET_ACCESS_KEY": "s3cr3t",
        },
        params=params,
        pipeline=agent_pipeline,
        path=f"{_fake_cloudops(tmp_path, calls, status=0)}:/usr/bin:/bin",
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [*arguments, "--source-credentials-env", "SOURCE", "--json"]
    assert (calls.parent / "calls.env").read_text().split() == [
        "SOURCE_AWS_ACCESS_KEY_ID",
        "SOURCE_AWS_SECRET_ACCESS_KEY",
    ]
    assert json.loads((workspace / "cloudops-result.json").read_text()) == {"ok": True}


def test_the_bindings_session_token_goes_to_the_source_not_to_the_agent(
    jobs: Path, agent_pipeline: Path, tmp_path: Path
) -> None:
    """Role-based AWS credentials bind temporary keys and name their token AWS_SESSION_TOKEN."""
    calls = tmp_path / "calls"
    result = run_job(
        jobs / "cloudops-promote-image-into-qa",
        tmp_path / "workspace",
        agent={"AWS_ACCESS_KEY_ID": "AKIAAGENTAGENTAGENT1", "AWS_SECRET_ACCESS_KEY": "agent"},
        binding={
            "SOURCE_AWS_ACCESS_KEY_ID": "ASIASOURCESOURCESRC1",
            "SOURCE_AWS_SECRET_ACCESS_KEY": "source",
            "AWS_SESSION_TOKEN": "source-token",
        },
        params={"ECR_REPOSITORY": "ep/cortex", "IMAGE_TAG": "1"},
        pipeline=agent_pipeline,
        path=f"{_fake_cloudops(tmp_path, calls, status=0)}:/usr/bin:/bin",
    )
    assert result.returncode == 0, result.stderr
    assert (calls.parent / "calls.env").read_text().split() == [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "SOURCE_AWS_ACCESS_KEY_ID",
        "SOURCE_AWS_SECRET_ACCESS_KEY",
        "SOURCE_AWS_SESSION_TOKEN",
    ]


def test_a_failing_cloudops_fails_the_step_with_its_exit_code_and_message(
    jobs: Path, agent_pipeline: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    result = run_job(
        jobs / "cloudops-promote-package-into-preprod",
        workspace,
        agent={},
        binding={},
        params={"PACKAGE_VERSION": "1"},
        pipeline=agent_pipeline,
        path=f"{_fake_cloudops(tmp_path, tmp_path / 'calls', status=4)}:/usr/bin:/bin",
    )
    assert result.returncode == 4
    assert (workspace / "cloudops-error.txt").read_text() == "error: it failed\n  fix: do this\n"
    assert "error: it failed" in result.stderr  # and the log shows the tool's own output


@pytest.mark.parametrize("kind", KINDS)
def test_the_jobs_use_only_flags_the_real_commands_have(kind: str) -> None:
    help_text = CliRunner().invoke(cli, ["promote", kind, "--help"])
    if help_text.exit_code != 0:
        pytest.skip(f"cloudops promote {kind} is not there yet")
    flags = {"image": ["--repository", "--tag"], "package": ["--version"], "release": ["--release"]}[kind]
    for flag in ["--to", "--source-credentials-env", "--json", *flags]:
        assert flag in help_text.output, (kind, flag)


def test_rendered_files_hold_no_secret_and_only_the_pipelines_account_ids(
    sandbox: world.SandboxState, rendered: Rendered
) -> None:
    texts = [p.read_text() for p in rendered.out.rglob("*") if p.is_file()]
    # Four files a job; prod's release job has three scripts instead of one.
    assert len(texts) == len(JOB_NAMES) * 4 + 2
    ids = set(world.ACCOUNTS.values())
    for text in texts:
        for secret in rendered.secrets:
            assert secret not in text
        assert not re.search(r"\b(AKIA|ASIA)[A-Z0-9]{12,}", text)
        assert set(re.findall(r"(?<![0-9])[0-9]{12}(?![0-9])", text)) <= ids
        assert sandbox.moto_url not in text and os.environ["CLOUDOPS_PIPELINE"] not in text


def test_rendering_for_the_build_account_is_refused_and_writes_nothing(
    agent_pipeline: Path, tmp_path: Path
) -> None:
    result = cloudops(
        "jenkins",
        "render",
        "--account",
        "build",
        "--out",
        str(tmp_path / "out"),
        "--pipeline",
        str(agent_pipeline),
    )
    assert_clean_failure(result, 3, "'build' is the build account")
    assert not (tmp_path / "out").exists()


# --- compiling the Jenkinsfiles ------------------------------------------------------------


def _java_home() -> str:
    """groovyc needs JAVA_HOME (Debian's script falls back to /usr/lib/jvm/default-java,
    which not every JDK package installs): the JDK of the `java` on PATH."""
    current = os.environ.get("JAVA_HOME")
    if current and (Path(current) / "bin" / "java").exists():
        return current
    java = shutil.which("java")
    assert java is not None, "no java on PATH: `make sysdeps` installs Debian's groovy (and a JRE)"
    return str(Path(java).resolve().parent.parent)


def test_every_rendered_jenkinsfile_compiles_with_groovyc(jobs: Path, tmp_path: Path) -> None:
    """Each Jenkinsfile is valid Groovy: groovyc compiles all of them, the approval job
    (input step, withEnv, the approver's binding) among them. Jenkins would load none that
    groovyc refuses; a syntax error in a template fails here, not in a build."""
    groovyc = shutil.which("groovyc")
    assert groovyc is not None, "groovyc is not installed: `make sysdeps` installs Debian's groovy"
    sources = tmp_path / "src"
    sources.mkdir()
    jenkinsfiles = sorted(jobs.glob("*/Jenkinsfile"))
    assert [path.parent.name for path in jenkinsfiles] == sorted(JOB_NAMES)
    assert (jobs / GATED / "Jenkinsfile") in jenkinsfiles
    assert "def approver = input(" in (jobs / GATED / "Jenkinsfile").read_text()
    files = []
    for index, jenkinsfile in enumerate(jenkinsfiles):  # a script's class is named after its file
        source = sources / f"Jenkinsfile{index}.groovy"
        source.write_text(jenkinsfile.read_text())
        files.append(str(source))
    compiled = subprocess.run(
        [groovyc, "-d", str(tmp_path / "classes"), *files],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAVA_HOME": _java_home()},
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    classes = {p.name for p in (tmp_path / "classes").glob("*.class")}
    assert {f"Jenkinsfile{index}.class" for index in range(len(files))} <= classes


def test_groovyc_refuses_a_broken_jenkinsfile(jobs: Path, tmp_path: Path) -> None:
    """The compile above would notice: an unbalanced bracket in the approval job fails it."""
    groovyc = shutil.which("groovyc")
    assert groovyc is not None, "groovyc is not installed: `make sysdeps` installs Debian's groovy"
    text = (jobs / GATED / "Jenkinsfile").read_text()
    broken = tmp_path / "Broken.groovy"
    broken.write_text(text.replace("withEnv([", "withEnv([[", 1))
    compiled = subprocess.run(
        [groovyc, "-d", str(tmp_path / "classes"), str(broken)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAVA_HOME": _java_home()},
    )
    assert compiled.returncode != 0


# --- the release job into prod: plan, input, approve, apply ---------------------------------


def approver_binding(sandbox: world.SandboxState) -> dict[str, str]:
    """What the approver's binding sets: a Jenkins AWS credential with prod's approver role
    (world.APPROVER_ROLE) binds temporary keys, their token as AWS_SESSION_TOKEN."""
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox.moto_url,
        region_name=world.REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    creds = sts.assume_role(RoleArn=world.APPROVER_ROLE, RoleSessionName="jenkins-approver")["Credentials"]
    return {
        "CLOUDOPS_APPROVER_AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "CLOUDOPS_APPROVER_AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


def test_the_prod_release_job_applies_only_the_plan_its_input_step_approved(
    ctx: PipelineContext, sandbox: world.SandboxState, jobs: Path, agent_pipeline: Path, tmp_path: Path
) -> None:
    """Plan (source keys bound), the input step (who answered it: jenkins:alice), approve
    (the approver role's keys bound), apply (source keys bound again): each step the very
    text of the Jenkinsfile, run as Jenkins runs it, against the sandbox."""
    for account in ("preprod", "prod"):
        init_account(ctx, account)
    digest = publish(ctx, "preprod", "ep/cortex", "9.3.0")  # as if promoted into preprod before
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "release.yaml").write_text(
        'release: "2026.12"\nimages:\n  - {repository: ep/cortex, tag: "9.3.0"}\n'
    )
    job = jobs / GATED
    agent = iam_user_keys(sandbox, "prod", "jenkins-agent")  # the agent's own identity in prod
    source = source_binding(iam_user_keys(sandbox, "preprod", "jenkins-source"))
    params = {"RELEASE_FILE": "release.yaml"}

    def run(step: str, binding: dict[str, str], **with_env: str) -> subprocess.CompletedProcess[str]:
        return run_job(
            job,
            workspace,
            agent=agent,
            binding=binding,
            params=params,
            pipeline=agent_pipeline,
            step=step,
            with_env=with_env,
        )

    planned = run("plan-release.sh", source)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads((workspace / "cloudops-plan.json").read_text())
    plan_hash = (workspace / "cloudops-plan-hash.txt").read_text().strip()  # what the input step shows
    assert plan["plan_hash"] == plan_hash and plan["route"]["destination"] == "prod"
    assert [image["status"] for image in plan["images"]] == ["copy"]

    # Applied before anyone answered the input step: refused, nothing written.
    early = run("apply-release.sh", source)
    assert early.returncode == 3, early.stderr
    assert "prod requires an approval" in (workspace / "cloudops-error.txt").read_text()
    assert digest_in(ctx, "prod", "ep/cortex", "9.3.0") is None

    # A plan other than the one the input step showed is not approved.
    other = "sha256:" + "0" * 64
    mismatch = run(
        "approve-release.sh",
        approver_binding(sandbox),
        CLOUDOPS_APPROVED_BY="jenkins:alice",
        CLOUDOPS_PLAN_HASH=other,
    )
    assert mismatch.returncode == 3, mismatch.stderr
    assert "is not the plan the input step showed" in (workspace / "cloudops-error.txt").read_text()

    approver = approver_binding(sandbox)
    approved = run(
        "approve-release.sh", approver, CLOUDOPS_APPROVED_BY="jenkins:alice", CLOUDOPS_PLAN_HASH=plan_hash
    )
    assert approved.returncode == 0, approved.stderr
    record = json.loads((workspace / "cloudops-approval.json").read_text())
    assert record["plan_hash"] == plan_hash and record["note"] == "jenkins:alice"
    assert record["approver"].startswith("arn:aws:sts::444444444444:assumed-role/release-approver/")
    assert record["jenkins_build"] == f"http://jenkins.example:8080/job/{GATED}/7/"

    applied = run("apply-release.sh", source)
    assert applied.returncode == 0, applied.stderr
    result = json.loads((workspace / "cloudops-result.json").read_text())
    assert result["plan_hash"] == plan_hash
    assert digest_in(ctx, "prod", "ep/cortex", "9.3.0") == digest
    log = "".join(r.stdout + r.stderr for r in (planned, early, mismatch, approved, applied))
    for secret in (
        agent["AWS_SECRET_ACCESS_KEY"],
        source["SOURCE_AWS_SECRET_ACCESS_KEY"],
        approver["CLOUDOPS_APPROVER_AWS_SECRET_ACCESS_KEY"],
        approver["AWS_SESSION_TOKEN"],
    ):
        assert secret not in log


def _fake_plan(workspace: Path) -> str:
    """A plan file as `cloudops plan --out` writes it, as far as the approve step reads it."""
    plan_hash = "sha256:" + "ab" * 32
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "cloudops-plan.json").write_text(
        json.dumps({"format": 1, "plan_hash": plan_hash, "ok": True}, indent=2) + "\n"
    )
    return plan_hash


@pytest.mark.parametrize(
    "who",
    [
        "alice",
        "o'brien; touch pwned",
        '$(touch pwned) `touch pwned` "quoted" ${HOME} --json',
        "-rf --credentials-env SOURCE",
    ],
)
def test_who_answered_the_input_reaches_cloudops_as_one_argument_and_nothing_else(
    jobs: Path, agent_pipeline: Path, tmp_path: Path, who: str
) -> None:
    """A Jenkins user id is whatever the security realm says: the approve step passes it
    to `cloudops approve --note` as one argument, never runs or splits it."""
    calls = tmp_path / "calls"
    workspace = tmp_path / "workspace"
    plan_hash = _fake_plan(workspace)
    result = run_job(
        jobs / GATED,
        workspace,
        agent={},
        binding={
            "CLOUDOPS_APPROVER_AWS_ACCESS_KEY_ID": "AKIAAPPROVERAPPROVE1",
            "CLOUDOPS_APPROVER_AWS_SECRET_ACCESS_KEY": "a",
        },
        params={"RELEASE_FILE": "release.yaml"},
        pipeline=agent_pipeline,
        path=f"{_fake_cloudops(tmp_path, calls, status=0)}:/usr/bin:/bin",
        step="approve-release.sh",
        with_env={"CLOUDOPS_APPROVED_BY": f"jenkins:{who}", "CLOUDOPS_PLAN_HASH": plan_hash},
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "approve",
        "cloudops-plan.json",
        "--credentials-env",
        "CLOUDOPS_APPROVER",
        f"--note=jenkins:{who}",
        "--json",
    ]
    assert (calls.parent / "calls.env").read_text().split() == [
        "CLOUDOPS_APPROVER_AWS_ACCESS_KEY_ID",
        "CLOUDOPS_APPROVER_AWS_SECRET_ACCESS_KEY",
    ]
    assert not list(tmp_path.rglob("pwned"))
    assert json.loads((workspace / "cloudops-approval.json").read_text()) == {"ok": True}


@pytest.mark.parametrize(
    ("with_env", "plan", "code", "needle"),
    [
        ({"CLOUDOPS_PLAN_HASH": "sha256:" + "ab" * 32}, True, 2, "CLOUDOPS_APPROVED_BY is not set"),
        ({"CLOUDOPS_APPROVED_BY": "jenkins:alice"}, True, 2, "CLOUDOPS_PLAN_HASH is not set"),
        (
            {"CLOUDOPS_APPROVED_BY": "jenkins:alice", "CLOUDOPS_PLAN_HASH": "sha256:" + "cd" * 32},
            True,
            3,
            "is not the plan the input step showed",
        ),
        (
            {"CLOUDOPS_APPROVED_BY": "jenkins:alice", "CLOUDOPS_PLAN_HASH": "sha256:" + "ab" * 32},
            False,
            2,
            "no plan cloudops-plan.json in the workspace",
        ),
    ],
)
def test_the_approve_step_approves_nothing_it_was_not_shown(
    jobs: Path,
    agent_pipeline: Path,
    tmp_path: Path,
    with_env: dict[str, str],
    plan: bool,
    code: int,
    needle: str,
) -> None:
    calls = tmp_path / "calls"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    if plan:
        _fake_plan(workspace)
    result = run_job(
        jobs / GATED,
        workspace,
        agent={},
        binding={},
        params={},
        pipeline=agent_pipeline,
        path=f"{_fake_cloudops(tmp_path, calls, status=0)}:/usr/bin:/bin",
        step="approve-release.sh",
        with_env=with_env,
    )
    assert result.returncode == code, result.stderr
    assert needle in (workspace / "cloudops-error.txt").read_text()
    assert not calls.exists()  # cloudops never ran


def test_rendering_prod_without_approver_credentials_is_refused_and_writes_nothing(
    agent_pipeline: Path, tmp_path: Path
) -> None:
    """The sandbox's own pipeline requires an approval for prod by release-approver and
    names no Jenkins credentials to record it with: prod's release job could never apply."""
    data = yaml.safe_load(agent_pipeline.read_text())
    del data["approvals"]["prod"]["jenkins_credentials_id"]
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    result = cloudops(
        "jenkins", "render", "--account", "prod", "--out", str(out), "--pipeline", str(pipeline)
    )
    assert_clean_failure(
        result,
        2,
        "the release job into 'prod' could never apply",
        "approvals.prod.jenkins_credentials_id",
        "allow_self_approval",
    )
    assert not out.exists()
    ok = cloudops("jenkins", "render", "--account", "qa", "--out", str(out), "--pipeline", str(pipeline))
    assert ok.returncode == 0, ok.stderr  # the stages that require no approval render as before


@pytest.mark.parametrize(
    ("release_file", "needle"),
    [
        ("../release.yaml", "must be a path inside the workspace"),
        ("/etc/release.yaml", "must be a path inside the workspace"),
        ("missing.yaml", "is not a file in the workspace"),
    ],
)
def test_the_plan_step_refuses_a_bad_release_file_before_cloudops_runs(
    jobs: Path, agent_pipeline: Path, tmp_path: Path, release_file: str, needle: str
) -> None:
    calls = tmp_path / "calls"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "cloudops-plan.json").write_text("{}\n")  # an earlier build's: never approved
    (workspace / "cloudops-approval.json").write_text("{}\n")
    result = run_job(
        jobs / GATED,
        workspace,
        agent={},
        binding={},
        params={"RELEASE_FILE": release_file},
        pipeline=agent_pipeline,
        path=f"{_fake_cloudops(tmp_path, calls, status=0)}:/usr/bin:/bin",
        step="plan-release.sh",
    )
    assert result.returncode == 2, result.stderr
    assert needle in (workspace / "cloudops-error.txt").read_text()
    assert not calls.exists()  # cloudops never ran
    assert (
        not (workspace / "cloudops-plan.json").exists()
        and not (workspace / "cloudops-approval.json").exists()
    )
