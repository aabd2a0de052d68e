"""Whether an account's releases/current.json names only content that is all there, read
from the account itself (boto3 on its bucket and its ECR, HTTP on its registry), never
through cloudops' own readers: the promise current.json makes (docs/releases.md).

The content of a release named by current.json is all there when, for each of its images,
the account's ECR (describe_images) and its registry (the manifest GET, every blob it names
present) give the tag the digest current.json lists, and for its package, the version's
object is in the bucket, its bytes hash to the sha256 current.json lists (and its recorded
sha256 says so too), and deployment-package/current.json points at that version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import botocore.exceptions
import httpx
from pydantic import ValidationError

from cloudops.package_store import store_for as package_store_for
from cloudops.pipeline.context import PipelineContext
from cloudops.release_current import CURRENT_KEY, CurrentRelease
from tests.support.sandbox import ecr_tags, registry_digest


def _get(s3: Any, bucket: str, key: str) -> tuple[bytes, dict[str, str]] | None:
    """(body, metadata) of the object, None when there is none."""
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
            return None
        raise
    return answer["Body"].read(), dict(answer.get("Metadata", {}))


def current_release_is_whole(
    ctx: PipelineContext, account: str, *, in_flight: str | None = None
) -> list[str]:
    """What is wrong with the release ``account``'s releases/current.json names: [] when
    there is none, or when every image tag and the package it lists are there as listed.
    ``ctx`` must reach the account directly (not through a fault proxy). ``in_flight``: the
    package version of a release whose run was killed: the package pointer may already
    name it (it moves just before current.json does; a re-run completes the release)."""
    s3 = ctx.session(account).client("s3")
    bucket = ctx.pipeline.bucket(account)
    found = _get(s3, bucket, CURRENT_KEY)
    if found is None:
        return []
    try:
        current = CurrentRelease.model_validate(json.loads(found[0]))
    except (ValueError, ValidationError) as error:  # JSONDecodeError is a ValueError
        return [f"{account}: {CURRENT_KEY} is not a current release: {str(error)[:200]}"]
    named = f"{account}: current.json names release {current.release} (plan {current.short_hash})"
    problems: list[str] = []
    account_id = ctx.pipeline.account(account).account_id
    if (current.account, current.account_id) != (account, account_id):
        problems.append(f"{named} of account {current.account} ({current.account_id})")

    tags: dict[str, dict[str, str]] = {}
    for image in current.images:
        ref = f"{image.repository}:{image.tag}"
        if image.repository not in tags:
            tags[image.repository] = ecr_tags(ctx, account, image.repository)
        in_ecr = tags[image.repository].get(image.tag)
        if in_ecr != image.digest:
            problems.append(f"{named}, {ref} {image.digest[:19]}, but ECR has {in_ecr or 'no such tag'}")
        try:
            served = registry_digest(ctx, account, image.repository, image.tag)
        except (AssertionError, httpx.HTTPError, ValueError) as error:
            problems.append(f"{named}, {ref}, but the registry cannot serve it whole: {error!r}"[:400])
            continue
        if served != image.digest:
            problems.append(
                f"{named}, {ref} {image.digest[:19]}, but the registry serves {served or 'nothing'}"
            )

    if current.package is not None:
        version, sha = current.package.version, current.package.sha256
        store = package_store_for(ctx, account)
        stored = _get(s3, bucket, store.version_key(version))
        if stored is None:
            problems.append(f"{named}, package {version}, but {store.version_key(version)} is not there")
        else:
            body, metadata = stored
            actual = hashlib.sha256(body).hexdigest()
            if actual != sha:
                problems.append(
                    f"{named}, package {version} sha256 {sha[:16]}, but its bytes hash to {actual[:16]}"
                )
            if metadata.get("sha256") != sha:
                problems.append(
                    f"{named}, package {version} sha256 {sha[:16]}, but its recorded sha256 is "
                    f"{metadata.get('sha256')!r}"
                )
        pointer_found = _get(s3, bucket, store.pointer_key)
        try:
            pointer = json.loads(pointer_found[0]) if pointer_found is not None else None
        except ValueError:
            pointer = "not JSON"
        if isinstance(pointer, dict) and in_flight is not None and pointer.get("version") == in_flight:
            pass  # killed between moving the pointer and current.json: mid-release, not lost
        elif not isinstance(pointer, dict) or (
            pointer.get("version"),
            str(pointer.get("sha256")).removeprefix("sha256:"),
        ) != (version, sha):
            shown = (
                {k: pointer.get(k) for k in ("version", "sha256")} if isinstance(pointer, dict) else pointer
            )
            problems.append(f"{named}, package {version}, but {store.pointer_key} points at {shown}")
        elif pointer.get("key") != store.version_key(version):
            problems.append(f"{named}, but {store.pointer_key} names key {pointer.get('key')!r}")
    return problems
