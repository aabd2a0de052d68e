"""ECR's control plane: authorization tokens for the registry client, and repositories.

The token provider is a registry Keychain handed to the registry layer from outside (the
registry layer never imports aws). Tokens are cached per registry host (one per account
and region) and refreshed ten minutes before they expire; an expired-token 403 from the
registry invalidates the cache (ECR-NOTES.md).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import botocore.exceptions

from cloudops.aws.sessions import AccountSession, aws_error
from cloudops.errors import InputError
from cloudops.registry.auth import Credentials

REFRESH_MARGIN = 600.0


class EcrTokenKeychain:
    """Registry host -> ECR token of the account that owns it."""

    def __init__(self, sessions_by_host: dict[str, AccountSession]):
        self._sessions = dict(sessions_by_host)
        self._cache: dict[str, tuple[Credentials, float]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def resolve(self, host: str) -> Credentials | None:
        session = self._sessions.get(host)
        if session is None:
            return None
        with self._lock:
            cached = self._cache.get(host)
            if cached is not None and cached[1] - REFRESH_MARGIN > time.time():
                return cached[0]
            credentials, expires = _fetch_token(session)
            self.fetches += 1
            self._cache[host] = (credentials, expires)
            return credentials

    def invalidate(self, host: str) -> None:
        with self._lock:
            self._cache.pop(host, None)


def _fetch_token(session: AccountSession) -> tuple[Credentials, float]:
    try:
        answer = session.client("ecr").get_authorization_token(registryIds=[session.account.account_id])
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"getting an ECR token for account {session.name!r}") from None
    data = answer["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    expires_at = data.get("expiresAt")
    expires = expires_at.timestamp() if isinstance(expires_at, datetime) else 0.0
    if expires <= time.time():
        # A fresh token cannot have expired already; moto answers a fixed 2015 date. Assume
        # ECR's documented 12 hours; an early expiry still arrives as a 403 and refreshes.
        expires = time.time() + 12 * 3600
    return Credentials(user, password), expires


RepositoryChange = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class RepositoryState:
    name: str
    exists: bool
    immutable: bool = False
    scan_on_push: bool = False


class EcrRepositories:
    """Repository management in one account (its own ECR only)."""

    def __init__(self, session: AccountSession):
        self._session = session
        self._client: Any = session.client("ecr")

    def describe(self, names: list[str]) -> dict[str, RepositoryState]:
        found: dict[str, RepositoryState] = {n: RepositoryState(n, False) for n in names}
        for name in names:
            try:
                answer = self._client.describe_repositories(
                    registryId=self._session.account.account_id, repositoryNames=[name]
                )
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
                    continue
                raise aws_error(exc, f"describing ECR repository {name} in {self._session.name!r}") from None
            except botocore.exceptions.BotoCoreError as exc:
                raise aws_error(exc, f"describing ECR repository {name}") from None
            repo = answer["repositories"][0]
            found[name] = RepositoryState(
                name,
                True,
                repo.get("imageTagMutability") == "IMMUTABLE",
                bool(repo.get("imageScanningConfiguration", {}).get("scanOnPush")),
            )
        return found

    def require(self, name: str) -> RepositoryState:
        state = self.describe([name])[name]
        if not state.exists:
            raise InputError(
                f"ECR repository {name} does not exist in account {self._session.name!r} "
                f"({self._session.account.account_id})",
                hint=f"run `cloudops init {self._session.name}` to create the account's repositories",
            )
        return state

    def ensure(self, state: RepositoryState, *, dry_run: bool) -> RepositoryChange:
        """Tag immutability on, scan on push on. Idempotent."""
        try:
            if not state.exists:
                if not dry_run:
                    self._client.create_repository(
                        repositoryName=state.name,
                        imageTagMutability="IMMUTABLE",
                        imageScanningConfiguration={"scanOnPush": True},
                        encryptionConfiguration={"encryptionType": "AES256"},
                    )
                return "created"
            change: RepositoryChange = "unchanged"
            if not state.immutable:
                if not dry_run:
                    self._client.put_image_tag_mutability(
                        repositoryName=state.name, imageTagMutability="IMMUTABLE"
                    )
                change = "updated"
            if not state.scan_on_push:
                if not dry_run:
                    self._client.put_image_scanning_configuration(
                        repositoryName=state.name, imageScanningConfiguration={"scanOnPush": True}
                    )
                change = "updated"
            return change
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(
                exc, f"configuring ECR repository {state.name} in {self._session.name!r}"
            ) from None
