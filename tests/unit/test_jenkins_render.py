"""Rendering the destination accounts' Jenkins jobs from pipeline.yaml (no server)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.errors import InputError
from cloudops.jenkins import KINDS, TAG_PATTERN, job_specs, render_account, write_rendered
from cloudops.jenkins.jenkinsfile import BINDING, approver_binding, groovy_string
from cloudops.jenkins.render import RenderedJob
from cloudops.jenkins.shell import shell_step
from cloudops.pipeline.model import parse_pipeline
from cloudops.pipeline.stages import StageRuleError
from cloudops.refs import ReferenceError, validate_tag

BASE = """\
accounts:
  build:   {account_id: "111111111111", region: us-west-2, builds_images: true,
            credentials: {profile: build, jenkins_credentials_id: build-ecr-readonly}}
  qa:      {account_id: "222222222222", region: us-west-2}
  preprod: {account_id: "333333333333", region: us-west-2}
  prod:    {account_id: "444444444444", region: us-west-2}
stages: [build, qa, preprod, prod]
images: [ep/cortex, ep/search]
"""
# prod, the last stage, requires an approval (as by default); the release job approves with
# the Jenkins credentials prod-release-approver, after alice or release-managers answer.
PIPELINE = (
    BASE
    + """\
approvals:
  prod: {approvers: ["arn:aws:sts::444444444444:assumed-role/release-approver/*"],
         jenkins_submitters: [alice, release-managers], jenkins_credentials_id: prod-release-approver}
"""
)


def embedded_script(jenkinsfile: str) -> str:
    """The shell step's text, as the Jenkinsfile's sh step holds it."""
    match = re.search(r"script: '''(.*?)'''\)", jenkinsfile, re.DOTALL)
    assert match is not None, jenkinsfile
    return match.group(1)


# No "\n" in the alphabet: refs.validate_tag's "$" also matches before a final newline, so it
# takes "1.0\n"; the job's grammar (bash: "$" is the end of the string) refuses it.
@given(st.text(alphabet=st.sampled_from("aZ09_.-/:+ é"), max_size=130))
def test_the_jobs_tag_grammar_is_the_tools(tag: str) -> None:
    try:
        validate_tag(tag)
        valid = True
    except ReferenceError:
        valid = False
    assert (re.fullmatch(TAG_PATTERN, tag) is not None) == valid


def test_a_128_character_tag_is_the_longest() -> None:
    assert re.fullmatch(TAG_PATTERN, "a" * 128) and not re.fullmatch(TAG_PATTERN, "a" * 129)


def test_each_destination_gets_its_jobs_whose_source_credentials_default_to_the_previous_stage() -> None:
    pipeline = parse_pipeline(PIPELINE)
    qa = {spec.kind: spec for spec in job_specs(pipeline, "qa")}
    assert list(qa) == ["image", "package", "release"]
    assert [p.name for p in qa["image"].parameters] == [
        "SOURCE_ACCOUNT_CREDENTIALS",
        "ECR_REPOSITORY",
        "IMAGE_TAG",
    ]
    assert [p.name for p in qa["package"].parameters] == ["SOURCE_ACCOUNT_CREDENTIALS", "PACKAGE_VERSION"]
    assert [p.name for p in qa["release"].parameters] == ["SOURCE_ACCOUNT_CREDENTIALS", "RELEASE_FILE"]
    assert qa["image"].source_credentials.default == "build-ecr-readonly"  # pipeline.yaml's id
    assert qa["image"].name == "cloudops-promote-image-into-qa"
    prod = job_specs(pipeline, "prod")
    # prod requires an approval: cloudops promotes only releases into it, so it gets the release job only.
    assert [spec.kind for spec in prod] == ["release"]
    assert (prod[0].source, prod[0].source_credentials.default) == (
        "preprod",
        "cloudops-preprod",
    )  # the default id


def test_the_build_account_gets_no_job_it_never_pulls(tmp_path: Path) -> None:
    with pytest.raises(StageRuleError) as refused:
        render_account(parse_pipeline(PIPELINE), "build")
    assert refused.value.kind == "refused" and "never promoted into" in str(refused.value)


def test_unknown_account_no_images_and_a_bad_credentials_id_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown account 'staging'"):
        job_specs(parse_pipeline(PIPELINE), "staging")
    with pytest.raises(InputError, match="lists no images"):
        job_specs(parse_pipeline(PIPELINE.replace("images: [ep/cortex, ep/search]\n", "")), "qa")
    bad = PIPELINE.replace("jenkins_credentials_id: build-ecr-readonly", 'jenkins_credentials_id: "x\' + y"')
    with pytest.raises(InputError, match="is not a Jenkins credentials id"):
        job_specs(parse_pipeline(bad), "qa")


def test_the_jenkinsfile_embeds_the_shell_step_verbatim_and_binds_only_the_source() -> None:
    for job in render_account(parse_pipeline(PIPELINE), "preprod"):
        script = job.script
        assert embedded_script(job.jenkinsfile) == script
        assert "\\" not in script and script.startswith("#!/usr/bin/env bash\n")
        assert f"withCredentials([{BINDING}])" in job.jenkinsfile
        assert "credentialsId: params.SOURCE_ACCOUNT_CREDENTIALS" in BINDING
        assert f"promote {job.spec.kind} --to preprod" in script
        assert "--source-credentials-env SOURCE --json" in script
        # The agent's own keys are never set, renamed or passed: only the binding's are read.
        assert "AWS_ACCESS_KEY_ID=" not in script and "--from" not in script
        assert "archiveArtifacts(artifacts: 'cloudops-result.json'" in job.jenkinsfile
        assert "readFile('cloudops-error.txt')" in job.jenkinsfile


def test_config_xml_is_what_jjb_renders_from_the_yaml() -> None:
    image = render_account(parse_pipeline(PIPELINE), "qa")[0]
    root = ET.fromstring(image.config_xml)
    assert root.tag == "flow-definition"
    definition = root.find("definition")
    assert definition is not None
    assert definition.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition"
    assert definition.findtext("script") == image.jenkinsfile
    assert definition.findtext("sandbox") == "true"
    params = root.find("properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions")
    assert params is not None
    assert [(p.tag.rsplit(".", 1)[-1], p.findtext("name")) for p in params] == [
        ("CredentialsParameterDefinition", "SOURCE_ACCOUNT_CREDENTIALS"),
        ("ChoiceParameterDefinition", "ECR_REPOSITORY"),
        ("StringParameterDefinition", "IMAGE_TAG"),
    ]
    credentials = params[0]
    assert credentials.findtext("credentialType") == (
        "com.cloudbees.jenkins.plugins.awscredentials.AWSCredentialsImpl"
    )
    assert credentials.findtext("defaultValue") == "build-ecr-readonly"
    assert [s.text for s in params[1].iter("string")] == ["ep/cortex", "ep/search"]
    assert "!include-raw-verbatim: 'Jenkinsfile'" in image.job_yaml


def test_groovy_strings_take_any_text_literally() -> None:
    assert groovy_string("a'b\\c${x}\n") == "'a\\'b\\\\c${x}\\n'"


def test_written_jobs_one_directory_each_script_executable(tmp_path: Path) -> None:
    jobs = render_account(parse_pipeline(PIPELINE), "qa")
    written = write_rendered(jobs, tmp_path / "out")
    assert sorted(written) == [
        "cloudops-promote-image-into-qa",
        "cloudops-promote-package-into-qa",
        "cloudops-promote-release-into-qa",
    ]
    image_dir = tmp_path / "out" / "cloudops-promote-image-into-qa"
    assert sorted(p.name for p in image_dir.iterdir()) == [
        "Jenkinsfile",
        "config.xml",
        "job.yaml",
        "promote-image.sh",
    ]
    assert (image_dir / "promote-image.sh").stat().st_mode & 0o111
    assert (image_dir / "Jenkinsfile").read_text() == jobs[0].jenkinsfile


def test_render_never_writes_through_a_pre_placed_symlink(tmp_path: Path) -> None:
    """An attacker who can write OUT plants symlinks at the old predictable temp names
    (.Jenkinsfile.tmp) and at the final names: render neither writes through them nor
    follows them; the final names become our own regular files."""
    jobs = render_account(parse_pipeline(PIPELINE), "qa")
    job_dir = tmp_path / "out" / "cloudops-promote-image-into-qa"
    job_dir.mkdir(parents=True)
    victims = {}
    for name in jobs[0].files():
        for planted in (f".{name}.tmp", name):
            victim = tmp_path / f"victim-{planted}"
            victim.write_text("precious\n")
            victims[planted] = victim
            (job_dir / planted).symlink_to(victim)

    write_rendered(jobs, tmp_path / "out")

    assert all(v.read_text() == "precious\n" for v in victims.values())
    for name, content in jobs[0].files().items():
        final = job_dir / name
        assert not final.is_symlink() and final.read_text() == content
        assert (job_dir / f".{name}.tmp").is_symlink()  # left as it was, never opened
    assert not [p for p in job_dir.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    assert (job_dir / "promote-image.sh").stat().st_mode & 0o777 == 0o755


def test_a_job_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    jobs = render_account(parse_pipeline(PIPELINE), "qa")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cloudops-promote-image-into-qa").symlink_to(elsewhere)
    with pytest.raises(InputError, match="is a symlink or not a directory"):
        write_rendered(jobs, tmp_path / "out")
    assert list(elsewhere.iterdir()) == []


# --- the release job into a stage that requires an approval ------------------------------


def sh_scripts(jenkinsfile: str) -> list[str]:
    """Every sh step's text, in the order the Jenkinsfile holds them."""
    return re.findall(r"script: \'\'\'(.*?)\'\'\'\)", jenkinsfile, re.DOTALL)


def groovy_code(jenkinsfile: str) -> str:
    """The Jenkinsfile without its comments and with each sh step's text left out: what
    Groovy itself evaluates."""
    code = re.sub(r"\'\'\'.*?\'\'\'", "''''''", jenkinsfile, flags=re.DOTALL)
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("//"))


def stage_blocks(jenkinsfile: str) -> dict[str, str]:
    """Stage name -> its text, up to the next stage (or the post section)."""
    parts = re.split(r"^\s*stage\(\'([^\']*)\'\) \{$", jenkinsfile, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def release_job(pipeline_text: str, account: str) -> RenderedJob:
    jobs = {job.spec.kind: job for job in render_account(parse_pipeline(pipeline_text), account)}
    return jobs["release"]


@pytest.mark.parametrize("account", ["qa", "preprod", "prod"])
def test_only_the_release_job_into_a_stage_that_requires_an_approval_waits_for_input(account: str) -> None:
    jobs = render_account(parse_pipeline(PIPELINE), account)
    # A stage that requires an approval takes no image or package alone (cloudops refuses
    # them, exit 3): it gets no job that could never succeed.
    assert [job.spec.kind for job in jobs] == (["release"] if account == "prod" else list(KINDS))
    for job in jobs:
        gated = job.spec.kind == "release" and account == "prod"
        code = groovy_code(job.jenkinsfile)
        assert ("input(" in code) == gated, job.spec.name
        assert (job.spec.approval is not None) == gated
        assert len(sh_scripts(job.jenkinsfile)) == (3 if gated else 1)
        scripts = {name for name in job.files() if name.endswith(".sh")}
        if gated:
            assert scripts == {"plan-release.sh", "approve-release.sh", "apply-release.sh"}
        else:
            assert scripts == {f"promote-{job.spec.kind}.sh"}
            assert list(stage_blocks(job.jenkinsfile)) == [f"Promote {job.spec.kind} into {account}"]
            assert "cloudops approve" not in job.jenkinsfile and "CLOUDOPS_APPROVER" not in job.jenkinsfile


def test_the_approval_job_plans_then_asks_then_approves_then_applies_that_plan() -> None:
    job = release_job(PIPELINE, "prod")
    stages = stage_blocks(job.jenkinsfile)
    assert list(stages) == ["Plan release into prod", "Approve release into prod", "Apply release into prod"]
    plan, approve, apply = (stages[name] for name in stages)
    # Each sh step is the very text of its script file, and in that order.
    assert sh_scripts(job.jenkinsfile) == [step.script for step in job.steps]
    files = job.files()
    assert [files[name] for name in ("plan-release.sh", "approve-release.sh", "apply-release.sh")] == [
        step.script for step in job.steps
    ]
    plan_sh, approve_sh, apply_sh = (step.script for step in job.steps)
    for script in (plan_sh, approve_sh, apply_sh):
        assert script.startswith("#!/usr/bin/env bash\n") and "\\" not in script
    assert (
        'args=(plan --to prod --release="$release_file" --out="$plan" --source-credentials-env SOURCE)'
        in plan_sh
    )
    assert 'echo "$plan_hash" >"$plan_hash_file"' in plan_sh
    assert (
        'args=(approve "$plan" --credentials-env CLOUDOPS_APPROVER --note="$CLOUDOPS_APPROVED_BY" --json)'
        in approve_sh
    )
    assert 'args=(apply "$plan")\nargs+=(--source-credentials-env SOURCE --json)' in apply_sh
    assert 'cloudops "${args[@]}" >"$result"' in apply_sh
    # The source account's keys are bound around plan and apply, never around approve; the
    # approver's keys around approve only.
    source = f"withCredentials([{BINDING}])"
    approver = f"withCredentials([{approver_binding('prod-release-approver')}])"
    assert "credentialsId: 'prod-release-approver'" in approver
    assert "accessKeyVariable: 'CLOUDOPS_APPROVER_AWS_ACCESS_KEY_ID'" in approver
    assert source in plan and source in apply and source not in approve
    assert approver in approve and approver not in plan and approver not in apply
    assert job.jenkinsfile.count("credentialsId: ") == 3
    # The plan is archived as soon as it is made, for the approver to read.
    assert "archiveArtifacts(artifacts: 'cloudops-plan.json')" in plan
    assert (
        "archiveArtifacts(artifacts: 'cloudops-plan.json,cloudops-approval.json,cloudops-result.json', "
        "allowEmptyArchive: true)"
    ) in job.jenkinsfile
    # Each failure fails the build with cloudops' message, naming the step.
    for name, block in (("plan", plan), ("approve", approve), ("apply", apply)):
        assert f"sh(label: 'cloudops {name}', returnStatus: true" in block
        assert f"error('cloudops {name}' + \" exited ${{status}}: \" + reason)" in block
    # The parameters are the release job's own, the source credentials bound for two steps.
    assert [p.name for p in job.spec.parameters] == ["SOURCE_ACCOUNT_CREDENTIALS", "RELEASE_FILE"]
    assert job.spec.source_credentials.description.endswith("Bound only for the plan and apply steps.")
    assert "which requires an approval" in job.spec.description


def test_the_input_step_asks_the_pipelines_submitters_and_names_the_plan() -> None:
    approve = stage_blocks(release_job(PIPELINE, "prod").jenkinsfile)["Approve release into prod"]
    lines = [line.strip() for line in approve.splitlines()]
    ask = lines.index(
        "def approver = input(message: 'Apply this plan of the release into prod? Plan: ' + planHash, "
        "ok: 'Approve', submitter: 'alice,release-managers', submitterParameter: 'APPROVER')"
    )
    assert lines[ask - 1] == "String planHash = readFile('cloudops-plan-hash.txt').trim()"
    assert lines[ask + 1] == (
        'withEnv(["CLOUDOPS_APPROVED_BY=jenkins:${approver}", "CLOUDOPS_PLAN_HASH=${planHash}"]) {'
    )
    assert (
        lines.index(
            "int status = sh(label: 'cloudops approve', returnStatus: true, script: '''#!/usr/bin/env bash"
        )
        > ask
    )


def test_without_submitters_anyone_who_may_build_the_job_answers() -> None:
    text = PIPELINE.replace("jenkins_submitters: [alice, release-managers], ", "")
    code = groovy_code(release_job(text, "prod").jenkinsfile)
    assert "input(" in code and "submitterParameter: 'APPROVER'" in code
    assert "submitter:" not in code


def test_the_approver_reaches_cloudops_only_through_the_environment() -> None:
    """Who answered the input comes from Jenkins: it is never put into Groovy source or a
    shell command, only into the environment of the approve step, which passes it as one
    argument."""
    job = release_job(PIPELINE, "prod")
    code = groovy_code(job.jenkinsfile)
    # The Groovy variable approver (not text in quotes) is used twice: set by the input
    # step, read into the approve step's environment.
    unquoted = re.sub(r"'[^'\n]*'", "''", code)
    assert [line.strip() for line in re.findall(r".*\bapprover\b.*", unquoted)] == [
        "def approver = input(message: '' + planHash, ok: '', submitter: '', submitterParameter: '')",
        'withEnv(["CLOUDOPS_APPROVED_BY=jenkins:${approver}", "CLOUDOPS_PLAN_HASH=${planHash}"]) {',
    ]
    # The only interpolating (double-quoted) Groovy strings: the two variables, the exit code.
    assert set(re.findall(r'"[^"\n]*"', code)) == {
        '"CLOUDOPS_APPROVED_BY=jenkins:${approver}"',
        '"CLOUDOPS_PLAN_HASH=${planHash}"',
        '" exited ${status}: "',
    }
    # Every sh step is a single-quoted Groovy string: nothing is interpolated into it.
    assert code.count("sh(") == code.count("script: '''''')") == 3
    approve_sh = job.steps[1].script
    assert "approver}" not in approve_sh and "planHash" not in approve_sh
    assert '--note="$CLOUDOPS_APPROVED_BY"' in approve_sh
    assert '[[ $shown == "$CLOUDOPS_PLAN_HASH" ]]' in approve_sh
    assert approve_sh.count("$CLOUDOPS_APPROVED_BY") == 1  # expanded once, as one argument


def test_a_stage_that_requires_an_approval_the_job_could_never_record_is_refused() -> None:
    """prod requires an approval by default; without an approver's Jenkins credentials the
    job could only approve with the agent's own, and the agent may not approve what it
    applies: rendering refuses (exit 2) and says how to fix it."""
    pipeline = parse_pipeline(BASE)
    with pytest.raises(InputError) as refused:
        render_account(pipeline, "prod")
    assert refused.value.kind == "input"
    message = str(refused.value)
    assert "the release job into 'prod' could never apply" in message
    assert (
        "approvals.prod.jenkins_credentials_id" in message and "approvals.prod.allow_self_approval" in message
    )
    # The stages before it require none: their jobs are rendered as before.
    assert all(job.spec.approval is None for job in render_account(pipeline, "preprod"))
    # Any stage that requires one is held to the same rule.
    middle = BASE + "approvals: {preprod: {approvers: []}, prod: {required: false}}\n"
    with pytest.raises(InputError, match=r"approvals\.preprod\.jenkins_credentials_id"):
        render_account(parse_pipeline(middle), "preprod")
    assert [job.spec.kind for job in render_account(parse_pipeline(middle), "prod")] == list(KINDS)


def test_a_middle_stage_that_requires_an_approval_gets_the_approval_job() -> None:
    text = (
        BASE + "approvals: {preprod: {jenkins_credentials_id: preprod-approver}, prod: {required: false}}\n"
    )
    assert [job.spec.kind for job in render_account(parse_pipeline(text), "preprod")] == ["release"]
    job = release_job(text, "preprod")
    assert job.spec.approval is not None and job.spec.approval.credentials_id == "preprod-approver"
    assert "credentialsId: 'preprod-approver'" in job.jenkinsfile
    assert list(stage_blocks(job.jenkinsfile)) == [
        "Plan release into preprod",
        "Approve release into preprod",
        "Apply release into preprod",
    ]
    assert "args=(plan --to preprod " in job.steps[0].script


def test_self_approval_approves_with_the_agents_own_credentials() -> None:
    job = release_job(BASE + "approvals: {prod: {allow_self_approval: true}}\n", "prod")
    assert job.spec.approval is not None and job.spec.approval.credentials_id is None
    assert "CLOUDOPS_APPROVER" not in job.jenkinsfile
    assert job.jenkinsfile.count(f"withCredentials([{BINDING}])") == 2  # plan and apply
    assert job.jenkinsfile.count("withCredentials(") == 2
    assert 'args=(approve "$plan" --note="$CLOUDOPS_APPROVED_BY" --json)' in job.steps[1].script
    assert "input(" in groovy_code(job.jenkinsfile)


def test_a_stage_that_requires_no_approval_keeps_the_one_step_release_job() -> None:
    job = release_job(BASE + "approvals: {prod: {required: false}}\n", "prod")
    assert job.spec.approval is None
    assert list(stage_blocks(job.jenkinsfile)) == ["Promote release into prod"]
    assert embedded_script(job.jenkinsfile) == job.script == job.files()["promote-release.sh"]
    assert 'args=(promote release --to prod --release="$release_file")' in job.script
    assert job.spec.source_credentials.description.endswith("Bound only for the promotion step.")
    assert "input(" not in job.jenkinsfile


def test_a_one_step_view_of_the_approval_job_is_refused() -> None:
    job = release_job(PIPELINE, "prod")
    with pytest.raises(ValueError, match=r"3 shell steps"):
        _ = job.script
    with pytest.raises(ValueError, match="three steps"):
        shell_step(job.spec)


def test_an_approver_credentials_id_jenkins_would_not_take_is_refused() -> None:
    text = PIPELINE.replace(
        "jenkins_credentials_id: prod-release-approver", 'jenkins_credentials_id: "approvér"'
    )
    with pytest.raises(
        InputError, match=r"approvals\.prod\.jenkins_credentials_id .* is not a Jenkins credentials id"
    ):
        render_account(parse_pipeline(text), "prod")


def test_the_approval_jobs_config_xml_is_what_jjb_renders() -> None:
    job = release_job(PIPELINE, "prod")
    root = ET.fromstring(job.config_xml)
    definition = root.find("definition")
    assert definition is not None and definition.findtext("script") == job.jenkinsfile
    assert definition.findtext("sandbox") == "true"
    params = root.find("properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions")
    assert params is not None
    assert [p.findtext("name") for p in params] == ["SOURCE_ACCOUNT_CREDENTIALS", "RELEASE_FILE"]
    assert "which requires an approval" in (root.findtext("description") or "")
