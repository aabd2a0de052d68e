"""`cloudops promote image --all-tags` (a backfill) on the sandbox: every claim read back
from the destination's own ECR (boto3) and registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.promote import ImageSpec, promote_images
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import ecr_tags, publish, registry_digest

REPO = "ep/cortex"


def _backfill(to: str, *args: str) -> Any:
    return cloudops("promote", "image", "--to", to, "--repository", REPO, "--all-tags", *args)


def _records(account: str) -> list[dict[str, Any]]:
    answer = cloudops("history", "--account", account, "--json", check=True)
    return list(json.loads(answer.stdout)["records"])


def _publish(ctx: PipelineContext, *tags: str) -> dict[str, str]:
    return {tag: publish(ctx, "build", REPO, tag, scale=0.02) for tag in tags}


def _promote(ctx: PipelineContext, to: str, *tags: str) -> None:
    for result in promote_images(ctx, to, [ImageSpec(REPO, tag) for tag in tags]):
        assert result.status == "promoted", result.error


def test_dry_run_writes_nothing_the_run_promotes_the_missing_tags_and_a_rerun_nothing(ctx) -> None:  # type: ignore[no-untyped-def]
    built = _publish(ctx, "8.4.0", "8.5.0", "8.6.0", "8.6.1", "9.0.0-rc1")
    _promote(ctx, "qa", "8.5.0")
    before = ecr_tags(ctx, "qa", REPO)
    assert before == {"8.5.0": built["8.5.0"]}

    dry = _backfill("qa", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    document = json.loads(dry.stdout)
    missing = ["9.0.0-rc1", "8.6.1", "8.6.0", "8.4.0"]  # newest first
    assert document["plan"]["copy"] == missing
    assert document["plan"]["already_there"] == ["8.5.0"]
    assert document["plan"]["refused"] == []
    assert [(i["tag"], i["status"], i["source_digest"]) for i in document["images"]] == [
        (tag, "planned", built[tag]) for tag in missing
    ]
    assert (document["dry_run"], document["source_account"], document["destination_account"]) == (
        True,
        "build",
        "qa",
    )
    assert "8.6.1" in dry.stderr and "dry run: nothing written" in dry.stderr
    assert dry.stderr.index("to copy") < dry.stderr.index("plan ep/cortex:")  # the plan first
    assert ecr_tags(ctx, "qa", REPO) == before, "the dry run wrote into qa"
    assert all(registry_digest(ctx, "qa", REPO, tag) is None for tag in missing)
    assert len(_records("qa")) == 1  # the promotion of 8.5.0 only

    run = _backfill("qa", "--json")
    assert run.returncode == 0, run.stderr
    images = json.loads(run.stdout)["images"]
    assert [(i["tag"], i["status"]) for i in images] == [(tag, "promoted") for tag in missing]
    assert ecr_tags(ctx, "qa", REPO) == built  # exactly the build account's tags, same digests
    for tag, digest in built.items():
        assert registry_digest(ctx, "qa", REPO, tag) == digest
    records = _records("qa")
    assert sorted((r["tag"], r["result"]) for r in records[1:]) == sorted((t, "promoted") for t in missing)
    assert {r["source_digest"] for r in records[1:]} == {built[t] for t in missing}

    again = _backfill("qa", "--json")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["images"] == [] and document["ok"] is True
    assert sorted(document["plan"]["already_there"]) == sorted(built)
    assert "nothing to promote: all 5 chosen tags already in qa" in again.stderr
    assert ecr_tags(ctx, "qa", REPO) == built
    assert len(_records("qa")) == len(records), "a re-run recorded something"


def test_a_squatting_tag_is_refused_and_the_others_still_land(ctx) -> None:  # type: ignore[no-untyped-def]
    built = _publish(ctx, "1.0", "1.1", "1.2")
    squatter = publish(ctx, "qa", REPO, "1.1", scale=0.07)  # pushed into qa outside the pipeline
    assert squatter != built["1.1"]

    dry = _backfill("qa", "--dry-run")
    assert_clean_failure(dry, 3, "refused  1.1", "tags never move")
    assert ecr_tags(ctx, "qa", REPO) == {"1.1": squatter}

    run = _backfill("qa", "--json")
    assert_clean_failure(run, 3, "already names", "tags never move")
    document = json.loads(run.stdout)
    assert document["ok"] is False and document["plan"]["refused"] == ["1.1"]
    assert {i["tag"]: i["status"] for i in document["images"]} == {
        "1.2": "promoted",
        "1.1": "refused",
        "1.0": "promoted",
    }
    assert ecr_tags(ctx, "qa", REPO) == {"1.0": built["1.0"], "1.1": squatter, "1.2": built["1.2"]}
    assert registry_digest(ctx, "qa", REPO, "1.1") == squatter  # the tag did not move
    assert registry_digest(ctx, "qa", REPO, "1.0") == built["1.0"]
    assert sorted((r["tag"], r["result"]) for r in _records("qa")) == [
        ("1.0", "promoted"),
        ("1.1", "refused"),
        ("1.2", "promoted"),
    ]


def test_match_and_since_choose_the_tags(ctx) -> None:  # type: ignore[no-untyped-def]
    built = _publish(ctx, "2.0", "2.1", "3.0", "latest")

    matched = _backfill("qa", "--match", r"2\.\d+", "--json")
    assert matched.returncode == 0, matched.stderr
    plan = json.loads(matched.stdout)["plan"]
    assert (plan["copy"], plan["not_matched"]) == (["2.1", "2.0"], 2)
    assert ecr_tags(ctx, "qa", REPO) == {"2.0": built["2.0"], "2.1": built["2.1"]}

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    later = _backfill("qa", "--since", tomorrow, "--json")
    assert later.returncode == 0, later.stderr
    plan = json.loads(later.stdout)["plan"]
    assert (plan["copy"], plan["older_than_since"]) == ([], 4)
    assert "nothing to promote: no tag of ep/cortex in build was chosen" in later.stderr

    recent = _backfill("qa", "--since", "1h", "--match", "[0-9.]+", "--json")
    assert recent.returncode == 0, recent.stderr
    plan = json.loads(recent.stdout)["plan"]
    assert (plan["copy"], plan["already_there"], plan["not_matched"]) == (["3.0"], ["2.1", "2.0"], 1)
    assert all(t["pushed_at"] for t in plan["tags"])  # ECR's imagePushedAt, as moto records it
    assert ecr_tags(ctx, "qa", REPO) == {t: d for t, d in built.items() if t != "latest"}


def test_flags_that_do_not_go_together_and_a_bad_regex_are_exit_2(ctx) -> None:  # type: ignore[no-untyped-def]
    _publish(ctx, "1.0")
    for args, needle in [
        (("--match", "(unclosed"), "not a valid regular expression"),
        (("--match", "a" * 1000), "at most 200"),
        (("--since", "yesterday"), "neither an ISO date nor a span"),
        (("--tag", "1.0"), "--all-tags and --tag exclude each other"),
    ]:
        assert_clean_failure(_backfill("qa", *args), 2, needle)
    single = ("promote", "image", "--to", "qa", "--repository", REPO)
    assert_clean_failure(cloudops(*single), 2, "missing --tag")
    assert_clean_failure(cloudops(*single, "--tag", "1.0", "--match", "1.*"), 2, "--all-tags only")
    assert ecr_tags(ctx, "qa", REPO) == {}
    assert _records("qa") == []


def test_a_backfill_into_a_stage_that_requires_approvals_is_refused(ctx) -> None:  # type: ignore[no-untyped-def]
    _publish(ctx, "8.5.0", "8.6.0")
    _promote(ctx, "qa", "8.5.0", "8.6.0")
    _promote(ctx, "preprod", "8.5.0", "8.6.0")
    for extra in ((), ("--dry-run",)):
        refused = _backfill("prod", *extra)
        assert_clean_failure(refused, 3, "'prod' requires an approval", "cloudops approve PLAN.json")
    assert ecr_tags(ctx, "prod", REPO) == {}
    assert _records("prod") == []
