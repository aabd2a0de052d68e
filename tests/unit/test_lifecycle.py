"""The lifecycle policy evaluator (cloudops.lifecycle) against AWS's own examples.

Each case replays an example of "Examples of lifecycle policies in Amazon ECR"
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html),
or a sentence of "Lifecycle policy evaluation rules"
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html), with the
repository contents and the result the documentation states. Older revisions of the
examples page used tagPrefixList where the current one uses tagPatternList; both are here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.errors import InputError
from cloudops.lifecycle import (
    MAX_POLICY_BYTES,
    Image,
    LifecyclePolicyError,
    evaluate,
    expand_short_form,
    parse_policy,
    parse_policy_document,
    wildcard_match,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rule(
    priority: int,
    status: str,
    count_type: str,
    number: int,
    *,
    prefixes: list[str] | None = None,
    patterns: list[str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    selection: dict[str, Any] = {"tagStatus": status, "countType": count_type, "countNumber": number}
    if count_type == "sinceImagePushed":
        selection["countUnit"] = "days"
    if prefixes is not None:
        selection["tagPrefixList"] = prefixes
    if patterns is not None:
        selection["tagPatternList"] = patterns
    document: dict[str, Any] = {
        "rulePriority": priority,
        "selection": selection,
        "action": {"type": "expire"},
    }
    document["description"] = description or f"Rule {priority}"
    return document


def image(name: str, tags: list[str], days_ago: float) -> tuple[str, list[str], float]:
    return (name, tags, days_ago)


# Repository of "Filtering on multiple rules" (examples A and B).
MULTIPLE_RULES = [
    image("A", ["beta-1", "prod-1"], 10),
    image("B", ["beta-2", "prod-2"], 9),
    image("C", ["beta-3"], 8),
]
# Repository of "Filtering on multiple tags in a single rule", example A.
MULTIPLE_TAGS_A = [
    image("A", ["alpha-1"], 12),
    image("B", ["beta-1"], 11),
    image("C", ["alpha-2", "beta-2"], 10),
    image("D", ["alpha-3"], 4),
    image("E", ["beta-3"], 3),
    image("F", ["alpha-4", "beta-4"], 2),
]
# ... example B: "tags are not exclusive".
MULTIPLE_TAGS_B = [
    image("A", ["alpha-1", "beta-1", "gamma-1"], 10),
    image("B", ["alpha-2", "beta-2"], 9),
    image("C", ["alpha-3", "beta-3", "gamma-2"], 8),
]
# "Filtering on all images", example B. D and E are both "1 day ago" there, E the newer
# (rule 3 keeps E and marks D) and E not older than one day (rule 2 leaves it): 26 h and 20 h.
ALL_IMAGES_B = [
    image("A", ["alpha-1", "beta-1"], 4),
    image("B", [], 3),
    image("C", ["alpha-2"], 2),
    image("D", ["git hash"], 26 / 24),
    image("E", [], 20 / 24),
]

CASES: list[tuple[str, list[dict[str, Any]], list[tuple[str, list[str], float]], dict[str, int]]] = [
    (
        "Filtering on image age: tagPatternList prod*, sinceImagePushed 14 days",
        [rule(1, "tagged", "sinceImagePushed", 14, patterns=["prod*"])],
        [
            image("old-prod", ["prod-1"], 20),
            image("new-prod", ["prod-2"], 10),
            image("old-dev", ["dev-1"], 30),
            image("old-untagged", [], 30),
        ],
        {"old-prod": 1},
    ),
    (
        "Filtering on image age (earlier revision): untagged images older than 14 days",
        [rule(1, "untagged", "sinceImagePushed", 14)],
        [image("old", [], 20), image("young", [], 5), image("old-tagged", ["v1"], 30)],
        {"old": 1},
    ),
    (
        "Filtering on image count: keep only one untagged image, expire all others",
        [rule(1, "untagged", "imageCountMoreThan", 1)],
        [image("u1", [], 3), image("u2", [], 2), image("u3", [], 1), image("t", ["v1"], 9)],
        {"u1": 1, "u2": 1},
    ),
    (
        "Filtering on multiple rules, Example A: image A expired (B was seen by rule 1)",
        [
            rule(1, "tagged", "imageCountMoreThan", 1, patterns=["prod*"]),
            rule(2, "tagged", "imageCountMoreThan", 1, patterns=["beta*"]),
        ],
        MULTIPLE_RULES,
        {"A": 1},
    ),
    (
        "Filtering on multiple rules, Example A (earlier revision, tagPrefixList)",
        [
            rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["prod"]),
            rule(2, "tagged", "imageCountMoreThan", 1, prefixes=["beta"]),
        ],
        MULTIPLE_RULES,
        {"A": 1},
    ),
    (
        "Filtering on multiple rules, Example B: images A and B expired by rule 1",
        [
            rule(1, "tagged", "imageCountMoreThan", 1, patterns=["beta*"]),
            rule(2, "tagged", "imageCountMoreThan", 1, patterns=["prod*"]),
        ],
        MULTIPLE_RULES,
        {"A": 1, "B": 1},
    ),
    (
        "Filtering on multiple rules, Example B, rules listed out of order: priority decides",
        [
            rule(20, "tagged", "imageCountMoreThan", 1, patterns=["prod*"]),
            rule(7, "tagged", "imageCountMoreThan", 1, patterns=["beta*"]),
        ],
        MULTIPLE_RULES,
        {"A": 7, "B": 7},
    ),
    (
        "Filtering on multiple tags in a single rule, Example A: image C expired",
        [rule(1, "tagged", "sinceImagePushed", 5, patterns=["alpha*", "beta*"])],
        MULTIPLE_TAGS_A,
        {"C": 1},
    ),
    (
        "Filtering on multiple tags in a single rule, Example A (earlier revision, tagPrefixList)",
        [rule(1, "tagged", "sinceImagePushed", 5, prefixes=["alpha", "beta"])],
        MULTIPLE_TAGS_A,
        {"C": 1},
    ),
    (
        "Filtering on multiple tags in a single rule, Example B: tags are not exclusive, A and B",
        [rule(1, "tagged", "imageCountMoreThan", 1, patterns=["alpha*", "beta*"])],
        MULTIPLE_TAGS_B,
        {"A": 1, "B": 1},
    ),
    (
        "Filtering on all images, Example A: tagStatus any keeps one image, A, B and C expired",
        [rule(1, "any", "imageCountMoreThan", 1)],
        [
            image("A", ["alpha-1"], 4),
            image("B", ["beta-1"], 3),
            image("C", [], 2),
            image("D", ["alpha-2"], 1),
        ],
        {"A": 1, "B": 1, "C": 1},
    ),
    (
        "Filtering on all images, Example B: all rule types, A (rule 1), B (rule 2), D (rule 3)",
        [
            rule(1, "tagged", "imageCountMoreThan", 1, patterns=["alpha*"]),
            rule(2, "untagged", "sinceImagePushed", 1),
            rule(3, "any", "imageCountMoreThan", 1),
        ],
        ALL_IMAGES_B,
        {"A": 1, "B": 2, "D": 3},
    ),
    (
        "Evaluation rules: *prod* matches tags containing prod (repo-production, prod-team)",
        [rule(1, "tagged", "sinceImagePushed", 1, patterns=["*prod*"])],
        [image("a", ["repo-production"], 2), image("b", ["prod-team"], 2), image("c", ["dev"], 2)],
        {"a": 1, "b": 1},
    ),
    (
        "Evaluation rules: prod* matches prod, prod1 and production-team1, not preprod",
        [rule(1, "tagged", "imageCountMoreThan", 1, patterns=["prod*"])],
        [
            image("a", ["prod"], 5),
            image("b", ["prod1"], 4),
            image("c", ["production-team1"], 3),
            image("d", ["preprod"], 1),
        ],
        {"a": 1, "b": 1},
    ),
    (
        "Evaluation rules: an image matching a higher rule is never expired by a lower one",
        [
            rule(1, "tagged", "imageCountMoreThan", 100, prefixes=["release-"]),
            rule(2, "any", "imageCountMoreThan", 1),
        ],
        [
            image("r1", ["release-1"], 9),
            image("r2", ["release-2"], 8),
            image("x", ["feature"], 7),
            image("y", [], 1),
        ],
        {"x": 2},
    ),
]


def _images(rows: list[tuple[str, list[str], float]]) -> tuple[list[Image], dict[str, str]]:
    images, names = [], {}
    for index, (name, tags, days) in enumerate(rows):
        digest = f"sha256:{index:064x}"
        names[digest] = name
        images.append(Image(digest, tuple(tags), NOW - timedelta(days=days)))
    return images, names


@pytest.mark.parametrize(("example", "rules", "rows", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_documented_examples(
    example: str,
    rules: list[dict[str, Any]],
    rows: list[tuple[str, list[str], float]],
    expected: dict[str, int],
) -> None:
    policy = parse_policy(json.dumps({"rules": rules}))
    images, names = _images(rows)
    found = evaluate(policy, images, NOW)
    assert {names[e.image.digest]: e.rule_priority for e in found} == expected, example
    # Oldest first, each image at most once, each with its rule's description.
    assert [e.image.pushed_at for e in found] == sorted(e.image.pushed_at for e in found)
    assert len({e.image.digest for e in found}) == len(found)
    assert all(e.rule_label == f"rule {e.rule_priority} (Rule {e.rule_priority})" for e in found)


def test_the_answer_does_not_depend_on_the_listing_order_or_repeats() -> None:
    policy = parse_policy(json.dumps({"rules": [rule(1, "any", "imageCountMoreThan", 2)]}))
    same_time = NOW - timedelta(days=1)
    images = [Image(f"sha256:{i:064x}", (f"t{i}",), same_time) for i in range(5)]
    first = evaluate(policy, images, NOW)
    again = evaluate(policy, list(reversed(images)) + images[:2], NOW)
    assert first == again and len(first) == 3


# --- the short form ---------------------------------------------------------------------


def test_short_form_expands_into_a_policy_ecr_and_cloudops_accept() -> None:
    document = expand_short_form({"keep_untagged_days": 7, "keep_last_tags": 2})
    assert [r["selection"]["tagStatus"] for r in document["rules"]] == ["untagged", "tagged"]
    assert document["rules"][0]["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 7,
    }
    assert document["rules"][1]["selection"]["tagPatternList"] == ["*"]
    policy = parse_policy_document(document)
    images, names = _images(
        [
            image("old-untagged", [], 8),
            image("new-untagged", [], 6),
            image("v1", ["1.0.0"], 30),
            image("v2", ["2.0.0"], 20),
            image("v3", ["3.0.0", "latest"], 10),
        ]
    )
    found = {names[e.image.digest]: e.rule_priority for e in evaluate(policy, images, NOW)}
    # Untagged images never take a place among the newest N tagged ones.
    assert found == {"old-untagged": 1, "v1": 2}


@pytest.mark.parametrize(
    ("short", "rules"),
    [({"keep_untagged_days": 3}, ["untagged"]), ({"keep_last_tags": 5}, ["tagged"])],
)
def test_short_form_with_one_key(short: dict[str, int], rules: list[str]) -> None:
    document = expand_short_form(short)
    assert [r["selection"]["tagStatus"] for r in document["rules"]] == rules
    assert [r["rulePriority"] for r in document["rules"]] == [1]


@pytest.mark.parametrize(
    ("short", "needle"),
    [
        ({}, "keep_untagged_days, keep_last_tags or both"),
        ({"keep_last_tags": 0}, "keep_last_tags"),
        ({"keep_last_tags": "5"}, "keep_last_tags"),
        ({"keep_forever": 1}, "keep_forever: unknown key"),
    ],
)
def test_short_form_refuses(short: dict[str, Any], needle: str) -> None:
    with pytest.raises(LifecyclePolicyError, match=re.escape(needle)):
        expand_short_form(short)


# --- validation ---------------------------------------------------------------------------


def _one(**selection: Any) -> dict[str, Any]:
    base = {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}
    return {"rules": [{"rulePriority": 1, "selection": {**base, **selection}, "action": {"type": "expire"}}]}


INVALID: list[tuple[str, object, str]] = [
    (
        "duplicate priority",
        {
            "rules": [
                rule(1, "untagged", "imageCountMoreThan", 1),
                rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["v"]),
            ]
        },
        "rulePriority 1 is used by more than one rule",
    ),
    (
        "any not last",
        {"rules": [rule(1, "any", "imageCountMoreThan", 1), rule(2, "untagged", "sinceImagePushed", 1)]},
        "tagStatus any (rulePriority 1) must have the highest rulePriority",
    ),
    ("bad countUnit", _one(countType="sinceImagePushed", countUnit="hours"), "rules[0].selection.countUnit"),
    (
        "countUnit with a count",
        _one(countUnit="days"),
        "countUnit is only used with countType sinceImagePushed",
    ),
    ("age without countUnit", _one(countType="sinceImagePushed"), "needs countUnit days"),
    ("countNumber 0", _one(countNumber=0), "rules[0].selection.countNumber"),
    ("countNumber as text", _one(countNumber="1"), "rules[0].selection.countNumber"),
    (
        "unknown key in a selection",
        _one(tagSuffixList=["x"]),
        "rules[0].selection.tagSuffixList: unknown key",
    ),
    (
        "unknown key at the top",
        {"rules": _one()["rules"], "version": 2},
        "version: unknown key",
    ),
    ("tagged without a list", _one(tagStatus="tagged"), "tagStatus tagged needs exactly one of"),
    (
        "both lists",
        _one(tagStatus="tagged", tagPrefixList=["a"], tagPatternList=["b*"]),
        "tagPatternList or tagPrefixList, not both",
    ),
    ("untagged with prefixes", _one(tagPrefixList=["v"]), "tagPrefixList is only used with tagStatus tagged"),
    (
        "five wildcards",
        _one(tagStatus="tagged", tagPatternList=["*test*1*2*3", "test*1*2*3*4*"]),
        "has 5 wildcards (*), at most 4 per string",
    ),
    ("empty prefix", _one(tagStatus="tagged", tagPrefixList=[""]), "rules[0].selection.tagPrefixList[0]"),
    (
        "two untagged rules",
        {"rules": [rule(1, "untagged", "imageCountMoreThan", 1), rule(2, "untagged", "sinceImagePushed", 9)]},
        "only one rule may select untagged images",
    ),
    (
        "same prefixes twice",
        {
            "rules": [
                rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["a", "b"]),
                rule(2, "tagged", "sinceImagePushed", 1, prefixes=["b", "a"]),
            ]
        },
        "rules 1 and 2 have the same tagPrefixList",
    ),
    ("transition", {"rules": [{**_one()["rules"][0], "action": {"type": "transition"}}]}, "not supported"),
    ("archive class", _one(storageClass="archive"), "storageClass archive is not supported"),
    ("pulled", _one(countType="sinceImagePulled", countUnit="days"), "sinceImagePulled (archive storage)"),
    ("no rules", {"rules": []}, "rules: List should have at least 1 item"),
    (
        "no action",
        {"rules": [{"rulePriority": 1, "selection": _one()["rules"][0]["selection"]}]},
        "action: missing",
    ),
    (
        "too many rules",
        {"rules": [rule(i, "tagged", "imageCountMoreThan", 1, prefixes=[f"p{i}"]) for i in range(1, 52)]},
        "at most 50",
    ),
    ("not an object", [1, 2], "is not a JSON object with rules"),
]


@pytest.mark.parametrize(("case", "document", "needle"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_policies_are_refused_naming_what_is_wrong(case: str, document: object, needle: str) -> None:
    with pytest.raises(LifecyclePolicyError) as caught:
        parse_policy(json.dumps(document))
    assert needle in caught.value.message, (case, caught.value.message)
    assert isinstance(caught.value, InputError)  # exit 2 at the CLI, never a traceback


def test_too_large_duplicate_keys_and_non_json_are_refused_without_echoing() -> None:
    large = json.dumps(
        {"rules": [rule(1, "untagged", "imageCountMoreThan", 1, description="x" * MAX_POLICY_BYTES)]}
    )
    with pytest.raises(LifecyclePolicyError, match=r"more than ECR's 30720"):
        parse_policy(large)
    with pytest.raises(LifecyclePolicyError, match="a key occurs twice"):
        parse_policy('{"rules": [], "rules": []}')
    secret = "\x1b]8;;http://evil\x07hostile"
    with pytest.raises(LifecyclePolicyError) as caught:
        parse_policy("{" + secret)
    assert caught.value.message.endswith("not JSON") and "evil" not in str(caught.value)
    with pytest.raises(LifecyclePolicyError) as caught:
        parse_policy(json.dumps(_one(tagStatus=secret)))
    assert "evil" not in str(caught.value) and "rules[0].selection.tagStatus" in caught.value.message


# --- wildcards -------------------------------------------------------------------------


def _reference(pattern: str, tag: str) -> bool:
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), tag, re.DOTALL) is not None


@given(
    pattern=st.text(alphabet="ab*.", max_size=8).filter(lambda p: p.count("*") <= 4),
    tag=st.text(alphabet="ab.", max_size=10),
)
def test_wildcard_match_is_a_glob_of_stars_only(pattern: str, tag: str) -> None:
    assert wildcard_match(pattern, tag) == _reference(pattern, tag)


def test_wildcard_match_is_fast_on_hostile_input() -> None:
    # A backtracking regex would take ages on this; the segment search is linear.
    assert not wildcard_match("*a*a*a*a*b", "a" * 300)
    assert wildcard_match("*a*a*a*a*", "a" * 300)
