"""One account's deployment packages in its own bucket (the store):

    deployment-package/versions/<V>/ext-deployment-package.zip   immutable, per version,
                                                                 metadata: version, sha256
    deployment-package/current.json                              {"version", "sha256", "key"}

for pipeline key ``deployment-package/ext-deployment-package.zip``. Every call goes
through the account's AccountBucket client (ExpectedBucketOwner); current.json is hostile
input when read back (bounded, validated: :class:`InvalidPointerError` otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, BinaryIO

import botocore.exceptions
from pydantic import BaseModel, ConfigDict, StringConstraints

from cloudops.aws.s3 import AccountBucket
from cloudops.aws.s3_json import read_json_object
from cloudops.aws.s3_stream import (
    ResumingReader,
)
from cloudops.aws.sessions import AccountSession, aws_error, object_missing
from cloudops.errors import InputError
from cloudops.package_archive import READ_BLOCK
from cloudops.pipeline.context import PipelineContext


@dataclass(frozen=True)
class StoredPackage:
    version: str
    key: str
    size: int
    sha256: str


class InvalidPointerError(InputError):
    """An account's current.json that is too large, not JSON or not a pointer (hostile
    input: whoever may write the bucket may write it)."""


class CurrentPointer(BaseModel):
    """current.json as :meth:`PackageStore.move_current` writes it; read back bounded."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    sha256: Annotated[str, StringConstraints(pattern=r"^(?:sha256:)?[0-9a-f]{64}$")]
    key: Annotated[str, StringConstraints(max_length=1024)] | None = None
    size: Annotated[str, StringConstraints(max_length=32)] | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class PackageStore:
    """One account's packages in its own bucket."""

    def __init__(self, session: AccountSession, bucket: str, package_key: str):
        self.session = session
        self.bucket = AccountBucket(session, bucket)
        pure = PurePosixPath(package_key)
        self.prefix = str(pure.parent) if str(pure.parent) != "." else ""
        self.filename = pure.name

    @property
    def client(self) -> Any:
        return self.bucket.client

    def version_key(self, version: str) -> str:
        return "/".join(p for p in (self.prefix, "versions", version, self.filename) if p)

    @property
    def pointer_key(self) -> str:
        return "/".join(p for p in (self.prefix, "current.json") if p)

    def stored(self, version: str) -> StoredPackage | None:
        key = self.version_key(version)
        try:
            head = self.client.head_object(Bucket=self.bucket.name, Key=key)
        except botocore.exceptions.ClientError as exc:
            if object_missing(exc):
                return None
            raise aws_error(exc, f"reading s3://{self.bucket.name}/{key}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"reading s3://{self.bucket.name}/{key}") from None
        sha = head.get("Metadata", {}).get("sha256", "")
        return StoredPackage(version, key, int(head["ContentLength"]), sha)

    def current(self) -> dict[str, str] | None:
        """The current pointer (``version``, ``sha256``, ...), or None when there is none.
        Read bounded and validated (aws/s3_json.py): a pointer that is too large, not
        JSON or not a valid pointer raises InvalidPointerError, never a crash."""
        where = f"s3://{self.bucket.name}/{self.pointer_key}"
        try:
            found = read_json_object(self.client, self.bucket.name, self.pointer_key, CurrentPointer)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NoSuchBucket"):
                return None
            raise aws_error(exc, f"reading {where}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"reading {where}") from None
        if found.value is None:
            raise InvalidPointerError(
                f"{where} is not a valid package pointer: {found.problem}",
                hint="move it again: `cloudops promote package --version V` "
                "(`cloudops package publish` in the build account)",
            )
        return found.value.as_dict()

    def versions(self) -> list[StoredPackage]:
        found: list[StoredPackage] = []
        prefix = "/".join(p for p in (self.prefix, "versions") if p) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket.name, Prefix=prefix):
                for item in page.get("Contents", []):
                    parts = item["Key"][len(prefix) :].split("/")
                    if len(parts) == 2 and parts[1] == self.filename:
                        stored = self.stored(parts[0])
                        if stored is not None:
                            found.append(stored)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) == "NoSuchBucket":
                return []
            raise aws_error(exc, f"listing packages in {self.bucket.name}") from None
        return found

    def move_current(self, stored: StoredPackage) -> None:
        doc = {
            "version": stored.version,
            "sha256": stored.sha256,
            "key": stored.key,
            "size": str(stored.size),
        }
        try:
            self.client.put_object(
                Bucket=self.bucket.name,
                Key=self.pointer_key,
                Body=json.dumps(doc).encode(),
                ContentType="application/json",
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"moving the current package pointer in {self.bucket.name}") from None

    def read_back_sha256(self, key: str, out: BinaryIO | None = None) -> tuple[str, int]:
        """The object's SHA-256 and size, read streamed; with ``out``, the bytes are
        written there as they pass (a download verified on the way)."""
        reader = ResumingReader(self.client, self.bucket.name, key)
        hasher = hashlib.sha256()
        size = 0
        try:
            for block in iter(lambda: reader.read(READ_BLOCK * 8), b""):
                hasher.update(block)
                size += len(block)
                if out is not None:
                    out.write(block)
        finally:
            reader.close()
        return hasher.hexdigest(), size

    def delete(self, key: str) -> None:
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            self.client.delete_object(Bucket=self.bucket.name, Key=key)


def store_for(context: PipelineContext, account: str) -> PackageStore:
    return PackageStore(
        context.session(account), context.pipeline.bucket(account), context.pipeline.deployment_package.key
    )
