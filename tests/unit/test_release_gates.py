"""The pure parts of the release gates (issue 14): who an approval is by (``principal``),
which release a rollback goes back to (``choose_target``), where a rejection is kept
(``rejection_key``), which identities a stage's approvers admit (``Approval.admits``) and
what pipeline.yaml may say under ``approvals:``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.errors import InputError
from cloudops.pipeline.model import Approval, PipelineError, parse_pipeline
from cloudops.release_current import CurrentImage, CurrentPackage, CurrentRelease
from cloudops.release_gates import REJECTED_PREFIX, approvals_prefix, principal, rejection_key
from cloudops.release_rollback import choose_target

PROD = "444444444444"
APPROVER = f"arn:aws:sts::{PROD}:assumed-role/release-approver/*"

PIPELINE = """\
accounts:
  build:   {account_id: "111111111111", region: us-west-2, builds_images: true}
  qa:      {account_id: "222222222222", region: us-west-2}
  preprod: {account_id: "333333333333", region: us-west-2}
  prod:    {account_id: "444444444444", region: us-west-2}
stages: [build, qa, preprod, prod]
images: [ep/cortex, ep/search]
"""


def _error(text: str) -> str:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, Path("p.yaml"))
    assert caught.value.kind == "input"
    return str(caught.value)


# -- principal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (
            f"arn:aws:sts::{PROD}:assumed-role/release-approver/botocore-session-17",
            f"arn:aws:sts::{PROD}:assumed-role/release-approver",
        ),
        (
            f"arn:aws:sts::{PROD}:assumed-role/cloudops/jenkins@build/7",  # a session name with a /
            f"arn:aws:sts::{PROD}:assumed-role/cloudops",
        ),
        (
            "arn:aws-cn:sts::444444444444:assumed-role/approver/s",
            "arn:aws-cn:sts::444444444444:assumed-role/approver",
        ),
        (f"arn:aws:iam::{PROD}:user/alice", f"arn:aws:iam::{PROD}:user/alice"),
        (f"arn:aws:iam::{PROD}:role/release-approver", f"arn:aws:iam::{PROD}:role/release-approver"),
        (f"arn:aws:sts::{PROD}:federated-user/bob", f"arn:aws:sts::{PROD}:federated-user/bob"),
        (f"arn:aws:iam::{PROD}:root", f"arn:aws:iam::{PROD}:root"),
        ("not an arn", "not an arn"),
    ],
)
def test_principal_strips_only_an_assumed_roles_session_name(arn: str, expected: str) -> None:
    assert principal(arn) == expected


def test_two_sessions_of_one_role_are_one_principal_and_two_roles_are_two() -> None:
    one = principal(f"arn:aws:sts::{PROD}:assumed-role/cloudops/session-a")
    assert one == principal(f"arn:aws:sts::{PROD}:assumed-role/cloudops/session-b")
    assert one != principal(f"arn:aws:sts::{PROD}:assumed-role/release-approver/session-a")
    assert one != principal("arn:aws:sts::333333333333:assumed-role/cloudops/session-a")  # another account


# -- rejection_key ----------------------------------------------------------------------


def test_rejection_key_is_a_hash_of_the_name() -> None:
    key = rejection_key("2026.11")
    assert key == f"{REJECTED_PREFIX}{hashlib.sha256(b'2026.11').hexdigest()[:32]}.json"
    assert key.startswith("releases/rejected/") and "2026.11" not in key
    assert rejection_key("2026.11") == key and rejection_key("2026.12") != key


@given(st.text(min_size=1, max_size=128))
def test_no_release_name_shapes_a_rejection_key(name: str) -> None:
    key = rejection_key(name)
    assert re.fullmatch(r"releases/rejected/[0-9a-f]{32}\.json", key), key
    assert key == rejection_key(name)  # stable: the same name finds the same marker


@pytest.mark.parametrize("name", ["../../current", "releases/current.json", "a/b", "x" * 128, "ünïcødé"])
def test_hostile_release_names_stay_under_the_rejected_prefix(name: str) -> None:
    key = rejection_key(name)
    assert key.count("/") == 2 and ".." not in key and name not in key


def test_approvals_prefix_is_the_hash_hex() -> None:
    digest = "sha256:" + "ab" * 32
    assert approvals_prefix(digest) == f"releases/approvals/{'ab' * 32}/"


# -- Approval.admits --------------------------------------------------------------------


def test_approval_admits_by_glob() -> None:
    rule = Approval(approvers=[APPROVER])
    assert rule.admits(f"arn:aws:sts::{PROD}:assumed-role/release-approver/alice")
    assert rule.admits(f"arn:aws:sts::{PROD}:assumed-role/release-approver/")
    assert not rule.admits(f"arn:aws:sts::{PROD}:assumed-role/release-approver")  # no session part
    assert not rule.admits(f"arn:aws:sts::{PROD}:assumed-role/release-approver-evil/alice")
    assert not rule.admits(f"arn:aws:sts::{PROD}:assumed-role/Release-Approver/alice")  # case matters
    assert not rule.admits(f"arn:aws:sts::{PROD}:assumed-role/cloudops/alice")
    assert not rule.admits("arn:aws:sts::333333333333:assumed-role/release-approver/alice")
    assert not rule.admits(f"arn:aws:iam::{PROD}:role/release-approver")


def test_approval_admits_question_mark_and_several_patterns() -> None:
    rule = Approval(
        approvers=[f"arn:aws:sts::{PROD}:assumed-role/approver-?/*", f"arn:aws:iam::{PROD}:user/alice"]
    )
    assert rule.admits(f"arn:aws:sts::{PROD}:assumed-role/approver-1/s")
    assert not rule.admits(f"arn:aws:sts::{PROD}:assumed-role/approver-12/s")
    assert rule.admits(f"arn:aws:iam::{PROD}:user/alice")
    assert not rule.admits(f"arn:aws:iam::{PROD}:user/alice2")


def test_approval_without_approvers_admits_any_identity_of_the_account() -> None:
    rule = Approval()
    assert rule.required and not rule.allow_self_approval
    assert rule.admits(f"arn:aws:sts::{PROD}:assumed-role/anything/s")


# -- pipeline.yaml approvals: -----------------------------------------------------------


def test_by_default_only_the_last_stage_requires_an_approval() -> None:
    pipeline = parse_pipeline(PIPELINE)
    assert pipeline.approval("prod").required and pipeline.approval("prod").approvers == []
    assert not pipeline.approval("qa").required and not pipeline.approval("preprod").required


def test_approvals_entries_replace_the_default() -> None:
    pipeline = parse_pipeline(
        PIPELINE
        + "approvals:\n"
        + f'  prod: {{approvers: ["{APPROVER}"], allow_self_approval: true,\n'
        + "         jenkins_submitters: [alice, release-managers], jenkins_credentials_id: prod-approver}\n"
        + "  preprod: {}\n"
    )
    prod = pipeline.approval("prod")
    assert prod.approvers == [APPROVER] and prod.allow_self_approval
    assert prod.jenkins_submitters == ["alice", "release-managers"]
    assert prod.jenkins_credentials_id == "prod-approver"
    assert pipeline.approval("preprod").required  # an entry requires one unless it says otherwise
    assert not pipeline.approval("qa").required
    relaxed = parse_pipeline(PIPELINE + "approvals: {prod: {required: false}}\n")
    assert not relaxed.approval("prod").required


def test_approvals_for_an_unknown_stage_are_refused() -> None:
    message = _error(PIPELINE + "approvals: {staging: {}}\n")
    assert message.startswith("p.yaml:8:") and "approvals for 'staging', which is not a stage" in message


def test_approvals_for_the_first_stage_are_refused() -> None:
    message = _error(PIPELINE + "approvals:\n  build: {}\n")
    assert message.startswith("p.yaml:9:") and "nothing is promoted into the first stage 'build'" in message


def test_an_approver_of_another_account_is_refused() -> None:
    other = "arn:aws:sts::333333333333:assumed-role/release-approver/*"
    message = _error(PIPELINE + f'approvals:\n  prod:\n    approvers: ["{other}"]\n')
    assert message.startswith("p.yaml:10:")
    assert f"approver {other!r} is not in prod's account {PROD}" in message
    assert "stage's own account" in message
    # The account's own id, with wildcards after it, is fine.
    assert parse_pipeline(PIPELINE + 'approvals: {prod: {approvers: ["arn:aws:sts::444444444444:*"]}}\n')


@pytest.mark.parametrize(
    "pattern",
    [
        "release-approver",
        "arn:aws:s3:::bucket/*",  # not sts or iam
        "arn:aws:sts::44444444444x:assumed-role/a/*",  # not an account id
        "arn:aws:sts::*:assumed-role/release-approver/*",  # any account: never
        "arn:aws:sts::4444444444?4:assumed-role/a/*",  # a wildcard in the account
        "arn:aws:sts::444444444444:assumed role/a/*",  # a space
        "arn:aws:sts::444444444444:",  # nothing after the account
        "",
    ],
)
def test_an_approver_that_is_not_an_arn_pattern_is_refused(pattern: str) -> None:
    message = _error(PIPELINE + f'approvals: {{prod: {{approvers: ["{pattern}"]}}}}\n')
    assert message.startswith("p.yaml:8:")
    assert "an approver is an STS or IAM ARN pattern" in message


@pytest.mark.parametrize("name", ["alice smith", "bob;rm", "", "x" * 129, "élan\n"])
def test_a_bad_jenkins_submitter_is_refused(name: str) -> None:
    message = _error(PIPELINE + f"approvals: {{prod: {{jenkins_submitters: [{name!r}]}}}}\n")
    assert "is not a Jenkins user or group id" in message


@pytest.mark.parametrize("credentials_id", ["with space", "a/b", "x" * 129, "$(id)"])
def test_a_bad_jenkins_credentials_id_is_refused(credentials_id: str) -> None:
    message = _error(PIPELINE + f"approvals: {{prod: {{jenkins_credentials_id: {credentials_id!r}}}}}\n")
    assert "a Jenkins credentials id is letters, digits, . _ -" in message


def test_an_unknown_approvals_key_is_refused() -> None:
    message = _error(PIPELINE + "approvals: {prod: {approver: [x]}}\n")
    assert "unknown key 'approver'" in message


# -- choose_target ------------------------------------------------------------------------


def _entry(release: str, n: int, *, version: str = "8.5.0") -> CurrentRelease:
    return CurrentRelease(
        format=1,
        release=release,
        plan_hash=f"sha256:{n:064x}",
        account="qa",
        account_id="222222222222",
        images=[CurrentImage(repository="ep/cortex", tag=version, digest=f"sha256:{n + 100:064x}")],
        package=CurrentPackage(version=version, sha256=f"{n + 200:064x}"),
        who="arn:aws:sts::222222222222:assumed-role/cloudops/s (jenkins)",
        when=f"2026-11-0{n}T09:00:00+00:00",
    )


R0, R1, R2 = _entry("2026.10", 1), _entry("2026.11", 2), _entry("2026.12", 3)
R2_AGAIN = _entry("2026.12", 4)  # the current release applied again by another plan


def test_choose_target_takes_the_newest_entry_of_another_release() -> None:
    log = [R2_AGAIN, R2, R1, R0]  # newest first, as read_log gives them
    assert choose_target(R2_AGAIN, log, None) == R1
    assert choose_target(R2, [R2, R1, R0], None) == R1
    # The same release under another plan is not "earlier": it is skipped.
    assert choose_target(R2_AGAIN, [R2_AGAIN, R2, R0], None) == R0


def test_choose_target_takes_the_named_release() -> None:
    assert choose_target(R2, [R2, R1, R0], "2026.10") == R0
    assert choose_target(R2, [R2, R1, R0], "2026.11") == R1
    newer_r0 = _entry("2026.10", 5)
    assert choose_target(R2, [R2, newer_r0, R1, R0], "2026.10") == newer_r0  # the newest of that name


def test_choose_target_refuses_the_current_release_by_name() -> None:
    with pytest.raises(InputError) as caught:
        choose_target(R2, [R2, R1], "2026.12")
    assert caught.value.kind == "input"
    assert "release 2026.12 is the current release of 'qa'" in caught.value.message
    assert "nothing to roll back to" in caught.value.message


def test_choose_target_refuses_an_unknown_name_and_lists_the_others() -> None:
    with pytest.raises(InputError) as caught:
        choose_target(R2, [R2, R1, R0], "2025.01")
    assert "no earlier release named '2025.01'" in caught.value.message
    assert "current: 2026.12" in caught.value.message
    assert caught.value.hint is not None and "2026.10, 2026.11" in caught.value.hint


@pytest.mark.parametrize("log", [[], [R2], [R2, R2_AGAIN]], ids=["empty", "only-current", "current-twice"])
def test_choose_target_refuses_when_there_is_no_earlier_release(log: list[CurrentRelease]) -> None:
    with pytest.raises(InputError) as caught:
        choose_target(R2, log, None)
    assert "no earlier release in the release log of 'qa'" in caught.value.message
    assert caught.value.hint == "no other release was recorded there"
