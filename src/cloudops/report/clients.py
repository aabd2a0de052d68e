"""AWS clients for reading many accounts at once, made from ONE botocore session.

A botocore session parses its JSON data (endpoints, partitions, each service model and
rule set: megabytes) once per session. AccountSession has one boto3 session per account,
so reading four accounts parsed that data four times over, and profiling `status` showed
this CPU work costing more than all of its API calls together. Here every client comes
from one shared botocore session, with the account's own credentials passed explicitly
to each client (nothing is set on the shared session, so accounts cannot mix).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import botocore.session

from cloudops.aws.sessions import BOTO_CONFIG, AccountSession


class SharedClients:
    def __init__(self) -> None:
        self._session = botocore.session.get_session()
        # botocore's create_client is not thread-safe; making clients is CPU work anyway.
        self._lock = threading.Lock()

    def read_session(self, session: AccountSession) -> ReadSession:
        """The same account and credentials, its clients made here."""
        credentials = session.session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        return ReadSession(session.name, session.account, session.session, session.endpoint_url, self, frozen)

    def client(self, service: str, session: ReadSession) -> Any:
        keys: dict[str, Any] = {}
        if session.frozen is not None:
            keys = {
                "aws_access_key_id": session.frozen.access_key,
                "aws_secret_access_key": session.frozen.secret_key,
                "aws_session_token": session.frozen.token,
            }
        with self._lock:
            return self._session.create_client(
                service,
                region_name=session.account.region,
                endpoint_url=session.endpoint_url,
                config=BOTO_CONFIG,
                **keys,
            )


@dataclass(frozen=True)
class ReadSession(AccountSession):
    """An AccountSession whose clients come from SharedClients. Without credentials
    (none found) the shared session's default chain answers, and fails as it would."""

    shared: SharedClients | None = field(default=None, repr=False)
    frozen: Any = field(default=None, repr=False)

    def client(self, service: str) -> Any:
        if self.shared is None:
            return super().client(service)
        return self.shared.client(service, self)
