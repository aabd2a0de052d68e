"""S3 in one account: the account's bucket (versioned, encrypted, private) and its
append-only objects (never overwritten: the promotion log's records and daily objects).

The keys are the caller's: the log's layout (``cloudops/history/...``) is defined by
pipeline/records.py, a higher layer this one never imports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import botocore.exceptions

from cloudops.aws import s3_owner
from cloudops.aws.sessions import AccountSession, aws_error
from cloudops.errors import CloudopsError

BucketChange = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class StoredRecord:
    """One object of the promotion log as S3 lists it (key and size), not yet read."""

    key: str
    size: int
    etag: str = ""
    """As S3 lists it, quotes removed (the MD5 of the content for a single PUT)."""


class AccountBucket:
    def __init__(self, session: AccountSession, bucket: str):
        self.session = session
        self.name = bucket
        self._client: Any = session.client("s3")

    @property
    def client(self) -> Any:
        return self._client

    def exists(self) -> bool:
        """True when the bucket exists and is the account's, False when it does not exist;
        a bucket that another account owns is refused (s3_owner.BucketOwnerError, exit 3)."""
        try:
            return s3_owner.check_owner(self._client, self.session.owned_buckets, self.name)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"checking bucket {self.name}") from None

    def ensure(self, *, dry_run: bool) -> tuple[BucketChange, list[str]]:
        """Versioning on, default encryption, public access blocked. Idempotent:
        returns what changed (or would change, with dry_run)."""
        changes: list[str] = []
        try:
            if not self.exists():
                changes.append("create bucket")
                if not dry_run:
                    params: dict[str, Any] = {"Bucket": self.name}
                    if self.session.account.region != "us-east-1":
                        params["CreateBucketConfiguration"] = {
                            "LocationConstraint": self.session.account.region
                        }
                    self._client.create_bucket(**params)
                created = True
            else:
                created = False
            if created or self._client.get_bucket_versioning(Bucket=self.name).get("Status") != "Enabled":
                changes.append("enable versioning")
                if not dry_run:
                    self._client.put_bucket_versioning(
                        Bucket=self.name, VersioningConfiguration={"Status": "Enabled"}
                    )
            if created or not self._has_encryption():
                changes.append("enable default encryption")
                if not dry_run:
                    self._client.put_bucket_encryption(
                        Bucket=self.name,
                        ServerSideEncryptionConfiguration={
                            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                        },
                    )
            if created or not self._public_access_blocked():
                changes.append("block public access")
                if not dry_run:
                    self._client.put_public_access_block(
                        Bucket=self.name,
                        PublicAccessBlockConfiguration={
                            "BlockPublicAcls": True,
                            "IgnorePublicAcls": True,
                            "BlockPublicPolicy": True,
                            "RestrictPublicBuckets": True,
                        },
                    )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"configuring bucket {self.name} in {self.session.name!r}") from None
        if not changes:
            return "unchanged", changes
        return ("created" if "create bucket" in changes else "updated"), changes

    def _has_encryption(self) -> bool:
        try:
            rules = self._client.get_bucket_encryption(Bucket=self.name)["ServerSideEncryptionConfiguration"][
                "Rules"
            ]
            return bool(rules)
        except botocore.exceptions.ClientError:
            return False

    def _public_access_blocked(self) -> bool:
        try:
            config = self._client.get_public_access_block(Bucket=self.name)["PublicAccessBlockConfiguration"]
        except botocore.exceptions.ClientError:
            return False
        return all(
            config.get(k)
            for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        )

    # -- the promotion log -------------------------------------------------------------

    def append_record(self, key: str, record: dict[str, Any]) -> None:
        """Write one record under a new (full) key. IfNoneMatch makes S3 refuse to
        overwrite an existing object, so the log is append-only even against a buggy caller."""
        body = json.dumps(record, sort_keys=True).encode()
        try:
            self._client.put_object(
                Bucket=self.name,
                Key=key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
                ExpectedBucketOwner=self.session.account.account_id,
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"writing the promotion record to bucket {self.name}") from None

    def put_json(self, key: str, document: dict[str, Any], *, what: str, only_new: bool = False) -> bytes:
        """Write one small JSON object (sorted keys) and return the bytes written. With
        ``only_new`` S3 refuses to overwrite an existing object (IfNoneMatch): an object
        already under the key is an error, never replaced."""
        body = json.dumps(document, sort_keys=True).encode()
        params: dict[str, Any] = {
            "Bucket": self.name,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
            "ExpectedBucketOwner": self.session.account.account_id,
        }
        if only_new:
            params["IfNoneMatch"] = "*"
        try:
            self._client.put_object(**params)
        except botocore.exceptions.ClientError as exc:
            if only_new and str(exc.response.get("Error", {}).get("Code")) in ("PreconditionFailed", "412"):
                raise CloudopsError(
                    f"{what}: s3://{self.name}/{key} exists already and is never overwritten",
                    hint="run again: a new object is written under a new key",
                ) from None
            raise aws_error(exc, f"{what} (s3://{self.name}/{key})") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"{what} (s3://{self.name}/{key})") from None
        return body

    def list_records(self, *, prefix: str, start_after: str = "") -> list[StoredRecord]:
        """Every object under ``prefix`` (after ``start_after``), with the size and ETag S3
        lists for it (nothing is read: the caller decides what is worth a GET)."""
        found: list[StoredRecord] = []
        what = f"listing the promotion log of bucket {self.name}"
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            params: dict[str, Any] = {
                "Bucket": self.name,
                "Prefix": prefix,
                "ExpectedBucketOwner": self.session.account.account_id,
            }
            if start_after:
                params["StartAfter"] = start_after
            for page in paginator.paginate(**params):
                for item in page.get("Contents", []):
                    etag = str(item.get("ETag", "")).strip('"')
                    found.append(StoredRecord(str(item["Key"]), int(item.get("Size", 0)), etag))
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchBucket", "404"):
                return []
            raise aws_error(exc, what) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, what) from None
        return found

    def read_record(self, key: str, max_bytes: int) -> bytes:
        """At most ``max_bytes + 1`` bytes of one history object (a Range GET, and the
        body read no further), so an object that grew past the bound after it was listed
        is still never read whole: more than ``max_bytes`` back means "too large"."""
        return b"".join(self.stream_history_object(key, max_bytes, chunk=max_bytes + 1))

    def stream_history_object(self, key: str, max_bytes: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """One history object in chunks, at most ``max_bytes + 1`` bytes in all (a Range
        GET, the body read no further): more than ``max_bytes`` means "too large"."""
        what = f"reading {key} from bucket {self.name}"
        try:
            answer = self._client.get_object(
                Bucket=self.name,
                Key=key,
                Range=f"bytes=0-{max_bytes}",
                ExpectedBucketOwner=self.session.account.account_id,
            )
            body = answer["Body"]
            try:
                left = max_bytes + 1
                while left > 0:
                    data: bytes = body.read(min(chunk, left))
                    if not data:
                        return
                    left -= len(data)
                    yield data
            finally:
                body.close()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, what) from None

    def put_daily(self, key: str, body: bytes) -> bool:
        """Write one daily history object under a new (full) key. Never overwrites: False
        when the object exists already (another run wrote it)."""
        try:
            self._client.put_object(
                Bucket=self.name,
                Key=key,
                Body=body,
                ContentType="application/x-ndjson",
                IfNoneMatch="*",
                ExpectedBucketOwner=self.session.account.account_id,
            )
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("PreconditionFailed", "412"):
                return False
            raise aws_error(exc, f"writing the daily history object {key} to bucket {self.name}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"writing the daily history object {key} to bucket {self.name}") from None
        return True
