"""Versions, tags, names, digests and account ids are matched whole (issue 12, "Also"):
`re.match(r"^...$")` accepts "8.5.0\n" because `$` matches before a trailing newline;
fullmatch does not. Every validator refuses a trailing newline, and the CLI exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cloudops.cli.main import cli
from cloudops.errors import InputError
from cloudops.jenkins import job_specs
from cloudops.package_archive import validate_version
from cloudops.pipeline.model import parse_pipeline
from cloudops.refs import (
    ReferenceError,
    ecr_host,
    parse_reference,
    validate_bucket,
    validate_digest,
    validate_repository,
    validate_tag,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PIPELINE = """\
accounts:
  build: {account_id: "111111111111", region: us-west-2, builds_images: true,
          credentials: {jenkins_credentials_id: CREDS}}
  qa:    {account_id: "222222222222", region: us-west-2, credentials: {role_arn: "ROLE"}}
stages: [build, qa]
images: [ep/cortex]
approvals: {qa: {required: false}}  # every job of qa is rendered
"""
GOOD_ROLE = "arn:aws:iam::222222222222:role/cloudops"
DIGEST = "sha256:" + "a" * 64


def _pipeline(creds: str = "build-ecr", role: str = GOOD_ROLE) -> str:
    return PIPELINE.replace("CREDS", creds).replace("ROLE", role)


@pytest.mark.parametrize("version", ["8.5.0\n", "8.5.0\r\n", "\n8.5.0", "8.5.0 "])
def test_a_version_with_a_newline_is_invalid(version: str) -> None:
    assert validate_version("8.5.0") == "8.5.0"
    with pytest.raises(InputError, match="invalid package version"):
        validate_version(version)


@pytest.mark.parametrize(
    ("validate", "good"),
    [
        (validate_tag, "1.0"),
        (validate_repository, "ep/cortex"),
        (validate_digest, DIGEST),
        (validate_bucket, "ep-cloudops-111111111111"),
    ],
)
def test_refs_refuse_a_trailing_newline(validate: object, good: str) -> None:
    """A guard against regressions, not the test of a fix: refs.py already matched these
    whole (it passed before the fullmatch change too). Kept because tests/unit/test_refs.py
    checks only tags and references for a trailing newline, not repositories, digests or
    buckets."""
    assert callable(validate)
    assert validate(good) == good
    with pytest.raises(ReferenceError):
        validate(good + "\n")


def test_references_and_account_ids_refuse_a_trailing_newline() -> None:
    with pytest.raises(ReferenceError):
        parse_reference("registry.example/ep/cortex:1.0\n")
    with pytest.raises(ReferenceError):
        parse_reference(f"registry.example/ep/cortex@{DIGEST}\n")
    with pytest.raises(ReferenceError):
        ecr_host("111111111111\n", "us-west-2")


def test_pipeline_values_refuse_a_trailing_newline() -> None:
    assert job_specs(parse_pipeline(_pipeline()), "qa")
    with pytest.raises(InputError, match="is not a Jenkins credentials id"):
        job_specs(parse_pipeline(_pipeline(creds='"build-ecr\\n"')), "qa")
    with pytest.raises(InputError, match="role_arn"):
        parse_pipeline(_pipeline(role=GOOD_ROLE + "\\n"))
    with pytest.raises(InputError):
        parse_pipeline(_pipeline().replace('"222222222222"', '"222222222222\\n"'))


@pytest.mark.parametrize(
    "args",
    [
        ["package", "publish", "missing.zip", "--version", "8.5.0\n"],
        ["promote", "package", "--to", "qa", "--version", "8.5.0\n"],
    ],
)
def test_the_cli_refuses_a_version_with_a_newline(args: list[str]) -> None:
    pipeline = str(FIXTURES / "config-clean" / "pipeline.yaml")
    result = CliRunner().invoke(cli, [*args, "--pipeline", pipeline], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    assert "invalid package version '8.5.0\\n'" in result.stderr
