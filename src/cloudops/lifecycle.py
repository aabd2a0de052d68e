"""ECR lifecycle policies, read and evaluated without touching AWS (issue 16). Pure: no I/O.

A lifecycle policy is hostile input (whoever may call PutLifecyclePolicy wrote it, and it
is read back from ECR): :func:`parse_policy` bounds its size, refuses duplicate keys and
unknown keys, validates every field with pydantic and names what is wrong without echoing
the content. :func:`evaluate` then says which images the policy would expire, and by which
rule, following the evaluator AWS documents:

- "Lifecycle policy evaluation rules",
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html#lp_evaluation_rules
- "Lifecycle policy properties",
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html
- "Examples of lifecycle policies",
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html
  (tests/unit/test_lifecycle.py replays them).

Only what deletes images is modelled: ``action.type`` ``expire`` with ``countType``
``imageCountMoreThan`` or ``sinceImagePushed`` on the standard storage class. The archive
features (``transition``, ``sinceImagePulled``, ``sinceImageTransitioned``,
``storageClass: archive``) are refused by name as not supported, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from cloudops.errors import InputError
from cloudops.text import json_without_duplicate_keys, plain_text

MAX_POLICY_BYTES: Final = 30_720
"""ECR's own bound on lifecyclePolicyText (PutLifecyclePolicy: 100 to 30,720 characters)."""
MAX_RULES: Final = 50
"""ECR's quota "Rules per lifecycle policy"."""
MAX_WILDCARDS: Final = 4
"""Per tagPatternList string ("There is a maximum limit of four wildcards (*) per string")."""
MAX_TAG_LENGTH: Final = 300
"""An ECR image tag is at most 300 characters: no prefix or pattern needs more."""
MAX_FILTERS: Final = 1_000
"""Prefixes or patterns in one rule: far above any real policy, well inside the size bound."""
MAX_COUNT: Final = 2**31 - 1
"""rulePriority and countNumber are integers (Java int on AWS's side)."""

_Filter = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_LENGTH)]


class LifecyclePolicyError(InputError):
    """A lifecycle policy document that is not one cloudops can evaluate: too large, not
    JSON, an unknown or missing key, a value ECR refuses, or a feature not modelled."""


class _Strict(BaseModel):
    # strict: "1" is not 1 and true is not 1, as ECR's JSON schema would have it.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Selection(_Strict):
    # Field names are ECR's JSON keys as written (camelCase): the model is the document.
    tagStatus: Literal["tagged", "untagged", "any"]
    tagPrefixList: Annotated[list[_Filter], Field(min_length=1, max_length=MAX_FILTERS)] | None = None
    tagPatternList: Annotated[list[_Filter], Field(min_length=1, max_length=MAX_FILTERS)] | None = None
    storageClass: Literal["standard", "archive"] | None = None
    countType: Literal["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned"]
    countUnit: Literal["days"] | None = None
    countNumber: Annotated[int, Field(ge=1, le=MAX_COUNT)]

    @model_validator(mode="after")
    def _consistent(self) -> Selection:
        # "Lifecycle policy properties": tagStatus, tagPatternList, tagPrefixList.
        lists = [name for name in ("tagPrefixList", "tagPatternList") if getattr(self, name) is not None]
        if self.tagStatus == "tagged" and len(lists) != 1:
            raise ValueError(
                "tagStatus tagged needs exactly one of tagPrefixList or tagPatternList"
                if not lists
                else "a rule may specify tagPatternList or tagPrefixList, not both"
            )
        if self.tagStatus != "tagged" and lists:
            raise ValueError(f"{lists[0]} is only used with tagStatus tagged, not {self.tagStatus}")
        for pattern in self.tagPatternList or []:
            if pattern.count("*") > MAX_WILDCARDS:
                raise ValueError(
                    f"tagPatternList: a pattern has {pattern.count('*')} wildcards (*), "
                    f"at most {MAX_WILDCARDS} per string"
                )
        # "Count type", "Count unit": countUnit with sinceImagePushed only, and required there.
        if self.countType in ("sinceImagePulled", "sinceImageTransitioned"):
            raise ValueError(f"countType {self.countType} (archive storage) is not supported by cloudops")
        if self.storageClass == "archive":
            raise ValueError("storageClass archive is not supported by cloudops")
        if self.countType == "sinceImagePushed" and self.countUnit is None:
            raise ValueError("countType sinceImagePushed needs countUnit days")
        if self.countType == "imageCountMoreThan" and self.countUnit is not None:
            raise ValueError("countUnit is only used with countType sinceImagePushed")
        return self

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(self.tagPrefixList or self.tagPatternList or ())


class Action(_Strict):
    type: Literal["expire", "transition"]
    targetStorageClass: Literal["archive"] | None = None

    @model_validator(mode="after")
    def _expire_only(self) -> Action:
        if self.type != "expire":
            raise ValueError("action type transition (archive storage) is not supported by cloudops")
        if self.targetStorageClass is not None:
            raise ValueError("targetStorageClass is only used with action type transition")
        return self


class Rule(_Strict):
    rulePriority: Annotated[int, Field(ge=1, le=MAX_COUNT)]
    description: Annotated[str, StringConstraints(max_length=4096)] | None = None
    selection: Selection
    action: Action

    def selects(self, image: Image) -> bool:
        """Whether the image matches this rule's tagging requirements ("selection")."""
        status = self.selection.tagStatus
        if status == "any":
            return True
        if status == "untagged":
            return not image.tags
        if not image.tags:
            return False
        # "Lifecycle policy evaluation rules": an image is matched if ALL of the tags in the
        # tagPatternList or tagPrefixList value are matched against ANY of the image's tags
        # (Examples, "Filtering on multiple tags in a single rule": ["alpha*", "beta*"]
        # selects only images carrying both an alpha and a beta tag).
        if self.selection.tagPrefixList is not None:
            return all(any(tag.startswith(p) for tag in image.tags) for p in self.selection.tagPrefixList)
        return all(any(wildcard_match(p, tag) for tag in image.tags) for p in self.selection.filters)

    @property
    def label(self) -> str:
        return f"rule {self.rulePriority}" + (f" ({self.description})" if self.description else "")


class LifecyclePolicy(_Strict):
    rules: Annotated[list[Rule], Field(min_length=1, max_length=MAX_RULES)]

    @model_validator(mode="after")
    def _rules_together(self) -> LifecyclePolicy:
        # "Rule priority": unique values, not necessarily sequential; a rule with tagStatus
        # any must have the highest value and be evaluated last.
        priorities = [r.rulePriority for r in self.rules]
        duplicates = sorted({p for p in priorities if priorities.count(p) > 1})
        if duplicates:
            raise ValueError(
                f"rulePriority {duplicates[0]} is used by more than one rule (each must be unique)"
            )
        highest = max(priorities)
        for rule in self.rules:
            if rule.selection.tagStatus == "any" and rule.rulePriority != highest:
                raise ValueError(
                    f"the rule with tagStatus any (rulePriority {rule.rulePriority}) must have the "
                    f"highest rulePriority ({highest} is higher)"
                )
        # "Evaluation rules": only one rule may select untagged images; the rules must
        # contain a unique set of prefixes (read here: no two rules with the same list).
        untagged = [r.rulePriority for r in self.rules if r.selection.tagStatus == "untagged"]
        if len(untagged) > 1:
            raise ValueError(
                f"only one rule may select untagged images (rulePriority {untagged[0]}, {untagged[1]})"
            )
        seen: dict[tuple[str, frozenset[str]], int] = {}
        for rule in self.rules:
            if rule.selection.tagStatus != "tagged":
                continue
            kind = "tagPrefixList" if rule.selection.tagPrefixList is not None else "tagPatternList"
            key = (kind, frozenset(rule.selection.filters))
            if key in seen:
                raise ValueError(
                    f"rules {seen[key]} and {rule.rulePriority} have the same {kind} "
                    "(the set of rules must contain a unique set of prefixes)"
                )
            seen[key] = rule.rulePriority
        return self

    def ordered(self) -> list[Rule]:
        return sorted(self.rules, key=lambda r: r.rulePriority)


def wildcard_match(pattern: str, tag: str) -> bool:
    """``tag`` matches ``pattern``, where ``*`` is any run of characters (none included)
    and every other character stands for itself. Linear segment search, no regex: a hostile
    pattern and tag cannot make it backtrack."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == tag
    first, *middle, last = parts
    if len(tag) < len(first) + len(last) or not tag.startswith(first) or not tag.endswith(last):
        return False
    position, end = len(first), len(tag) - len(last)
    for part in middle:
        # Leftmost match of each middle part is enough: it leaves the most room for the rest.
        found = tag.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


def _problem(error: ValidationError) -> str:
    """Each pydantic error as `where: what`, never with the offending value."""
    lines = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(f"[{p}]" if isinstance(p, int) else plain_text(p)[:60] for p in item["loc"])
        where = where.replace(".[", "[")
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (not part of an ECR lifecycle policy)"
        elif item["type"] == "missing":
            message = "missing (required)"
        lines.append(f"{where}: {message}" if where else message)
    more = len(error.errors()) - len(lines)
    return "; ".join(lines) + (f"; and {more} more" if more > 0 else "")


def parse_policy_document(document: object, *, where: str = "the lifecycle policy") -> LifecyclePolicy:
    """A policy from its decoded JSON: every field validated (LifecyclePolicyError)."""
    if not isinstance(document, dict):
        raise LifecyclePolicyError(f"{where} is not a JSON object with rules")
    try:
        return LifecyclePolicy.model_validate(document)
    except ValidationError as exc:
        raise LifecyclePolicyError(
            f"{where} is not valid: {_problem(exc)}",
            hint="see https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html",
        ) from None


def parse_policy(text: str | bytes, *, where: str = "the lifecycle policy") -> LifecyclePolicy:
    """A policy from its JSON text (lifecyclePolicyText), bounded to ECR's own size limit,
    duplicate keys refused (two readers would see two policies)."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_POLICY_BYTES:
        raise LifecyclePolicyError(f"{where} is {size} bytes, more than ECR's {MAX_POLICY_BYTES}")
    try:
        document = json_without_duplicate_keys(text)
    except (ValueError, UnicodeDecodeError) as exc:
        why = "a key occurs twice in one object" if "twice" in str(exc) else "not JSON"
        raise LifecyclePolicyError(f"{where} is not valid: {why}") from None
    return parse_policy_document(document, where=where)


# --- the short form -------------------------------------------------------------------


class ShortForm(_Strict):
    """``keep_untagged_days: N`` and/or ``keep_last_tags: N`` (e.g. from a YAML file)."""

    keep_untagged_days: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    keep_last_tags: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None

    @model_validator(mode="after")
    def _something(self) -> ShortForm:
        if self.keep_untagged_days is None and self.keep_last_tags is None:
            raise ValueError("name keep_untagged_days, keep_last_tags or both")
        return self


def expand_short_form(short: Mapping[str, Any]) -> dict[str, Any]:
    """ECR's JSON for the short form: untagged images pushed more than
    ``keep_untagged_days`` days ago expire (rule 1); of the tagged images, the newest
    ``keep_last_tags`` by push time stay and the rest expire (rule 2, ``tagPatternList``
    ``["*"]``: every tagged image and no untagged one, unlike tagStatus any, which would
    let untagged images take places among the N). The result parses with parse_policy."""
    try:
        form = ShortForm.model_validate(dict(short))
    except ValidationError as exc:
        raise LifecyclePolicyError(f"the lifecycle short form is not valid: {_problem(exc)}") from None
    rules: list[dict[str, Any]] = []
    if form.keep_untagged_days is not None:
        rules.append(
            {
                "rulePriority": len(rules) + 1,
                "description": f"expire untagged images pushed more than {form.keep_untagged_days} days ago",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": form.keep_untagged_days,
                },
                "action": {"type": "expire"},
            }
        )
    if form.keep_last_tags is not None:
        rules.append(
            {
                "rulePriority": len(rules) + 1,
                "description": f"keep the newest {form.keep_last_tags} tagged images",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": ["*"],
                    "countType": "imageCountMoreThan",
                    "countNumber": form.keep_last_tags,
                },
                "action": {"type": "expire"},
            }
        )
    document = {"rules": rules}
    parse_policy(json.dumps(document))  # what is handed out is a policy cloudops itself accepts
    return document


# --- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One image of a repository as DescribeImages lists it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime


@dataclass(frozen=True)
class Expiry:
    """An image the policy would expire, and the one rule that expires it."""

    image: Image
    rule_priority: int
    rule_description: str | None

    @property
    def rule_label(self) -> str:
        return f"rule {self.rule_priority}" + (f" ({self.rule_description})" if self.rule_description else "")


def _marked(rule: Rule, selected: Sequence[Image], now: datetime) -> list[Image]:
    """The images a rule would mark among those it selects, before priorities apply."""
    selection = rule.selection
    if selection.countType == "imageCountMoreThan":
        # "images are sorted from youngest to oldest based on pushed_at_time and then all
        # images greater than the specified count are expired". Equal push times are
        # ordered by digest, so the answer never depends on the listing order.
        youngest_first = sorted(selected, key=lambda i: (i.pushed_at, i.digest), reverse=True)
        return youngest_first[selection.countNumber :]
    # sinceImagePushed: "all images whose pushed_at_time is older than the specified number
    # of days" (strictly older: Examples, "Filtering on all images", Example B, rule 2 leaves
    # the image pushed 1 day ago with countNumber 1).
    limit = timedelta(days=selection.countNumber)
    return [i for i in selected if now - i.pushed_at > limit]


def evaluate(policy: LifecyclePolicy, images: Iterable[Image], now: datetime) -> list[Expiry]:
    """What ``policy`` would expire of ``images`` at ``now`` (timezone-aware), oldest first.

    As documented ("Lifecycle policy evaluation rules"): all rules are evaluated at the
    same time, each over every image it selects (so a count includes images a higher
    priority rule selected: "can still identify them as if they haven't been expired"),
    then applied by rulePriority, lowest first; an image is expired by exactly one or zero
    rules, and an image that matches the tagging requirements of a rule cannot be expired by
    a rule with a lower priority (Examples, "Filtering on multiple rules", Example A: rule 2
    marks image B, which rule 1 selected, and B stays)."""
    listed = {i.digest: i for i in images}  # one entry per digest, whatever the listing repeats
    claimed: set[str] = set()
    expired: list[Expiry] = []
    for rule in policy.ordered():
        selected = [i for i in listed.values() if rule.selects(i)]
        for image in _marked(rule, selected, now):
            if image.digest not in claimed:
                expired.append(Expiry(image, rule.rulePriority, rule.description))
        claimed.update(i.digest for i in selected)
    return sorted(expired, key=lambda e: (e.image.pushed_at, e.image.digest))


__all__ = [
    "MAX_POLICY_BYTES",
    "MAX_RULES",
    "Expiry",
    "Image",
    "LifecyclePolicy",
    "LifecyclePolicyError",
    "Rule",
    "Selection",
    "evaluate",
    "expand_short_form",
    "parse_policy",
    "parse_policy_document",
    "wildcard_match",
]
