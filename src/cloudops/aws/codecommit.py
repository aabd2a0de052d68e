"""CodeCommit in one account: does a source repository exist here? Each source repository
(cloudcore-for-aws, docker, ...) must exist in one account only; the audit asks every
account by name. By name, because ListRepositories is not implemented by moto (the
sandbox) and a name is all the audit needs."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from cloudops.aws.sessions import AccountSession, aws_error

_NOT_FOUND = ("RepositoryDoesNotExistException", "RepositoryNotFoundException")


class CodeCommitRepositories:
    def __init__(self, session: AccountSession):
        self._session = session
        self._client: Any = session.client("codecommit")

    def exists(self, name: str) -> bool:
        try:
            self._client.get_repository(repositoryName=name)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return False
            raise aws_error(
                exc, f"looking up CodeCommit repository {name} in {self._session.name!r}"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(
                exc, f"looking up CodeCommit repository {name} in {self._session.name!r}"
            ) from None
        return True

    def create(self, name: str, description: str = "") -> bool:
        """Create ``name`` unless it exists; True when it was created."""
        if self.exists(name):
            return False
        try:
            self._client.create_repository(repositoryName=name, repositoryDescription=description)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"creating CodeCommit repository {name} in {self._session.name!r}") from None
        return True

    def delete(self, name: str) -> bool:
        """Delete ``name`` if it exists; True when it was deleted."""
        if not self.exists(name):
            return False
        try:
            self._client.delete_repository(repositoryName=name)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"deleting CodeCommit repository {name} in {self._session.name!r}") from None
        return True
