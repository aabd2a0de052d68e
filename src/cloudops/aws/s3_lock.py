"""A lease lock on an S3 key, so two runs never upload the same object at once (the second
is refused, exit 3), while a lock left by a killed run is taken over.

The lock is an object written with If-None-Match: * (S3's conditional write: exactly one
writer creates it). A lock is stale when its holder's process is gone (same host) or its
lease has run out (another host); a stale lock is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from types import TracebackType
from typing import Any

import botocore.exceptions

from cloudops.errors import CloudopsError, RefusedError

LEASE_SECONDS = 30 * 60


class TransferInProgressError(RefusedError):
    """Another run is writing the same object right now."""


class KeyLock:
    def __init__(self, client: Any, bucket: str, key: str, *, what: str, lease: float = LEASE_SECONDS):
        self._client, self._bucket, self._key = client, bucket, key
        self._what = what
        self._lease = lease
        self._token = uuid.uuid4().hex
        self._held = False

    def _holder(self) -> dict[str, Any] | None:
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=self._key)["Body"].read()
            doc = json.loads(body)
            return doc if isinstance(doc, dict) else {}
        except botocore.exceptions.ClientError:
            return None
        except ValueError:
            return {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        if time.time() - float(holder.get("started", 0)) > self._lease:
            return True
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder.get("pid", 0)), 0)
            except (ProcessLookupError, ValueError):
                return True
            except PermissionError:
                return False
        return False

    def _try_create(self) -> bool:
        body = json.dumps(
            {"token": self._token, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        ).encode()
        try:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=body, IfNoneMatch="*")
            return True
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in (
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
            ):
                return False
            raise CloudopsError(
                f"cannot take the lock for {self._what}: {exc.response.get('Error', {}).get('Code')}"
            ) from None

    def acquire(self) -> None:
        for _ in range(2):
            if self._try_create():
                self._held = True
                return
            holder = self._holder()
            if holder is None:
                continue  # released meanwhile: try again
            if not self._stale(holder):
                raise TransferInProgressError(
                    f"another run is already writing {self._what} "
                    f"(host {holder.get('host')}, pid {holder.get('pid')})",
                    hint="wait for it to finish, then run again: the result will be 'already there'",
                )
            self._client.delete_object(Bucket=self._bucket, Key=self._key)
        raise TransferInProgressError(f"could not take the lock for {self._what}", hint="run again")

    def release(self) -> None:
        if self._held:
            holder = self._holder()
            if holder is not None and holder.get("token") == self._token:
                self._client.delete_object(Bucket=self._bucket, Key=self._key)
            self._held = False

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # If the release fails, the lease runs out on its own.
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            self.release()
