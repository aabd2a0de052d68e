"""pipeline.yaml's trust rules (issue 12): no bucket or registry shared by two accounts, no
ECR host of another account, and TLS never switched off for a real ECR host. Each is
refused at load time with exit 2, naming the accounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudops.pipeline.model import PipelineError, is_aws_registry_host, parse_pipeline
from tests.support.run import assert_clean_failure, cloudops

HEAD = """\
accounts:
  build: {account_id: "111111111111", region: us-west-2, builds_images: true%(build)s}
  qa:    {account_id: "222222222222", region: us-west-2%(qa)s}
  prod:  {account_id: "444444444444", region: us-west-2%(prod)s}
stages: [build, qa, prod]
"""


def pipeline(*, build: str = "", qa: str = "", prod: str = "", tail: str = "") -> str:
    return HEAD % {"build": build, "qa": qa, "prod": prod} + tail


def refusal(text: str) -> str:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, Path("pipeline.yaml"))
    assert caught.value.kind == "input"
    return str(caught.value)


def test_a_plain_pipeline_loads() -> None:
    loaded = parse_pipeline(pipeline(), Path("pipeline.yaml"))
    assert loaded.bucket("qa") == "ep-cloudops-222222222222"


def test_two_accounts_naming_the_same_bucket_are_refused() -> None:
    message = refusal(pipeline(qa=", bucket: shared-bucket", prod=", bucket: shared-bucket"))
    assert "accounts 'qa' and 'prod' share bucket shared-bucket" in message
    assert message.startswith("pipeline.yaml:4:")  # prod's line


def test_a_bucket_equal_to_another_accounts_default_bucket_is_refused() -> None:
    message = refusal(pipeline(qa=", bucket: ep-cloudops-444444444444"))
    assert "accounts 'qa' and 'prod' share bucket ep-cloudops-444444444444" in message


def test_two_accounts_mapped_to_one_registry_are_refused() -> None:
    tail = 'endpoints: {registries: {qa: "reg.example.com:5000", prod: "Reg.example.com:5000"}}\n'
    message = refusal(pipeline(tail=tail))
    assert "accounts 'qa' and 'prod' share registry" in message


def test_an_ecr_host_of_another_account_is_refused() -> None:
    tail = 'endpoints: {registries: {qa: "444444444444.dkr.ecr.us-west-2.amazonaws.com"}}\n'
    message = refusal(pipeline(tail=tail))
    assert "is the ECR of account 444444444444" in message and "'qa'" in message


@pytest.mark.parametrize(
    "tail",
    [
        "endpoints: {insecure_registries: true}\n",  # every account on its default ECR host
        'endpoints: {registries: {build: "127.0.0.1:5000", qa: "127.0.0.1:5001"}, '
        "insecure_registries: true}\n",
        'endpoints: {registries: {build: "127.0.0.1:5000", qa: "127.0.0.1:5001", '
        'prod: "444444444444.dkr.ecr.us-west-2.amazonaws.com:443"}, insecure_registries: true}\n',
    ],
    ids=["default-hosts", "one-account-left-on-ecr", "ecr-host-with-port"],
)
def test_insecure_registries_never_cover_a_real_ecr_host(tail: str) -> None:
    message = refusal(pipeline(tail=tail))
    assert "insecure_registries" in message and "real Amazon ECR host" in message
    assert ".dkr.ecr.us-west-2.amazonaws.com" in message


def test_insecure_registries_for_local_hosts_load() -> None:
    tail = (
        'endpoints: {registries: {build: "127.0.0.1:5000", qa: "127.0.0.1:5001", prod: "localhost:5002"}, '
        "insecure_registries: true}\n"
    )
    assert parse_pipeline(pipeline(tail=tail), Path("pipeline.yaml")).endpoints.insecure_registries


@pytest.mark.parametrize(
    ("host", "aws"),
    [
        ("111111111111.dkr.ecr.us-west-2.amazonaws.com", True),
        ("111111111111.dkr.ecr-fips.us-east-1.amazonaws.com", True),
        ("111111111111.DKR.ECR.us-west-2.amazonaws.com.", True),
        ("111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn", True),
        ("vpce-0a1b.dkr.ecr.us-west-2.vpce.amazonaws.com", True),
        ("public.ecr.aws", True),
        ("127.0.0.1:5000", False),
        ("[::1]:5000", False),
        ("registry.example.com", False),
        ("dkr.ecr.us-west-2.amazonaws.com.evil.example", False),
    ],
)
def test_what_counts_as_a_real_ecr_host(host: str, aws: bool) -> None:
    assert is_aws_registry_host(host) is aws


def test_cli_refuses_shared_buckets_and_insecure_ecr_with_exit_2(tmp_path: Path) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text(pipeline(qa=", bucket: shared-bucket", prod=", bucket: shared-bucket"))
    assert_clean_failure(
        cloudops("history", "--pipeline", str(shared)), 2, str(shared), "'qa' and 'prod' share bucket"
    )
    insecure = tmp_path / "insecure.yaml"
    insecure.write_text(pipeline(tail="endpoints: {insecure_registries: true}\n"))
    assert_clean_failure(
        cloudops("promote", "package", "--to", "qa", "--pipeline", str(insecure)),
        2,
        str(insecure),
        "real Amazon ECR host",
    )


def test_one_registry_spelled_with_and_without_the_default_port_is_shared() -> None:
    tail = 'endpoints: {registries: {qa: "reg.example.com", prod: "reg.example.com:443"}}\n'
    assert "accounts 'qa' and 'prod' share registry" in refusal(pipeline(tail=tail))


def test_a_dual_stack_ecr_host_of_another_account_is_refused() -> None:
    tail = 'endpoints: {registries: {qa: "444444444444.dkr-ecr.us-west-2.on.aws"}}\n'
    assert "is the ECR of account 444444444444 (us-west-2)" in refusal(pipeline(tail=tail))


def test_insecure_registries_never_cover_a_dual_stack_ecr_host() -> None:
    tail = (
        'endpoints: {registries: {build: "127.0.0.1:5000", qa: "127.0.0.1:5001", '
        'prod: "444444444444.dkr-ecr.us-west-2.on.aws"}, insecure_registries: true}\n'
    )
    assert "real Amazon ECR host" in refusal(pipeline(tail=tail))


def test_an_ecr_host_of_another_account_with_a_port_is_refused() -> None:
    tail = 'endpoints: {registries: {qa: "444444444444.dkr.ecr.us-west-2.amazonaws.com:8443"}}\n'
    assert "is the ECR of account 444444444444" in refusal(pipeline(tail=tail))
