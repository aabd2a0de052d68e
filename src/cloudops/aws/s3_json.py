"""The one reader for the small JSON objects cloudops keeps in an account's bucket
(``current.json``, a transfer lock's holder). Whatever is read from a bucket is hostile
input (docs/security.md), so the object is

* fetched with a Range GET of at most ``max_bytes + 1`` bytes (the body read no
  further): more than ``max_bytes`` back means "too large", refused unread;
* parsed with every error the JSON parser can raise on hostile bytes caught (ValueError,
  UnicodeDecodeError, RecursionError for ``[[[[...``, TypeError);
* validated by the caller's pydantic model (its shape: names, types, lengths).

An invalid object is never raised: the caller gets :class:`JsonObject` with ``value``
None and ``problem`` saying why (never the content: it is hostile text), and decides
what an invalid object means for it. S3 errors (a missing object, a denied read) pass
through to the caller unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import botocore.exceptions
from pydantic import BaseModel, ValidationError

from cloudops.text import json_without_duplicate_keys, plain_text

MAX_JSON_OBJECT_BYTES = 64 * 1024
"""current.json and a lock holder are well under 1 KiB; anything past this is refused."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class JsonObject(Generic[M]):
    """One small JSON object as read from a bucket: its validated ``value``, or None and
    why not (``problem``); S3's LastModified either way (S3's clock, not the object's)."""

    key: str
    value: M | None
    problem: str | None = None
    last_modified: datetime | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


def read_json_object(
    client: Any,
    bucket: str,
    key: str,
    model: type[M],
    *,
    max_bytes: int = MAX_JSON_OBJECT_BYTES,
    expected_owner: str | None = None,
) -> JsonObject[M]:
    """Read and validate one small JSON object. botocore errors (NoSuchKey, AccessDenied,
    ...) pass through; everything wrong with the content is in the result's ``problem``.
    ``expected_owner``: the account id passed as ExpectedBucketOwner (clients made by
    AccountSession add it themselves; a client made elsewhere may not)."""
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes=0-{max_bytes}"}
    if expected_owner is not None:
        params["ExpectedBucketOwner"] = expected_owner
    try:
        answer = client.get_object(**params)
    except botocore.exceptions.ClientError as exc:
        # A Range GET of an empty object is refused with 416: the object is empty.
        if str(exc.response.get("Error", {}).get("Code")) in ("InvalidRange", "416"):
            return JsonObject(key, None, "empty (0 bytes)")
        raise
    last_modified = answer.get("LastModified")
    stamp = last_modified if isinstance(last_modified, datetime) else None
    body = answer["Body"]
    try:
        data: bytes = body.read(max_bytes + 1)
    finally:
        body.close()
    return JsonObject(key, *parse_json_object(data, model, max_bytes=max_bytes), last_modified=stamp)


@dataclass(frozen=True)
class ListedObject(Generic[M]):
    """One object of a listing, read: ``name`` is its key after the prefix, escaped for
    display (a key is hostile text too) and cut to 80 characters."""

    name: str
    found: JsonObject[M]


def read_json_objects(
    client: Any, bucket: str, prefix: str, model: type[M], *, max_keys: int, read_at_most: int
) -> list[ListedObject[M]]:
    """The small JSON objects under ``prefix``: at most ``max_keys`` keys listed, then the
    ``read_at_most`` last by key (newest first where keys start with their time), each
    read and validated as :func:`read_json_object` does. botocore errors pass through."""
    keys: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"MaxItems": max_keys, "PageSize": min(max_keys, 1000)}
    )
    for page in pages:
        keys += [str(entry.get("Key", "")) for entry in page.get("Contents", [])]
    return [
        ListedObject(
            plain_text(key.removeprefix(prefix)[:80] or "?"), read_json_object(client, bucket, key, model)
        )
        for key in sorted(keys, reverse=True)[:read_at_most]
    ]


def parse_json_object(
    data: bytes, model: type[M], *, max_bytes: int = MAX_JSON_OBJECT_BYTES
) -> tuple[M | None, str | None]:
    """The validated model, or None and why the bytes are not one (pure)."""
    if len(data) > max_bytes:
        return None, f"larger than the {max_bytes // 1024} KiB bound (not read further)"
    if not data:
        return None, "empty (0 bytes)"
    try:
        doc = json_without_duplicate_keys(data)
    except RecursionError:
        return None, "not JSON (nested too deeply)"
    except (ValueError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None, "not JSON"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    try:
        return model.model_validate(doc), None
    except (ValidationError, RecursionError, ValueError, TypeError) as exc:
        return None, _why_invalid(exc)


def _why_invalid(exc: Exception) -> str:
    """Which fields are invalid and how, never their values (hostile text)."""
    if not isinstance(exc, ValidationError):
        return "invalid fields"
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "object"
        problems.append(f"{where}: {error['msg']}")
    more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "invalid: " + "; ".join(problems) + more
