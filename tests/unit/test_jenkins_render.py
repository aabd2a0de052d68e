"""Rendering the destination accounts' Jenkins jobs from pipeline.yaml (no server)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.errors import InputError
from cloudops.jenkins import TAG_PATTERN, job_specs, render_account, write_rendered
from cloudops.jenkins.jenkinsfile import BINDING, groovy_string
from cloudops.pipeline.model import parse_pipeline
from cloudops.pipeline.stages import StageRuleError
from cloudops.refs import ReferenceError, validate_tag

PIPELINE = """\
accounts:
  build:   {account_id: "111111111111", region: us-west-2, builds_images: true,
            credentials: {profile: build, jenkins_credentials_id: build-ecr-readonly}}
  qa:      {account_id: "222222222222", region: us-west-2}
  preprod: {account_id: "333333333333", region: us-west-2}
  prod:    {account_id: "444444444444", region: us-west-2}
stages: [build, qa, preprod, prod]
images: [ep/cortex, ep/search]
"""


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


def test_each_destination_gets_three_jobs_whose_source_credentials_default_to_the_previous_stage() -> None:
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
    prod = job_specs(pipeline, "prod")[0]
    assert (prod.source, prod.source_credentials.default) == ("preprod", "cloudops-preprod")  # the default id


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
