"""ECR's control plane: authorization tokens for the registry client, and repositories.

The token provider is a registry Keychain handed to the registry layer from outside (the
registry layer never imports aws). Tokens are cached per registry host (one per account
and region) and refreshed ten minutes before they expire; an expired-token 403 from the
registry invalidates the cache (ECR-NOTES.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import botocore.exceptions

from cloudops.aws.sessions import AccountSession, aws_error
from cloudops.errors import InputError
from cloudops.lifecycle import expand_short_form
from cloudops.registry.auth import Credentials

REFRESH_MARGIN = 600.0


class EcrTokenKeychain:
    """Registry host -> ECR token of the account that owns it."""

    def __init__(self, sessions_by_host: dict[str, AccountSession]):
        self._sessions = dict(sessions_by_host)
        self._cache: dict[str, tuple[Credentials, float]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def resolve(self, host: str) -> Credentials | None:
        session = self._sessions.get(host)
        if session is None:
            return None
        with self._lock:
            cached = self._cache.get(host)
            if cached is not None and cached[1] - REFRESH_MARGIN > time.time():
                return cached[0]
            credentials, expires = _fetch_token(session)
            self.fetches += 1
            self._cache[host] = (credentials, expires)
            return credentials

    def invalidate(self, host: str) -> None:
        with self._lock:
            self._cache.pop(host, None)


def _fetch_token(session: AccountSession) -> tuple[Credentials, float]:
    try:
        answer = session.client("ecr").get_authorization_token(registryIds=[session.account.account_id])
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise aws_error(exc, f"getting an ECR token for account {session.name!r}") from None
    data = answer["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    expires_at = data.get("expiresAt")
    expires = expires_at.timestamp() if isinstance(expires_at, datetime) else 0.0
    if expires <= time.time():
        # A fresh token cannot have expired already; moto answers a fixed 2015 date. Assume
        # ECR's documented 12 hours; an early expiry still arrives as a 403 and refreshes.
        expires = time.time() + 12 * 3600
    return Credentials(user, password), expires


RepositoryChange = Literal["created", "updated", "unchanged"]
Setting = Literal["tag_immutability", "scan_on_push", "encryption", "lifecycle", "policy"]

MAX_READ_POLICY_CHARS = 256 * 1024
"""A policy read back from an account larger than this is not parsed (ECR's own limits
are 10 KiB and 30 KiB): it differs from anything pipeline.yaml can want."""
NONE = "none"


@dataclass(frozen=True)
class DesiredRepository:
    """What one repository of one account should be, from pipeline.yaml's repositories:
    section (``desired_repository``): plain values the ECR calls take."""

    tag_mutability: str = "IMMUTABLE"
    scan_on_push: bool = True
    encryption_type: str = "AES256"
    kms_key: str | None = None  # None with KMS: the account's AWS-managed key
    lifecycle: dict[str, Any] | None = None  # ECR's lifecycle JSON; None: no policy
    policy: dict[str, Any] | None = None  # the repository policy; None: no policy
    manage_policies: bool = True  # False: lifecycle and repository policy left as they are

    def create_arguments(self) -> dict[str, Any]:
        encryption: dict[str, Any] = {"encryptionType": self.encryption_type}
        if self.encryption_type == "KMS" and self.kms_key:
            encryption["kmsKey"] = self.kms_key
        return {
            "imageTagMutability": self.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": self.scan_on_push},
            "encryptionConfiguration": encryption,
        }


def desired_repository(settings: Any, account: str) -> DesiredRepository:
    """``settings`` (pipeline.model.RepositorySettings) for the repository in ``account``."""
    encryption = settings.encryption
    kms_key = (encryption.kms_key or {}).get(account) if encryption.type == "KMS" else None
    lifecycle = settings.lifecycle
    document: dict[str, Any] | None = None
    if lifecycle is not None:
        short = {
            "keep_untagged_days": lifecycle.keep_untagged_days,
            "keep_last_tags": lifecycle.keep_last_tags,
        }
        short = {k: v for k, v in short.items() if v is not None}
        document = lifecycle.policy or (expand_short_form(short) if short else None)
    return DesiredRepository(
        tag_mutability=settings.tag_immutability,
        scan_on_push=settings.scan_on_push,
        encryption_type=encryption.type,
        kms_key=kms_key,
        lifecycle=document,
        policy=settings.policy,
        manage_policies=settings.manages_policies,
    )


@dataclass(frozen=True)
class RepositoryState:
    """One repository as its account's ECR describes it (``exists`` False: not there)."""

    name: str
    exists: bool
    tag_mutability: str | None = None
    scan_on_push: bool = False
    encryption_type: str = "AES256"
    kms_key: str | None = None
    lifecycle: Any = None
    """Its lifecycle policy (read_policy_document), when ``policies_read``."""
    policy: Any = None
    """Its repository policy (read_policy_document), when ``policies_read``."""
    policies_read: bool = False


@dataclass(frozen=True)
class Drift:
    """One setting of one repository that differs from what pipeline.yaml says: what it
    was, what it should be, and whether init can correct it (``fix`` says how otherwise)."""

    repository: str
    setting: Setting
    was: str
    now: str
    correctable: bool = True
    fix: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "setting": self.setting,
            "was": self.was,
            "now": self.now,
            "correctable": self.correctable,
            "fix": self.fix,
        }


def repository_from_description(repo: dict[str, Any]) -> RepositoryState:
    encryption = repo.get("encryptionConfiguration") or {}
    return RepositoryState(
        str(repo.get("repositoryName", "")),
        True,
        str(repo.get("imageTagMutability") or ""),
        bool((repo.get("imageScanningConfiguration") or {}).get("scanOnPush")),
        str(encryption.get("encryptionType") or "AES256"),
        str(encryption["kmsKey"]) if encryption.get("kmsKey") else None,
    )


def read_policy_document(text: str | None) -> Any:
    """A policy's text as read from the account: its JSON value, the text itself when it
    is not JSON (or too large to parse), None for no policy."""
    if not text:
        return None
    if len(text) > MAX_READ_POLICY_CHARS:
        return text[:64] + "…"
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text[:64] + "…"


def lifecycle_policy_text(client: Any, account_id: str, name: str) -> str | None:
    """GetLifecyclePolicy; None when the repository has none."""
    return _policy_text(
        client.get_lifecycle_policy, account_id, name, "lifecyclePolicyText", "LifecyclePolicy"
    )


def repository_policy_text(client: Any, account_id: str, name: str) -> str | None:
    """GetRepositoryPolicy; None when the repository has none."""
    return _policy_text(client.get_repository_policy, account_id, name, "policyText", "RepositoryPolicy")


def _policy_text(call: Any, account_id: str, name: str, field: str, kind: str) -> str | None:
    try:
        answer = call(registryId=account_id, repositoryName=name)
    except botocore.exceptions.ClientError as exc:
        if _code(exc) == f"{kind}NotFoundException":
            return None
        raise
    return str(answer.get(field) or "") or None


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


_LIST_KEYS = ("Action", "NotAction", "Resource", "NotResource")


def _canonical_policy(document: Any) -> Any:
    """A repository policy compared by meaning where IAM's spelling varies: a single
    statement or a list of one, a string or a list of one, list order, and an account id
    written bare or as its root ARN."""
    if not isinstance(document, dict):
        return document
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    out = dict(document)
    if isinstance(statements, list):
        canonical = [_canonical_statement(s) for s in statements]
        out["Statement"] = sorted(canonical, key=lambda s: json.dumps(s, sort_keys=True, default=str))
    return out


def _canonical_statement(statement: Any) -> Any:
    if not isinstance(statement, dict):
        return statement
    out = dict(statement)
    for key in _LIST_KEYS:
        if key in out:
            out[key] = _sorted_strings(out[key])
    principal = out.get("Principal")
    if isinstance(principal, dict):
        canonical = {}
        for kind, value in principal.items():
            values = _sorted_strings(value)
            if kind == "AWS" and isinstance(values, list):
                values = sorted(f"arn:aws:iam::{v}:root" if _is_account_id(v) else v for v in values)
            canonical[kind] = values
        out["Principal"] = canonical
    return out


def _sorted_strings(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sorted(value)
    return value


def _is_account_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 12 and value.isdigit()


def _lifecycle_rules(document: Any) -> Any:
    """Lifecycle policies compared by their rules in priority order (``description`` is
    part of a rule: ECR keeps it)."""
    if isinstance(document, dict) and isinstance(document.get("rules"), list):
        rules = document["rules"]
        if all(isinstance(r, dict) for r in rules):
            return sorted(rules, key=lambda r: str(r.get("rulePriority")).zfill(12))
    return document


def describe_lifecycle(document: Any) -> str:
    """A lifecycle policy in a few words: 'untagged older than 14 days; any beyond 50'."""
    if document is None:
        return NONE
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        return "not a lifecycle policy: " + _short(document)
    parts = []
    for rule in _lifecycle_rules(document)[:8]:
        selection = rule.get("selection") if isinstance(rule, dict) else None
        if not isinstance(selection, dict):
            parts.append("?")
            continue
        status = str(selection.get("tagStatus"))[:16]
        prefixes = selection.get("tagPrefixList") or selection.get("tagPatternList")
        if isinstance(prefixes, list) and prefixes:
            status += f" {','.join(str(p)[:20] for p in prefixes[:3])}"
        number = selection.get("countNumber")
        if selection.get("countType") == "sinceImagePushed":
            parts.append(f"{status} older than {number} {str(selection.get('countUnit', 'days'))[:8]}")
        else:
            parts.append(f"{status} beyond {number}")
    return ("; ".join(parts) or "no rules") + f" ({_digest(_lifecycle_rules(document))})"


def describe_policy(document: Any) -> str:
    """A repository policy in a few words: its statements' Sids and a short digest."""
    if document is None:
        return NONE
    if not isinstance(document, dict):
        return "not a JSON policy: " + _short(document)
    canonical = _canonical_policy(document)
    statements = canonical.get("Statement", [])
    sids = [str(s.get("Sid"))[:40] for s in statements if isinstance(s, dict) and s.get("Sid")]
    named = f" ({', '.join(sids[:5])})" if sids else ""
    count = len(statements) if isinstance(statements, list) else 0
    return f"{count} statement{'s' if count != 1 else ''}{named} ({_digest(canonical)})"


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:60] + ("…" if len(text) > 60 else "")


def _encryption_words(kind: str, key: str | None) -> str:
    return f"{kind} ({key})" if key else kind


def repository_drift(state: RepositoryState, desired: DesiredRepository) -> list[Drift]:
    """Every setting of an existing repository that differs from ``desired``. Pure. The
    lifecycle and repository policy are compared only when ``state`` has read them and
    ``desired`` manages them."""
    name = state.name
    found: list[Drift] = []
    if state.tag_mutability != desired.tag_mutability:
        found.append(Drift(name, "tag_immutability", state.tag_mutability or "?", desired.tag_mutability))
    if state.scan_on_push != desired.scan_on_push:
        found.append(
            Drift(name, "scan_on_push", str(state.scan_on_push).lower(), str(desired.scan_on_push).lower())
        )
    key_differs = desired.kms_key is not None and state.kms_key != desired.kms_key
    if state.encryption_type != desired.encryption_type or (desired.encryption_type == "KMS" and key_differs):
        found.append(
            Drift(
                name,
                "encryption",
                _encryption_words(state.encryption_type, state.kms_key),
                _encryption_words(desired.encryption_type, desired.kms_key),
                correctable=False,
                fix=(
                    f"ECR cannot change a repository's encryption: recreate {name} (copy its images "
                    f"out, aws ecr delete-repository --repository-name {name} --force, run cloudops "
                    "init, promote the images again)"
                ),
            )
        )
    if desired.manage_policies and state.policies_read:
        if _lifecycle_rules(state.lifecycle) != _lifecycle_rules(desired.lifecycle):
            found.append(
                Drift(
                    name,
                    "lifecycle",
                    describe_lifecycle(state.lifecycle),
                    describe_lifecycle(desired.lifecycle),
                )
            )
        if _canonical_policy(state.policy) != _canonical_policy(desired.policy):
            found.append(
                Drift(name, "policy", describe_policy(state.policy), describe_policy(desired.policy))
            )
    return found


class EcrRepositories:
    """Repository management in one account (its own ECR only)."""

    def __init__(self, session: AccountSession):
        self._session = session
        self._client: Any = session.client("ecr")

    def describe(self, names: list[str], *, policies: bool = False) -> dict[str, RepositoryState]:
        """Each repository's state; with ``policies``, its lifecycle and repository
        policies too (two more calls per repository)."""
        found: dict[str, RepositoryState] = {n: RepositoryState(n, False) for n in names}
        account_id = self._session.account.account_id
        for name in names:
            try:
                answer = self._client.describe_repositories(registryId=account_id, repositoryNames=[name])
                state = repository_from_description(answer["repositories"][0])
                if policies:
                    state = replace(
                        state,
                        lifecycle=read_policy_document(lifecycle_policy_text(self._client, account_id, name)),
                        policy=read_policy_document(repository_policy_text(self._client, account_id, name)),
                        policies_read=True,
                    )
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == "RepositoryNotFoundException":
                    continue
                raise aws_error(exc, f"describing ECR repository {name} in {self._session.name!r}") from None
            except botocore.exceptions.BotoCoreError as exc:
                raise aws_error(exc, f"describing ECR repository {name}") from None
            found[name] = replace(state, name=name)
        return found

    def require(self, name: str) -> RepositoryState:
        state = self.describe([name])[name]
        if not state.exists:
            raise InputError(
                f"ECR repository {name} does not exist in account {self._session.name!r} "
                f"({self._session.account.account_id})",
                hint=f"run `cloudops init {self._session.name}` to create the account's repositories",
            )
        return state

    def ensure(
        self, state: RepositoryState, desired: DesiredRepository | None = None, *, dry_run: bool
    ) -> tuple[RepositoryChange, list[Drift]]:
        """Make the repository what ``desired`` says (default: today's defaults). Returns
        the change and every drift found: the correctable ones are corrected (unless
        ``dry_run``); encryption cannot be. Idempotent."""
        desired = desired or DesiredRepository(manage_policies=False)
        name = state.name
        try:
            if not state.exists:
                if not dry_run:
                    self._client.create_repository(repositoryName=name, **desired.create_arguments())
                    if desired.manage_policies:
                        self._put_lifecycle(name, desired.lifecycle)
                        self._put_policy(name, desired.policy)
                return "created", []
            drifts = repository_drift(state, desired)
            if not dry_run:
                for drift in drifts:
                    self._correct(name, drift.setting, desired)
            changed = any(d.correctable for d in drifts)
            return ("updated" if changed else "unchanged"), drifts
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise aws_error(exc, f"configuring ECR repository {name} in {self._session.name!r}") from None

    def _correct(self, name: str, setting: Setting, desired: DesiredRepository) -> None:
        if setting == "tag_immutability":
            self._client.put_image_tag_mutability(
                repositoryName=name, imageTagMutability=desired.tag_mutability
            )
        elif setting == "scan_on_push":
            self._client.put_image_scanning_configuration(
                repositoryName=name, imageScanningConfiguration={"scanOnPush": desired.scan_on_push}
            )
        elif setting == "lifecycle":
            if desired.lifecycle is None:
                self._delete(self._client.delete_lifecycle_policy, name, "LifecyclePolicyNotFoundException")
            else:
                self._put_lifecycle(name, desired.lifecycle)
        elif setting == "policy":
            if desired.policy is None:
                self._delete(self._client.delete_repository_policy, name, "RepositoryPolicyNotFoundException")
            else:
                self._put_policy(name, desired.policy)
        # encryption: ECR has no call that changes it (reported, never corrected)

    def _put_lifecycle(self, name: str, document: dict[str, Any] | None) -> None:
        if document is not None:
            self._client.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(document))

    def _put_policy(self, name: str, document: dict[str, Any] | None) -> None:
        if document is not None:
            self._client.set_repository_policy(repositoryName=name, policyText=json.dumps(document))

    @staticmethod
    def _delete(call: Any, name: str, absent: str) -> None:
        try:
            call(repositoryName=name)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != absent:  # gone meanwhile: what was wanted
                raise
