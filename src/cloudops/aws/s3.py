"""S3 in one account: the account's bucket (versioned, encrypted, private) and its
append-only promotion log (one object per record, never overwritten)."""

from __future__ import annotations

import json
from typing import Any, Literal

import botocore.exceptions

from cloudops.aws.sessions import AccountSession, aws_error

BucketChange = Literal["created", "updated", "unchanged"]
HISTORY_PREFIX = "cloudops/history/"


class AccountBucket:
    def __init__(self, session: AccountSession, bucket: str):
        self.session = session
        self.name = bucket
        self._client: Any = session.client("s3")

    @property
    def client(self) -> Any:
        return self._client

    def exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.name, ExpectedBucketOwner=self.session.account.account_id)
            return True
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise aws_error(exc, f"checking bucket {self.name}") from None
        except botocore.exceptions.BotoCoreError as exc:
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
        """Write one record under a new key. IfNoneMatch makes S3 refuse to overwrite an
        existing object, so the log is append-only even against a buggy caller."""
        body = json.dumps(record, sort_keys=True).encode()
        try:
            self._client.put_object(
                Bucket=self.name,
                Key=HISTORY_PREFIX + key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"writing the promotion record to bucket {self.name}") from None

    def read_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.name, Prefix=HISTORY_PREFIX):
                for item in page.get("Contents", []):
                    body = self._client.get_object(Bucket=self.name, Key=item["Key"])["Body"].read()
                    try:
                        record = json.loads(body)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        records.append(record)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchBucket", "404"):
                return []
            raise aws_error(exc, f"reading the promotion log of bucket {self.name}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise aws_error(exc, f"reading the promotion log of bucket {self.name}") from None
        return records
