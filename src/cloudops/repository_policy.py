"""Does an ECR repository policy let another account push? Pure.

Only the destination account writes its ECR (the promotion runs in its own Jenkins, with
its own credentials, and only READS the source). So an Allow statement that gives a push
action to a principal outside the account is a finding. Conditions are not evaluated: a
push grant that holds only under some condition is still a door another account may open.
Service principals (codebuild.amazonaws.com) are not accounts and are left alone.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

PUSH_ACTIONS = (
    "ecr:PutImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:BatchCheckLayerAvailability",
)
_ACCOUNT_IN_PRINCIPAL = re.compile(r"(?:^|:)([0-9]{12})(?::|$)")
ANYONE = "anyone"


@dataclass(frozen=True)
class PushGrant:
    principal: str  # an account id, or "anyone"
    actions: tuple[str, ...]
    sid: str | None


class PolicyError(ValueError):
    """The policy text is not a JSON IAM policy."""


def push_grants(policy_text: str, own_account_id: str) -> list[PushGrant]:
    try:
        policy = json.loads(policy_text)
    except ValueError:
        raise PolicyError("the repository policy is not valid JSON") from None
    if not isinstance(policy, dict):
        raise PolicyError("the repository policy is not a JSON object")
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    grants: list[PushGrant] = []
    for statement in statements if isinstance(statements, list) else []:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = _push_actions(statement)
        if not actions:
            continue
        sid = statement.get("Sid") if isinstance(statement.get("Sid"), str) else None
        for principal in _foreign_principals(statement, own_account_id):
            grants.append(PushGrant(principal, actions, sid))
    return grants


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _matches(pattern: str, action: str) -> bool:
    # IAM action names are case-insensitive; * and ? are their only wildcards.
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _push_actions(statement: dict[str, Any]) -> tuple[str, ...]:
    if "NotAction" in statement:
        # Allow everything except the listed actions: every push action not excluded.
        excluded = _strings(statement["NotAction"])
        return tuple(a for a in PUSH_ACTIONS if not any(_matches(p, a) for p in excluded))
    patterns = _strings(statement.get("Action"))
    return tuple(a for a in PUSH_ACTIONS if any(_matches(p, a) for p in patterns))


def _foreign_principals(statement: dict[str, Any], own: str) -> list[str]:
    if "NotPrincipal" in statement:
        return [ANYONE]  # everyone but a few: that includes other accounts
    principal = statement.get("Principal")
    if principal == "*":
        return [ANYONE]
    if not isinstance(principal, dict):
        return []
    found: list[str] = []
    for value in _strings(principal.get("AWS")):
        if value == "*":
            found.append(ANYONE)
            continue
        match = _ACCOUNT_IN_PRINCIPAL.search(value)
        if match is None:
            found.append(value)  # not an ARN or id we can read: not provably ours
        elif match.group(1) != own:
            found.append(match.group(1))
    return sorted(set(found))
