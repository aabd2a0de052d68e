"""The account guard: before any write, prove whose credentials these are.

STS GetCallerIdentity must name the account being written, and the registry host must
belong to it; otherwise the operation is refused (exit 3) with the account the
credentials really belong to. This is what stops a prod job from writing with QA's keys.
"""

from __future__ import annotations

import botocore.exceptions

from cloudops.aws.sessions import AccountSession, aws_error
from cloudops.errors import RefusedError
from cloudops.refs import parse_ecr_host


class AccountMismatchError(RefusedError):
    """Credentials or a registry host that belong to another account."""


def caller_account(session: AccountSession) -> tuple[str, str]:
    """(account id, ARN) the session's credentials act as: asked of STS once per session
    (its credentials never change), so a release guards each account once however many
    parts it has."""
    if session.identity:
        return session.identity[0]
    try:
        identity = session.client("sts").get_caller_identity()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"checking the identity of account {session.name!r}'s credentials") from None
    found = str(identity["Account"]), str(identity["Arn"])
    session.identity[:] = [found]
    return found


def require_account(session: AccountSession, *, purpose: str) -> str:
    """Refuse unless the credentials act in the session's own account. Returns the ARN."""
    actual, arn = caller_account(session)
    expected = session.account.account_id
    if actual != expected:
        raise AccountMismatchError(
            f"refusing to {purpose}: the credentials for account {session.name!r} ({expected}) "
            f"belong to account {actual}",
            hint=f"use credentials of account {expected} for {session.name!r}",
        )
    return arn


def require_registry_of(host: str, session: AccountSession, *, mapped: bool) -> None:
    """An ECR host must carry the account's id and region. A host the pipeline maps to
    the account explicitly (``mapped``; the sandbox's endpoints) is trusted as given."""
    ecr = parse_ecr_host(host)
    if ecr is None:
        if mapped:
            return
        raise AccountMismatchError(
            f"registry {host} is not an ECR registry of account {session.name!r}",
            hint="map it in pipeline.yaml endpoints.registries if it really belongs to this account",
        )
    if ecr.account_id != session.account.account_id or ecr.region != session.account.region:
        raise AccountMismatchError(
            f"registry {host} belongs to account {ecr.account_id} ({ecr.region}), "
            f"not to {session.name!r} ({session.account.account_id}, {session.account.region})",
            hint="an account writes only to its own ECR",
        )
