"""Reading what every account holds, for `cloudops status` (the I/O half; matrix.py
computes the picture).

Images are read with ECR's ListImages: one paginated call per repository (1,000 image
ids a page) gives every tag and the digest it names, which is all the matrix compares.
Measured on the sandbox with 10 repositories x 4 accounts x 500 tags
(benchmarks/status_bench.py), the alternatives cost more for the same facts:
DescribeImages adds sizes, scan state and push times per image (6.5x the time), and
the registry API needs a tag list plus one manifest HEAD per tag (20,000 requests,
150x). What ECR's API lists is what its registry serves (the sandbox's front registers
every push in moto), so nothing is inferred. Packages are read with the package store's own listing
(package.py): versions with their recorded sha256, and the current pointer.

Only read calls are made: sts:GetCallerIdentity, ecr:ListImages, s3:ListBucket and
s3:GetObject (docs/status.md has a read-only IAM policy). Every account is checked with
the account guard first: a picture of the wrong account under the right name is worse
than none. An account that cannot be read leaves its cells "unreachable" with the reason;
the others are read anyway.

With ``verify: {keys: [...]}`` in pipeline.yaml, the digest of every image tag a cell
shows is also checked against those keys in that account's own registry (its host
proven the account's first), as `cloudops verify` does: the signatures' referrers and
payload blobs are read, concurrently and bounded by ``workers``. Without keys, no
registry is contacted. Referrer tags (``sha256-<hex>``, cosign's ``.sig``) are left out
of the listing: they carry signatures, not versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import botocore.exceptions

from cloudops.aws.guard import require_account
from cloudops.aws.sessions import aws_error
from cloudops.errors import CloudopsError
from cloudops.package_store import InvalidPointerError, PackageStore
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.history import HistoryRead, read_history
from cloudops.pipeline.signatures import trusted_keys, verify_many
from cloudops.referrers import is_referrer_tag
from cloudops.release_current import CurrentRelease, ReleaseStore, UnreadableCurrentError
from cloudops.release_gates import Rejection, list_rejections
from cloudops.report.clients import SharedClients
from cloudops.report.matrix import SignatureKey, compute_matrix, signature_targets, with_signatures
from cloudops.report.model import (
    PACKAGE_ROW,
    AccountStatus,
    Artifact,
    Holding,
    Observation,
    RowKind,
    Signature,
    StatusMatrix,
)
from cloudops.signing.keys import PublicKey
from cloudops.signing.verify import Verification

WORKERS = 16
"""Concurrent AWS calls: enough to hide latency, few enough not to be throttled
(ECR's API calls are rate-limited per account)."""

_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


@dataclass(frozen=True)
class _Reader:
    """One account's clients (thread-safe, unlike the sessions that make them)."""

    name: str
    account_id: str
    ecr: Any
    packages: PackageStore
    releases: ReleaseStore


History = HistoryRead
"""The promotion history as status reads it (pipeline/history.py): records attributed to
the bucket they were read from, findings, unreadable records and accounts."""

HISTORY_LIMIT = 1000
"""Records read per account for `status` (the newest, by key; older ones are counted).
More than the HTML timeline shows (200), so a few hundred suspect records written
lately do not push the believable ones out of it."""


@dataclass(frozen=True)
class CurrentSeen:
    """An account's releases/current.json as status read it, and whether what the account
    holds still matches it (``matches``: True, False, or None when it could not tell)."""

    value: CurrentRelease | None = None
    error: str | None = None
    """Why it could not be read (unreadable, hostile, the account not read)."""
    matches: bool | None = None
    differences: tuple[str, ...] = ()
    """What the account holds otherwise than current.json says (when ``matches`` is False)
    or could not be compared (when None)."""

    rejected: tuple[Rejection, ...] = ()
    """Releases rejected in the account (release_gates.py), newest first."""
    rejected_error: str | None = None
    """Why its rejections could not all be read (shown, never fatal)."""

    def rejected_dicts(self) -> list[dict[str, Any]]:
        """`status --json`'s per-account ``rejected_releases``."""
        return [
            {"release": r.release, "reason": r.reason, "who": r.who, "when": r.when} for r in self.rejected
        ]

    def as_dict(self) -> dict[str, Any] | None:
        """`status --json`'s per-account ``current_release``: None when there is none."""
        if self.value is None:
            return None
        return {**self.value.summary(), "matches": self.matches, "differences": list(self.differences)}


@dataclass(frozen=True)
class StatusReport:
    matrix: StatusMatrix
    history: History | None = None
    current: dict[str, CurrentSeen] = field(default_factory=dict)
    """Per account, its current release (release_current.py) and whether it still matches."""

    def current_of(self, account: str) -> CurrentSeen:
        return self.current.get(account) or CurrentSeen(error="not read")

    @property
    def has_history_findings(self) -> bool:
        return self.history is not None and self.history.has_findings

    def history_dict(self) -> dict[str, Any] | None:
        """`status --json`'s "history": counts per account and every finding (docs/status.md)."""
        if self.history is None:
            return None
        found = self.history
        return {
            "records": {
                name: len(found.of(name)) for name in self.matrix.stages if name not in found.unreadable
            },
            "unreadable": found.unreadable,
            **found.extras(),
        }


def read_status(
    context: PipelineContext,
    *,
    with_history: bool = False,
    workers: int = WORKERS,
    history_limit: int = HISTORY_LIMIT,
) -> StatusReport:
    """Read every account concurrently and compute the matrix; with ``with_history``
    the newest ``history_limit`` records of every account's promotion log are read
    alongside (findings in them are status findings too: a planted record is something
    out of line)."""
    started = time.monotonic()
    pipeline = context.pipeline
    stages = tuple(pipeline.stages)
    # Loaded first: a key file that is missing or not a key is an input error (exit 2).
    trusted = trusted_keys(pipeline) if pipeline.verify is not None and pipeline.verify.keys else []
    accounts: dict[str, AccountStatus] = {}
    readers: dict[str, _Reader] = {}
    shared = SharedClients()

    def open_account(name: str) -> None:
        account = pipeline.account(name)
        try:
            readers[name] = _open(context, name, shared)
            accounts[name] = AccountStatus(name, account.account_id, account.region)
        except CloudopsError as error:
            accounts[name] = AccountStatus(name, account.account_id, account.region, str(error))

    with ThreadPoolExecutor(max_workers=max(1, len(stages))) as pool:
        list(pool.map(open_account, stages))

    history: Future[History] | None = None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        if with_history:
            # Only now: the guard has run, and it reads only the accounts that passed.
            history = pool.submit(_history, context, accounts, history_limit)
        tasks: dict[tuple[str, str], Future[Holding]] = {}
        for name, reader in readers.items():
            for repository in pipeline.images:
                tasks[(repository, name)] = pool.submit(_guarded, partial(_images, reader, repository))
            tasks[(PACKAGE_ROW, name)] = pool.submit(_guarded, partial(_packages, reader))
        currents = {name: pool.submit(_current, reader) for name, reader in readers.items()}
        keys: list[tuple[RowKind, str]] = [("image", i) for i in pipeline.images]
        keys.append(("package", PACKAGE_ROW))
        rows = [
            (kind, row, {name: tasks[(row, name)].result() for name in stages if (row, name) in tasks})
            for kind, row in keys
        ]
        signed: Future[dict[SignatureKey, Signature]] | None = None
        if trusted:
            targets = signature_targets(stages, rows)
            signed = pool.submit(_signatures, context, sorted(readers), targets, trusted, workers)
        found_history = history.result() if history is not None else None
        seen = {name: currents[name].result() for name in stages if name in currents}
        found_signatures = signed.result() if signed is not None else None

    current = {
        name: _compare(seen[name], name, rows) if name in seen else CurrentSeen(error="account not read")
        for name in stages
    }
    observation = Observation(
        stages, {s: accounts[s] for s in stages}, tuple(rows), datetime.now(UTC), time.monotonic() - started
    )
    matrix = compute_matrix(observation)
    if found_signatures is not None:
        matrix = with_signatures(matrix, found_signatures, [k.name for k in trusted])
    return StatusReport(matrix, found_history, current)


def _open(context: PipelineContext, name: str, shared: SharedClients) -> _Reader:
    try:
        session = shared.read_session(context.session(name))
    except _BOTO_ERRORS as exc:
        raise aws_error(exc, f"credentials of account {name!r}") from None
    require_account(session, purpose=f"read the status of account {name!r}")
    try:
        ecr = session.client("ecr")
        store = PackageStore(session, context.pipeline.bucket(name), context.pipeline.deployment_package.key)
    except _BOTO_ERRORS as exc:
        raise aws_error(exc, f"connecting to account {name!r}") from None
    return _Reader(name, session.account.account_id, ecr, store, ReleaseStore(store.bucket))


def _guarded(read: Callable[[], Holding]) -> Holding:
    try:
        return read()
    except CloudopsError as error:
        return Holding(error=str(error))


def _images(reader: _Reader, repository: str) -> Holding:
    artifacts: list[Artifact] = []
    what = f"listing images of {repository} in {reader.name!r}"
    try:
        pages = reader.ecr.get_paginator("list_images").paginate(
            repositoryName=repository,
            registryId=reader.account_id,
            filter={"tagStatus": "TAGGED"},
            PaginationConfig={"PageSize": 1000},
        )
        for page in pages:
            for image in page.get("imageIds", []):
                tag = image.get("imageTag")
                if tag and image.get("imageDigest") and not is_referrer_tag(str(tag)):
                    artifacts.append(Artifact(str(tag), str(image["imageDigest"])))
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
            return Holding(note=f"no repository {repository} (run `cloudops init {reader.name}`)")
        raise aws_error(exc, what) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise aws_error(exc, what) from None
    return Holding(tuple(artifacts))


def _signatures(
    context: PipelineContext,
    accounts: Sequence[str],
    targets: Sequence[SignatureKey],
    keys: Sequence[PublicKey],
    workers: int,
) -> dict[SignatureKey, Signature]:
    """Each target's signature state in its account's registry (only accounts that passed
    the guard: ``accounts``). A registry that is not the account's, or cannot be read,
    leaves its targets "unchecked" with the reason."""
    found: dict[SignatureKey, Signature] = {}
    hosts: dict[str, str] = {}
    for name in accounts:
        if not any(t[0] == name for t in targets):
            continue
        try:
            hosts[name] = context.checked_registry_host(name)
        except CloudopsError as error:
            found.update({t: Signature("unchecked", str(error)) for t in targets if t[0] == name})
        except _BOTO_ERRORS as exc:
            reason = str(aws_error(exc, f"checking the registry of {name!r}"))
            found.update({t: Signature("unchecked", reason) for t in targets if t[0] == name})
    wanted = [t for t in targets if t[0] in hosts]
    if wanted:
        checked = verify_many(context, hosts, wanted, keys, workers)
        found.update({t: _signature(c) for t, c in zip(wanted, checked, strict=True)})
    return found


def _signature(checked: Verification | CloudopsError) -> Signature:
    if isinstance(checked, CloudopsError):
        return Signature("unchecked", str(checked))
    return Signature(checked.state, checked.reason, checked.key.name if checked.key else None)


def _packages(reader: _Reader) -> Holding:
    store = reader.packages
    invalid: str | None = None
    try:
        versions = store.versions()
        try:
            pointer = store.current() or {}
        except InvalidPointerError as error:  # hostile or broken: shown, not fatal
            pointer, invalid = {}, f"current pointer unreadable, no version marked current: {error.message}"
    except _BOTO_ERRORS as exc:  # package.py maps most, not all, boto errors
        raise aws_error(exc, f"listing deployment packages in {store.bucket.name}") from None
    current = pointer.get("version")
    artifacts = tuple(
        Artifact(v.version, f"sha256:{v.sha256}" if v.sha256 else "unrecorded", current=v.version == current)
        for v in versions
    )
    where = f"s3://{store.bucket.name}/{store.prefix}/"
    notes = [] if artifacts else [f"no package under {where}"]
    if invalid is not None:
        notes.append(invalid)
    return Holding(artifacts, note="; ".join(notes) or None)


def _current(reader: _Reader) -> CurrentSeen:
    """releases/current.json, read bounded and validated with the package store's client:
    hostile or unreadable is shown, never fatal."""
    try:
        seen = CurrentSeen(reader.releases.read())
    except UnreadableCurrentError as error:
        seen = CurrentSeen(error=error.message)
    except CloudopsError as error:
        seen = CurrentSeen(error=str(error))
    except _BOTO_ERRORS as exc:
        seen = CurrentSeen(error=str(aws_error(exc, f"reading the current release of {reader.name!r}")))
    try:
        rejected, problems = list_rejections(reader.releases)
    except CloudopsError as error:
        return replace(seen, rejected_error=str(error))
    return replace(seen, rejected=tuple(rejected), rejected_error="; ".join(problems) or None)


def _compare(
    seen: CurrentSeen, account: str, rows: list[tuple[RowKind, str, dict[str, Holding]]]
) -> CurrentSeen:
    """Whether the account's ECR tags and package pointer, as status read them (ListImages
    per repository, the package store's listing and current pointer), still name what
    current.json says. Pure: no lookups beyond what status already made."""
    current = seen.value
    if current is None:
        return seen
    held = {(kind, row): holdings.get(account) for kind, row, holdings in rows}
    differ: list[str] = []
    unknown: list[str] = []
    for image in current.images:
        name = f"{image.repository}:{image.tag}"
        holding = held.get(("image", image.repository))
        if holding is None or holding.error is not None:
            unknown.append(f"{name} not read")
            continue
        digest = next((a.digest for a in holding.artifacts if a.tag == image.tag), None)
        if digest is None:
            differ.append(f"{name} is gone")
        elif digest != image.digest:
            differ.append(f"{name} names {digest[:19]}…, not {image.digest[:19]}…")
    if current.package is not None:
        holding = held.get(("package", PACKAGE_ROW))
        version = current.package.version
        if holding is None or holding.error is not None:
            unknown.append(f"package {version} not read")
        else:
            pointed = next((a for a in holding.artifacts if a.current), None)
            if pointed is None:
                differ.append(f"the package pointer names no stored version, not {version}")
            elif pointed.tag != version:
                differ.append(f"the package pointer names {pointed.tag}, not {version}")
            elif pointed.digest != f"sha256:{current.package.sha256}":
                differ.append(f"package {version} has other content than current.json says")
    if differ:
        return replace(seen, matches=False, differences=tuple(differ + unknown))
    if unknown:
        return replace(seen, matches=None, differences=tuple(unknown))
    return replace(seen, matches=True)


def _history(context: PipelineContext, accounts: dict[str, AccountStatus], limit: int) -> History:
    # Only accounts that passed the guard: another account's log under this name would lie.
    readable = [name for name, a in accounts.items() if a.reachable]
    found = read_history(context, readable, limit=limit) if readable else HistoryRead()
    found.unreadable.update({name: a.error for name, a in accounts.items() if a.error is not None})
    return found
