"""pipeline.yaml's repositories: section (issue 16, settings as code): the model and its
load-time rules (every message names file:line and says what to write instead), the
merge of defaults and overrides, the short lifecycle form's expansion, and drift judged
on plain values (no AWS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloudops.aws.ecr import DesiredRepository, RepositoryState, desired_repository, repository_drift
from cloudops.pipeline.model import PipelineError, parse_pipeline

BASE = """\
accounts:
  build: {account_id: "111111111111", region: us-west-2, builds_images: true}
  qa:    {account_id: "222222222222", region: eu-west-1}
stages: [build, qa]
images: [ep/cortex, ep/search]
"""
KEYS = (
    '{build: "arn:aws:kms:us-west-2:111111111111:key/1111aaaa-0000-4000-8000-000000000001", '
    'qa: "arn:aws:kms:eu-west-1:222222222222:key/2222bbbb-0000-4000-8000-000000000002"}'
)


def _parse(section: str) -> Any:
    return parse_pipeline(BASE + section, Path("p.yaml"))


def _error(section: str) -> str:
    with pytest.raises(PipelineError) as caught:
        _parse(section)
    assert caught.value.kind == "input"
    return str(caught.value)


# --- defaults, overrides, merge --------------------------------------------------------


def test_without_the_section_the_defaults_apply_and_policies_are_not_managed() -> None:
    pipeline = parse_pipeline(BASE)
    settings = pipeline.repository_settings("ep/cortex")
    assert (settings.tag_immutability, settings.scan_on_push, settings.encryption.type) == (
        "IMMUTABLE",
        True,
        "AES256",
    )
    assert settings.lifecycle is None and settings.policy is None
    assert settings.manages_policies is False
    assert desired_repository(settings, "qa") == DesiredRepository(manage_policies=False)


def test_overrides_merge_with_the_defaults_and_an_explicit_null_wins() -> None:
    pipeline = _parse(
        "repositories:\n"
        "  defaults:\n"
        "    scan_on_push: false\n"
        "    lifecycle: {keep_untagged_days: 14, keep_last_tags: 50}\n"
        "    policy: {Version: 2012-10-17, Statement: [{Sid: Pull, Effect: Allow,\n"
        "             Principal: {AWS: 'arn:aws:iam::222222222222:root'}, Action: 'ecr:BatchGetImage'}]}\n"
        "  overrides:\n"
        "    ep/cortex: {lifecycle: {keep_last_tags: 100}, policy: null}\n"
        "    ep/search: {lifecycle: null, tag_immutability: MUTABLE}\n"
    )
    cortex = pipeline.repository_settings("ep/cortex")
    assert cortex.manages_policies and cortex.scan_on_push is False  # the default kept
    assert (cortex.lifecycle.keep_untagged_days, cortex.lifecycle.keep_last_tags) == (14, 100)
    assert cortex.policy is None  # explicit null: no policy
    search = pipeline.repository_settings("ep/search")
    assert search.lifecycle is None and search.tag_immutability == "MUTABLE"
    assert search.policy is not None and search.policy["Version"] == "2012-10-17"  # a YAML date, as text
    # The defaults themselves are untouched by the merge.
    assert pipeline.repositories.defaults.lifecycle.keep_last_tags == 50


def test_the_short_lifecycle_form_expands_into_ecr_rules() -> None:
    pipeline = _parse(
        "repositories:\n  defaults: {lifecycle: {keep_untagged_days: 14, keep_last_tags: 50}}\n"
    )
    document = desired_repository(pipeline.repository_settings("ep/cortex"), "qa").lifecycle
    assert document is not None
    assert [(r["rulePriority"], r["selection"], r["action"]) for r in document["rules"]] == [
        (
            1,
            {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            {"type": "expire"},
        ),
        (
            2,
            # tagged images only ("*"): untagged ones never take places among the newest N
            {
                "tagStatus": "tagged",
                "tagPatternList": ["*"],
                "countType": "imageCountMoreThan",
                "countNumber": 50,
            },
            {"type": "expire"},
        ),
    ]
    only_last = _parse("repositories:\n  defaults: {lifecycle: {keep_last_tags: 5}}\n")
    [rule] = desired_repository(only_last.repository_settings("ep/cortex"), "qa").lifecycle["rules"]
    assert rule["rulePriority"] == 1 and rule["selection"]["tagStatus"] == "tagged"
    assert len(json.dumps(document)) >= 100  # botocore refuses a lifecycle text under 100 characters


def test_a_kms_key_per_account() -> None:
    pipeline = _parse(f"repositories:\n  defaults:\n    encryption: {{type: KMS, kms_key: {KEYS}}}\n")
    desired = desired_repository(pipeline.repository_settings("ep/cortex"), "qa")
    assert (desired.encryption_type, desired.kms_key) == (
        "KMS",
        "arn:aws:kms:eu-west-1:222222222222:key/2222bbbb-0000-4000-8000-000000000002",
    )
    assert desired.create_arguments()["encryptionConfiguration"] == {
        "encryptionType": "KMS",
        "kmsKey": desired.kms_key,
    }
    managed = desired_repository(
        _parse("repositories:\n  defaults: {encryption: {type: KMS}}\n").repository_settings("ep/cortex"),
        "qa",
    )
    assert managed.kms_key is None  # the account's AWS-managed key


# --- load-time rules: file:line and the fix ---------------------------------------------


def test_an_override_must_name_a_pipeline_image() -> None:
    message = _error("repositories:\n  overrides:\n    ep/cortx: {scan_on_push: false}\n")
    assert message.startswith("p.yaml:8: override for 'ep/cortx', which is not a pipeline image")
    assert "(images: ep/cortex, ep/search): fix the name or add it to images" in message


def test_a_kms_key_must_be_the_accounts_own() -> None:
    wrong_account = KEYS.replace("eu-west-1:222222222222", "eu-west-1:111111111111")
    message = _error(f"repositories:\n  defaults:\n    encryption: {{type: KMS, kms_key: {wrong_account}}}\n")
    assert message.startswith("p.yaml:8: kms_key of qa is a key of account 111111111111 in eu-west-1")
    assert "not qa's (222222222222 in eu-west-1)" in message
    wrong_region = KEYS.replace("eu-west-1:222222222222", "us-west-2:222222222222")
    assert "a key of account 222222222222 in us-west-2" in _error(
        f"repositories:\n  defaults:\n    encryption: {{type: KMS, kms_key: {wrong_region}}}\n"
    )
    alias = KEYS.replace("key/2222bbbb-0000-4000-8000-000000000002", "alias/ecr")
    message = _error(f"repositories:\n  defaults:\n    encryption: {{type: KMS, kms_key: {alias}}}\n")
    assert (
        "kms_key of qa is not a KMS key ARN: write arn:aws:kms:eu-west-1:222222222222:key/KEY-ID" in message
    )
    missing = _error(
        "repositories:\n  overrides:\n    ep/search:\n      encryption:\n        type: KMS\n"
        "        kms_key: {build: 'arn:aws:kms:us-west-2:111111111111:key/abc'}\n"
    )
    assert missing.startswith("p.yaml:11: kms_key has no key for qa: give every account its own key")
    unknown = _error(
        "repositories:\n  defaults:\n    encryption:\n      type: KMS\n      kms_key:\n"
        "        prd: 'arn:aws:kms:us-west-2:111111111111:key/abc'\n"
    )
    assert unknown.startswith("p.yaml:11: kms_key for 'prd', which is not an account")
    aes = _error("repositories:\n  defaults:\n    encryption: {kms_key: {qa: x}}\n")
    assert aes.startswith("p.yaml:8: repositories.defaults.encryption: kms_key is for type: KMS only")


def test_a_repository_policy_must_not_let_another_account_push() -> None:
    message = _error(
        "repositories:\n"
        "  defaults:\n"
        "    policy:\n"
        "      Version: '2012-10-17'\n"
        "      Statement:\n"
        "        - {Sid: LetQaPush, Effect: Allow, Principal: {AWS: 'arn:aws:iam::222222222222:root'},\n"
        "           Action: ['ecr:PutImage', 'ecr:BatchGetImage']}\n"
    )
    assert message.startswith(
        "p.yaml:8: the repository policy lets account 222222222222 (qa) push into build's repositories"
    )
    assert "remove the statement 'LetQaPush' or reduce it to pull actions" in message
    anyone = _error(
        "repositories:\n  overrides:\n"
        "    ep/search: {policy: {Statement: {Effect: Allow, Principal: '*', Action: '*'}}}\n"
    )
    assert anyone.startswith("p.yaml:8: the repository policy lets anyone push")
    # Pushing within one's own account is each account's business: allowed... but the same
    # policy goes to every account, so an account id in it is another account for the rest.
    own = _error(
        "repositories:\n  defaults:\n    policy: {Statement: [{Effect: Allow, "
        "Principal: {AWS: '111111111111'}, Action: 'ecr:*'}]}\n"
    )
    assert "lets account 111111111111 (build) push into qa's repositories" in own


def test_policy_documents_are_json_and_bounded() -> None:
    where = "p.yaml:8: repositories.defaults.policy: the repository policy"
    assert _error("repositories:\n  defaults:\n    policy: [1]\n").startswith(
        f"{where} is a JSON object (a YAML mapping) or null"
    )
    assert "the key '1' is not a string (quote it)" in _error(
        "repositories:\n  defaults:\n    policy: {1: x}\n"
    )
    assert "NaN or infinity" in _error("repositories:\n  defaults:\n    policy: {a: .nan}\n")
    deep = "[" * 40 + "]" * 40
    assert "nested more than 16 levels deep" in _error(
        f"repositories:\n  defaults:\n    policy: {{a: {deep}}}\n"
    )
    big = ", ".join(f"k{i}: {'x' * 100}" for i in range(120))
    assert "ECR takes at most 10240" in _error(f"repositories:\n  defaults:\n    policy: {{{big}}}\n")
    lifecycle_big = ", ".join(f"k{i}: {'x' * 1000}" for i in range(40))
    assert "the lifecycle policy is" in _error(
        f"repositories:\n  defaults:\n    lifecycle: {{policy: {{{lifecycle_big}}}}}\n"
    )


def test_lifecycle_forms_and_shape() -> None:
    both = _error("repositories:\n  defaults:\n    lifecycle: {keep_last_tags: 5, policy: {rules: []}}\n")
    assert both.startswith("p.yaml:8: repositories.defaults.lifecycle: give either keep_untagged_days")
    assert "'rules': a non-empty list" in _error(
        "repositories:\n  defaults:\n    lifecycle: {policy: {rules: []}}\n"
    ).replace('"', "'")
    any_first = (
        "repositories:\n  defaults:\n    lifecycle:\n      policy:\n        rules:\n"
        "          - {rulePriority: 1, selection: {tagStatus: any}, action: {type: expire}}\n"
        "          - {rulePriority: 2, selection: {tagStatus: untagged}, action: {type: expire}}\n"
    )
    assert 'tagStatus "any" must be the only one and have the highest rulePriority' in _error(any_first)
    assert "rulePriority 1 is used twice" in _error(any_first.replace("rulePriority: 2", "rulePriority: 1"))
    assert 'action is {"type": "expire"}' in _error(any_first.replace("{type: expire}", "{type: keep}", 1))
    assert "selection.tagStatus is one of tagged, untagged, any" in _error(any_first.replace("any}", "all}"))
    message = _error("repositories:\n  defaults:\n    lifecycle: {keep_last_tags: '50'}\n")
    assert message.startswith("p.yaml:8: repositories.defaults.lifecycle.keep_last_tags:")
    assert "greater than or equal to 1" in _error(
        "repositories:\n  defaults:\n    lifecycle: {keep_untagged_days: 0}\n"
    )
    good = any_first.replace("tagStatus: any}", "tagStatus: tagged, tagPrefixList: [v]}")
    assert _parse(good).repositories.defaults.lifecycle.policy["rules"][0]["rulePriority"] == 1


def test_unknown_keys_and_values_are_refused_with_their_line() -> None:
    assert _error("repositories:\n  defaults:\n    colour: blue\n").startswith(
        "p.yaml:8: repositories.defaults.colour: unknown key 'colour'"
    )
    assert _error("repositories:\n  defaults: {}\n  extra: 1\n").startswith(
        "p.yaml:8: repositories.extra: unknown key"
    )
    assert "'IMMUTABLE' or 'MUTABLE'" in _error("repositories:\n  defaults: {tag_immutability: immutable}\n")
    assert "valid boolean" in _error("repositories:\n  defaults: {scan_on_push: maybe}\n")
    assert "'AES256' or 'KMS'" in _error("repositories:\n  defaults: {encryption: {type: SSE}}\n")


# --- drift, on plain values ----------------------------------------------------------------


def _state(**fields: Any) -> RepositoryState:
    base: dict[str, Any] = {
        "tag_mutability": "IMMUTABLE",
        "scan_on_push": True,
        "encryption_type": "AES256",
        "policies_read": True,
    }
    return RepositoryState("ep/cortex", True, **{**base, **fields})


def test_drift_compares_policies_by_meaning() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Principal": {"AWS": "444444444444"}, "Action": "ecr:BatchGetImage"},
    }
    desired = DesiredRepository(policy=policy)
    as_aws_writes_it = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam::444444444444:root"]},
                "Action": ["ecr:BatchGetImage"],
            }
        ],
    }
    assert repository_drift(_state(policy=as_aws_writes_it), desired) == []
    [drift] = repository_drift(_state(policy=None), desired)
    assert (drift.setting, drift.was, drift.correctable) == ("policy", "none", True)
    assert drift.now.startswith("1 statement (sha256:")
    # Not read (or not managed): not compared.
    assert repository_drift(_state(policy=None, policies_read=False), desired) == []
    assert repository_drift(_state(policy=as_aws_writes_it), DesiredRepository(manage_policies=False)) == []


def test_drift_of_each_setting_and_encryption_is_not_correctable() -> None:
    desired = DesiredRepository(encryption_type="KMS", kms_key="arn:aws:kms:us-west-2:111111111111:key/k")
    drifts = repository_drift(
        _state(tag_mutability="MUTABLE", scan_on_push=False, lifecycle={"rules": []}), desired
    )
    assert [(d.setting, d.was, d.now, d.correctable) for d in drifts] == [
        ("tag_immutability", "MUTABLE", "IMMUTABLE", True),
        ("scan_on_push", "false", "true", True),
        ("encryption", "AES256", "KMS (arn:aws:kms:us-west-2:111111111111:key/k)", False),
        ("lifecycle", "no rules (sha256:4f53cda18c2b)", "none", True),
    ]
    assert "recreate ep/cortex" in drifts[2].fix and "fix" in drifts[2].as_dict()
    # The AWS-managed key: only the type is compared.
    assert (
        repository_drift(
            _state(encryption_type="KMS", kms_key="arn:aws:kms:x"), DesiredRepository(encryption_type="KMS")
        )
        == []
    )


def test_a_hostile_policy_read_back_is_summarized_not_echoed() -> None:
    from cloudops.aws.ecr import read_policy_document

    text = "{" * 100_000
    document = read_policy_document(text)  # not JSON (too deep): kept as a short text
    assert isinstance(document, str) and len(document) < 100
    [drift] = repository_drift(_state(policy=document), DesiredRepository())
    assert drift.was.startswith("not a JSON policy: {{{") and len(drift.was) < 120
    huge = json.dumps({"Statement": [{"Sid": "x" * 1000}] * 400})
    assert isinstance(read_policy_document(huge), str)  # past the bound: not parsed
