"""`cloudops lifecycle preview` and the audit's lifecycle guard (issue 16) on the sandbox:
a lifecycle policy put with boto3 on qa's ep/cortex, releases promoted into qa, and the
preview must name what the rule would expire and which of it a release still uses.

moto stamps imagePushedAt with the time of the push, in whole seconds: the images are
pushed a second apart so that "newest N" is well defined; age-based rules are covered by
tests/unit/test_lifecycle.py, where time is given."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from cloudops.audit.lifecycle_rule import RULE, lifecycle_guard
from cloudops.lifecycle_preview import preview_lifecycle
from cloudops.release_plan import promote_release
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import ecr_tags, publish

REPOSITORY = "ep/cortex"


def _policy(keep: int) -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the newest {keep} versions",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPatternList": ["8.*"],
                        "countType": "imageCountMoreThan",
                        "countNumber": keep,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": "expire untagged after 30 days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 30,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


def _put_policy(ctx: Any, keep: int) -> None:
    ecr = ctx.session("qa").client("ecr")
    ecr.put_lifecycle_policy(repositoryName=REPOSITORY, lifecyclePolicyText=_policy(keep))
    # moto stores it as given: what the preview reads is what was put.
    assert json.loads(
        ecr.get_lifecycle_policy(repositoryName=REPOSITORY)["lifecyclePolicyText"]
    ) == json.loads(_policy(keep))


def _release_into_qa(ctx: Any, tmp_path: Path, name: str, tag: str) -> None:
    publish(ctx, "build", REPOSITORY, tag)
    release = tmp_path / f"release-{name}.yaml"
    release.write_text(f'release: "{name}"\nimages:\n  - {{repository: {REPOSITORY}, tag: "{tag}"}}\n')
    result = promote_release(ctx, "qa", release)
    assert result.ok, result.as_dict()
    time.sleep(1.1)  # the next push gets a later imagePushedAt (whole seconds in moto)


def _world(ctx: Any, tmp_path: Path) -> dict[str, str]:
    """qa runs release 2026.12 (8.6.0) and ran 2026.11 (8.5.0) before it; 8.7.0 and 8.8.0
    were pushed into qa after both. Returns tag -> digest as qa's ECR lists them."""
    _release_into_qa(ctx, tmp_path, "2026.11", "8.5.0")
    _release_into_qa(ctx, tmp_path, "2026.12", "8.6.0")
    publish(ctx, "qa", REPOSITORY, "8.7.0")
    time.sleep(1.1)
    publish(ctx, "qa", REPOSITORY, "8.8.0")
    tags = ecr_tags(ctx, "qa", REPOSITORY)
    assert set(tags) == {"8.5.0", "8.6.0", "8.7.0", "8.8.0"} and len(set(tags.values())) == 4
    return tags


def test_preview_marks_what_a_release_uses_and_exits_4(ctx: Any, tmp_path: Path) -> None:
    tags = _world(ctx, tmp_path)
    _put_policy(ctx, keep=2)
    ecr = ctx.session("qa").client("ecr")
    # `cloudops init` may give repositories a policy of its own: ep/search has none here.
    with contextlib.suppress(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.delete_lifecycle_policy(repositoryName="ep/search")

    result = cloudops("lifecycle", "preview", "--account", "qa", "--json")
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["account"] == "qa" and document["ok"] is False and document["keep_releases"] == 3
    assert [(r["release"], r["current"]) for r in document["releases"]] == [
        ("2026.12", True),
        ("2026.11", False),
    ]
    repositories = {r["repository"]: r for r in document["repositories"]}
    cortex = repositories[REPOSITORY]
    assert cortex["has_policy"] and cortex["images"] == 4 and cortex["problem"] is None
    # The two oldest 8.* images expire by rule 1; the newest two stay.
    expiring = {e["digest"]: e for e in cortex["expiring"]}
    assert set(expiring) == {tags["8.5.0"], tags["8.6.0"]}
    current = expiring[tags["8.6.0"]]
    assert current["tags"] == ["8.6.0"]
    assert current["rule"] == {"priority": 1, "description": "keep the newest 2 versions"}
    assert [(u["release"], u["current"]) for u in current["in_use_by"]] == [("2026.12", True)]
    assert [(u["release"], u["current"]) for u in expiring[tags["8.5.0"]]["in_use_by"]] == [
        ("2026.11", False)
    ]
    assert document["in_use_expiring"] == 2 and document["expiring"] == 2
    # A repository without a policy: nothing expires there; the others expire nothing in use.
    assert repositories["ep/search"]["note"] == "no lifecycle policy: nothing expires"
    assert repositories["ep/search"]["expiring"] == [] and not repositories["ep/search"]["has_policy"]
    assert set(repositories) == set(ctx.pipeline.images)
    assert all(r["problem"] is None for r in repositories.values())

    # Without releases kept for rollback only the current release's digest is in use.
    narrow = cloudops("lifecycle", "preview", "--account", "qa", "--keep-releases", "0", "--json")
    assert narrow.returncode == 4, narrow.stderr
    cortex = {r["repository"]: r for r in json.loads(narrow.stdout)["repositories"]}[REPOSITORY]
    assert {e["digest"]: bool(e["in_use_by"]) for e in cortex["expiring"]} == {
        tags["8.5.0"]: False,
        tags["8.6.0"]: True,
    }

    human = cloudops("lifecycle", "preview", "--account", "qa")
    assert human.returncode == 4 and not human.stdout
    assert "IN USE by release 2026.12 (current)" in human.stderr
    assert "IN USE by release 2026.11 (kept for rollback)" in human.stderr
    assert "2 image(s) in use would expire" in human.stderr and "Traceback" not in human.stderr


def test_audit_rule_finds_the_digest_in_use_and_passes_once_the_rule_keeps_it(
    ctx: Any, tmp_path: Path
) -> None:
    tags = _world(ctx, tmp_path)
    _put_policy(ctx, keep=2)

    findings, result = lifecycle_guard(ctx, ["qa", "preprod"])
    assert result.rule == RULE and result.status == "failed" and result.note == ""
    errors = [f for f in findings if f.severity == "error"]
    assert {f.where for f in errors} == {f"{REPOSITORY}@{tags['8.5.0']}", f"{REPOSITORY}@{tags['8.6.0']}"}
    current = next(f for f in errors if f.where == f"{REPOSITORY}@{tags['8.6.0']}")
    assert current.account == "qa" and "release 2026.12 (current)" in current.what
    assert "rule 1 (keep the newest 2 versions)" in current.what
    assert "imageCountMoreThan" in current.fix and "tagPatternList" in current.fix

    # A rule that keeps four keeps every release: nothing in use expires, exit 0.
    _put_policy(ctx, keep=4)
    findings, result = lifecycle_guard(ctx, ["qa"])
    assert findings == [] and result.status == "passed"
    preview = preview_lifecycle(ctx, "qa")
    assert preview.ok and preview.in_use == []
    clean = cloudops("lifecycle", "preview", "--account", "qa")
    assert clean.returncode == 0, clean.stderr
    assert "nothing in use would expire" in clean.stderr


def test_unreadable_policies_and_accounts(ctx: Any, tmp_path: Path) -> None:
    publish(ctx, "qa", REPOSITORY, "8.5.0")

    # A policy moto stores but the documented rules refuse (tagStatus any not last): named
    # as not evaluated, never guessed at.
    def rule(priority: int, status: str) -> dict[str, Any]:
        selection = {"tagStatus": status, "countType": "imageCountMoreThan", "countNumber": 1}
        return {"rulePriority": priority, "selection": selection, "action": {"type": "expire"}}

    ctx.session("qa").client("ecr").put_lifecycle_policy(
        repositoryName=REPOSITORY,
        lifecyclePolicyText=json.dumps({"rules": [rule(1, "any"), rule(2, "untagged")]}),
    )
    result = cloudops("lifecycle", "preview", "--account", "qa", "--json")
    assert result.returncode == 4, result.stderr
    cortex = {r["repository"]: r for r in json.loads(result.stdout)["repositories"]}[REPOSITORY]
    assert "tagStatus any (rulePriority 1) must have the highest rulePriority" in cortex["problem"]
    findings, rule = lifecycle_guard(ctx, ["qa"])
    assert rule.status == "failed" and [f.severity for f in findings] == ["warning"]

    assert_clean_failure(cloudops("lifecycle", "preview", "--account", "nowhere"), 2, "nowhere")
    # An account whose credentials cannot be used is skipped, with why.
    findings, rule = lifecycle_guard(ctx, ["nowhere"])
    assert findings == [] and rule.status == "skipped" and "nowhere" in rule.note
