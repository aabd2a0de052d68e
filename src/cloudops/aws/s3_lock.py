"""A lease lock on an S3 key, so two runs never upload the same object at once (the second
is refused, exit 3), while a lock left by a killed run is taken over.

The lock is an object written with If-None-Match: * (S3's conditional write: exactly one
writer creates it). A lock is stale when its holder's process is gone (same host) or its
lease has run out (another host); a stale lock is replaced.

The lock object is hostile input like everything read from a bucket: it is read bounded
and validated (aws/s3_json.py, :class:`LockHolder`). A lock whose holder is invalid (too
large, not JSON, fields missing or absurd) is still a lock: it is never taken over on
what it claims, only once S3's own LastModified of the object is older than the lease
(then it is stale like any other). Until then the run is refused (exit 3), naming why.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Annotated, Any

import botocore.exceptions
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from cloudops.aws.s3_json import JsonObject, read_json_object
from cloudops.errors import CloudopsError, RefusedError

LEASE_SECONDS = 30 * 60
MAX_PID = 2**22
"""Linux's pid_max ceiling: a pid past it (or 0, or negative: a process group, every
process) is not a process, and never reaches os.kill."""


class LockHolder(BaseModel):
    """The lock object as :meth:`KeyLock._try_create` writes it."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    token: Annotated[str, StringConstraints(max_length=64)] = ""
    host: Annotated[str, StringConstraints(max_length=255)] = ""
    pid: Annotated[StrictInt, Field(ge=1, le=MAX_PID)]
    started: Annotated[float, Field(ge=0, strict=True)]


class TransferInProgressError(RefusedError):
    """Another run is writing the same object right now."""


def _timestamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class KeyLock:
    def __init__(self, client: Any, bucket: str, key: str, *, what: str, lease: float = LEASE_SECONDS):
        self._client, self._bucket, self._key = client, bucket, key
        self._what = what
        self._lease = lease
        self._token = uuid.uuid4().hex
        self._held = False

    def _holder(self) -> JsonObject[LockHolder] | None:
        """The lock object (valid or not), or None when there is none (released)."""
        try:
            return read_json_object(self._client, self._bucket, self._key, LockHolder)
        except botocore.exceptions.ClientError:
            return None

    def _stale(self, found: JsonObject[LockHolder]) -> bool:
        holder = found.value
        written = _timestamp(found.last_modified)
        if holder is None:
            # What it claims cannot be read: only S3's own clock can make it stale.
            return written is not None and time.time() - written > self._lease
        # The lease runs from when it was written: a claimed start later than S3's own
        # LastModified does not extend it.
        started = holder.started if written is None else min(holder.started, written)
        if time.time() - started > self._lease:
            return True
        if holder.host == socket.gethostname():
            try:
                os.kill(holder.pid, 0)
            except (ProcessLookupError, ValueError, OverflowError):
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
                if holder.value is None:
                    raise TransferInProgressError(
                        f"the lock for {self._what} (s3://{self._bucket}/{self._key}) is held by an "
                        f"invalid holder ({holder.problem}); it is not taken over before its lease of "
                        f"{self._lease / 60:g} minutes has run out since S3 last wrote it",
                        hint="wait for the lease to run out, or delete the lock object if no run is writing",
                    )
                raise TransferInProgressError(
                    f"another run is already writing {self._what} "
                    f"(host {holder.value.host!r}, pid {holder.value.pid})",
                    hint="wait for it to finish, then run again: the result will be 'already there'",
                )
            self._client.delete_object(Bucket=self._bucket, Key=self._key)
        raise TransferInProgressError(f"could not take the lock for {self._what}", hint="run again")

    def release(self) -> None:
        if self._held:
            holder = self._holder()
            if holder is not None and holder.value is not None and holder.value.token == self._token:
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
