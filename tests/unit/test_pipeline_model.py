from __future__ import annotations

from pathlib import Path

import pytest

from cloudops.pipeline.model import PipelineError, parse_pipeline
from cloudops.pipeline.stages import StageRuleError, promotion_route

GOOD = """\
accounts:
  build:   {account_id: "111111111111", region: us-west-2, builds_images: true}
  qa:      {account_id: "222222222222", region: us-west-2,
            credentials: {role_arn: "arn:aws:iam::222222222222:role/cloudops", external_id: x}}
  preprod: {account_id: "333333333333", region: us-west-2}
  prod:    {account_id: "444444444444", region: us-west-2, bucket: ep-prod-bucket}
stages: [build, qa, preprod, prod]
images: [ep/cortex, ep/search]
"""


def _error(text: str) -> str:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, Path("p.yaml"))
    assert caught.value.kind == "input"
    return str(caught.value)


def test_good_pipeline_and_its_lookups() -> None:
    pipeline = parse_pipeline(GOOD)
    assert pipeline.build_account == "build"
    assert pipeline.registry_host("qa") == "222222222222.dkr.ecr.us-west-2.amazonaws.com"
    assert pipeline.bucket("qa") == "ep-cloudops-222222222222" and pipeline.bucket("prod") == "ep-prod-bucket"
    assert pipeline.previous_stage("prod") == "preprod"


def test_yaml_syntax_error_names_the_line() -> None:
    assert _error(GOOD.replace("stages: [build", "stages: [build:")).startswith("p.yaml:")
    message = _error("accounts:\n  build: {account_id: '1'\nstages: []\n")
    assert "p.yaml:3" in message and "not valid YAML" in message


def test_unknown_key_names_the_line() -> None:
    message = _error(GOOD + "colour: blue\n")
    assert message.startswith("p.yaml:9: colour: unknown key 'colour'")
    assert "p.yaml:3" in _error(GOOD.replace("region: us-west-2,\n", "regoin: us-west-2,\n", 1))


def test_bad_account_id() -> None:
    message = _error(GOOD.replace('"222222222222"', '"2222"'))
    assert message.startswith("p.yaml:3: accounts.qa.account_id:") and "12 digits" in message
    assert "quoted" in _error(GOOD.replace('"222222222222"', "222222222222"))


def test_missing_and_unknown_accounts() -> None:
    message = _error(GOOD.replace("[build, qa, preprod, prod]", "[build, qa, preprod, prd]"))
    assert message.startswith("p.yaml:7: stage 'prd' is not an account")
    assert "'accounts' is required" in _error("stages: [build]\n")


def test_two_stages_on_one_account_id() -> None:
    message = _error(GOOD.replace('"333333333333"', '"222222222222"'))
    assert "share account id 222222222222" in message and message.startswith("p.yaml:5")


def test_exactly_one_build_account() -> None:
    assert "no account has builds_images" in _error(
        GOOD.replace("builds_images: true", "builds_images: false")
    )
    assert "more than one account builds images" in _error(
        GOOD.replace("region: us-west-2}\n  prod", "region: us-west-2, builds_images: true}\n  prod")
    )


def test_stage_listed_twice() -> None:
    assert "stage 'qa' is listed twice" in _error(
        GOOD.replace("[build, qa, preprod, prod]", "[build, qa, qa, preprod, prod]")
    )


def test_bad_image_name_and_bad_role_arn() -> None:
    assert "invalid repository" in _error(GOOD.replace("ep/search", "EP/Search"))
    assert "role_arn" in _error(GOOD.replace("arn:aws:iam::222222222222:role/cloudops", "not-an-arn"))


def test_stage_rules() -> None:
    pipeline = parse_pipeline(GOOD)
    assert promotion_route(pipeline, "qa").source == "build"
    assert promotion_route(pipeline, "prod").source == "preprod"
    with pytest.raises(StageRuleError, match="skips qa, preprod"):
        promotion_route(pipeline, "prod", "build")
    with pytest.raises(StageRuleError, match="build account"):
        promotion_route(pipeline, "build")
    with pytest.raises(StageRuleError, match="promotions go forward"):
        promotion_route(pipeline, "qa", "prod")
    skipping = parse_pipeline(GOOD + "allow_stage_skip: true\n")
    assert promotion_route(skipping, "prod", "build").source == "build"
