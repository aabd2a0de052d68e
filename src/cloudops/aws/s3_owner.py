"""Every S3 call made with an account's credentials is checked against that account:
S3's bucket owner condition, applied in ONE place for every caller (history, locks,
package objects, current.json, multipart uploads, the audit, code not written yet).

An account's credentials only ever touch that account's own bucket (a source bucket is
read with the source account's credentials), so each S3 client an AccountSession makes:

1. passes ``ExpectedBucketOwner=<the account id>`` on every operation that addresses a
   bucket and has that parameter (reads too; CreateBucket and ListBuckets have none).
   S3 then answers 403 AccessDenied instead of reading or writing a bucket that another
   account owns (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html);
2. before the first call on a bucket in a run, asks once, with HeadBucket, whether the
   bucket is the account's, so that a foreign bucket is a guard refusal (exit 3) that names
   the bucket, the account and the fix, before anything is read or written.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import botocore.exceptions

from cloudops.errors import RefusedError

OWNER_PARAM = "ExpectedBucketOwner"
_DENIED = {"403", "AccessDenied", "Forbidden"}
_MISSING = {"404", "NoSuchBucket", "NotFound"}


class BucketOwnerError(RefusedError):
    """A bucket that does not belong to the account whose credentials would use it."""


class OwnedBuckets:
    """The buckets proven to belong to one account during this run (one per session)."""

    def __init__(self, name: str, account_id: str):
        self.name = name
        self.account_id = account_id
        self._proven: set[str] = set()
        self._lock = threading.Lock()

    def proven(self, bucket: str) -> bool:
        with self._lock:
            return bucket in self._proven

    def prove(self, bucket: str) -> None:
        with self._lock:
            self._proven.add(bucket)

    def refusal(self, bucket: str, what: str = "") -> BucketOwnerError:
        doing = f" ({what})" if what else ""
        return BucketOwnerError(
            f"refusing to use bucket {bucket} for account {self.name!r}{doing}: it is not owned by "
            f"{self.account_id} (S3 answered 403 to a request with ExpectedBucketOwner={self.account_id}); "
            "nothing was read or written",
            hint=f"set accounts.{self.name}.bucket in pipeline.yaml to a bucket of account "
            f"{self.account_id} (default ep-cloudops-{self.account_id}); if it is {self.name}'s own "
            f"bucket, let {self.name}'s credentials call s3:ListBucket on it",
        )


def check_owner(client: Any, buckets: OwnedBuckets, bucket: str) -> bool:
    """HeadBucket with the owner condition: True when the bucket is the account's, False
    when it does not exist; a bucket of another account raises BucketOwnerError. Other
    failures raise botocore's own error, as the caller's call would have."""
    if buckets.proven(bucket):
        return True
    try:
        client.head_bucket(Bucket=bucket, ExpectedBucketOwner=buckets.account_id)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in _MISSING:
            return False
        if code in _DENIED:
            raise buckets.refusal(bucket) from None
        raise
    buckets.prove(bucket)
    return True


def install(client: Any, buckets: OwnedBuckets) -> Any:
    """Make an S3 client of the account enforce (1) and (2) above. Returns the client."""
    events = client.meta.events
    ref = weakref.ref(client)  # no cycle client -> handler -> client

    def add_owner(params: dict[str, Any], model: Any, **_: Any) -> None:
        if params.get("Bucket") and OWNER_PARAM in model.input_shape.members:
            params.setdefault(OWNER_PARAM, buckets.account_id)

    def first_touch(params: dict[str, Any], model: Any, **_: Any) -> None:
        # HeadBucket is the check itself (and callers of head_bucket handle its answer).
        if model.name in ("HeadBucket", "CreateBucket"):
            return
        bucket = params.get("Bucket")
        owned = ref()
        if not bucket or owned is None or buckets.proven(str(bucket)):
            return
        check_owner(owned, buckets, str(bucket))

    # before-parameter-build sees the caller's own parameters (every page of a paginator
    # too), before botocore validates and serializes them: both steps hook in there.
    events.register("before-parameter-build.s3", add_owner, unique_id=f"cloudops-owner-{id(client)}")
    events.register("before-parameter-build.s3", first_touch, unique_id=f"cloudops-first-touch-{id(client)}")
    return client
