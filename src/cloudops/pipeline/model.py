"""pipeline.yaml: parsing bytes (YAML, with line numbers) and validating meaning are two
steps, as in promo-tools' schema package. Every message names the file and line.

    accounts:
      build: {account_id: "111111111111", region: us-west-2, builds_images: true,
              credentials: {profile: build}, bucket: ep-cloudops-111111111111}
      qa:    {account_id: "222222222222", region: us-west-2,
              credentials: {role_arn: "arn:aws:iam::222222222222:role/cloudops"}}
    stages: [build, qa, preprod, prod]
    images: [ep/cortex, ep/search]
    deployment_package: {key: deployment-package/ext-deployment-package.zip}
    config_root: config
    source_repositories: {account: build, names: [cloudcore-for-aws, docker]}
    endpoints: {aws: URL, registries: {qa: HOST}, insecure_registries: false}
    approvals: {prod: {approvers: ["arn:aws:sts::444444444444:assumed-role/release-approver/*"]}}
    verify: {keys: [keys/cosign.pub], required_for: [preprod, prod]}   # docs/signatures.md
    repositories:                      # the ECR repositories' settings (docs/accounts.md)
      defaults: {tag_immutability: IMMUTABLE, scan_on_push: true, encryption: {type: AES256},
                 lifecycle: {keep_untagged_days: 14, keep_last_tags: 50}, policy: null}
      overrides: {ep/cortex: {lifecycle: {keep_last_tags: 100}}}
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from cloudops.aws.account import Account
from cloudops.errors import InputError
from cloudops.pipeline.yamlload import YamlBoundsError, YamlValueError, compose_and_load, read_bounded
from cloudops.refs import ReferenceError, ecr_host, parse_ecr_host, validate_repository
from cloudops.repository_policy import ANYONE, PolicyError, push_grants

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class PipelineError(InputError):
    """pipeline.yaml cannot be read or says something impossible."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentPackage(_Strict):
    key: str = "deployment-package/ext-deployment-package.zip"


class SourceRepositories(_Strict):
    account: str
    names: list[str] = []


class Endpoints(_Strict):
    aws: str | None = None
    """An AWS API endpoint for every service (the sandbox's moto server)."""
    registries: dict[str, str] = {}
    """Registry host per account name, instead of <account_id>.dkr.ecr.<region>.amazonaws.com."""
    insecure_registries: bool = False
    """Reach the registries over plain HTTP (only ever true for the local sandbox)."""
    databases: dict[str, str] = {}
    """HOST:PORT to reach an account's database at, instead of the host and port its own
    config names (the sandbox: one loopback address per account). The config's host is
    still the one the host rules check (docs/database.md)."""


ARN_PATTERN_RE = re.compile(r"arn:aws[a-z-]*:(?:sts|iam)::[0-9]{12}:[\x21-\x7e]{1,512}")
"""An approver pattern names its account literally: a wildcard there would admit another
account's identities (the guard checks the caller's account, the pattern the rest)."""


class Approval(_Strict):
    """Who must approve a release's plan before it is applied into a stage (docs/releases.md).
    Without an ``approvals:`` entry, the last stage requires one by any identity of its
    own account, and no other stage requires one."""

    required: bool = True
    approvers: list[str] = []
    """STS caller ARN patterns (``*`` and ``?`` as in shell globs), e.g.
    ``arn:aws:sts::444444444444:assumed-role/release-approver/*``. Empty: any identity
    acting in the stage's own account (the account guard checks that)."""
    allow_self_approval: bool = False
    """Off: the identity that applies a plan may not be its only approver."""
    jenkins_submitters: list[str] = []
    """Jenkins users or groups who may answer the release job's input step (empty: any)."""
    jenkins_credentials_id: str | None = None
    """The Jenkins AWS credentials the release job approves with (an approver's role)."""

    def admits(self, arn: str) -> bool:
        """Whether the identity ``arn`` matches one of the approver patterns (the account
        guard has checked it acts in the stage's account)."""
        return not self.approvers or any(fnmatch.fnmatchcase(arn, p) for p in self.approvers)


NO_APPROVAL = Approval(required=False)


# --- repositories: the settings of every pipeline image's ECR repository (docs/accounts.md) --

MAX_REPOSITORY_POLICY_CHARS = 10_240
"""ECR's limit on a repository policy's text."""
MAX_LIFECYCLE_POLICY_CHARS = 30_720
"""ECR's limit on a lifecycle policy's text."""
MAX_JSON_DEPTH = 16
MAX_LIFECYCLE_RULES = 100
KMS_KEY_ARN_RE = re.compile(
    r"arn:(aws[a-z-]*):kms:([a-z]{2}(?:-[a-z]+)+-[0-9]):([0-9]{12}):key/([A-Za-z0-9-]{1,128})"
)
TAG_STATUSES = ("tagged", "untagged", "any")


def _json_document(value: Any, what: str, limit: int) -> dict[str, Any] | None:
    """A JSON object as written in YAML, checked to be JSON (string keys; no NaN; a YAML
    date such as an unquoted ``Version: 2012-10-17`` read back as the text it was) and
    bounded (depth, and ``limit`` characters once serialized, ECR's own limit)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is a JSON object (a YAML mapping) or null")
    document = _json_value(value, what, 0)
    try:
        text = json.dumps(document, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise ValueError(f"{what} holds a number JSON cannot carry (NaN or infinity)") from None
    if len(text) > limit:
        raise ValueError(f"{what} is {len(text)} characters as JSON; ECR takes at most {limit}")
    return document  # type: ignore[no-any-return]


def _json_value(value: Any, what: str, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{what}: the key {str(key)[:40]!r} is not a string (quote it)")
            out[key] = _json_value(item, what, depth + 1)
        return out
    if isinstance(value, list):
        return [_json_value(item, what, depth + 1) for item in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()  # YAML read "2012-10-17" as a date: JSON means the text
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise ValueError(f"{what} holds a value JSON cannot carry ({type(value).__name__})")


class Encryption(_Strict):
    """How a repository's images are encrypted at rest. Chosen when the repository is
    created: ECR cannot change it afterwards."""

    type: Literal["AES256", "KMS"] = "AES256"
    kms_key: dict[str, str] | None = None
    """With KMS: the key ARN per account name (a key of that account and region). Without
    it, KMS uses the account's AWS-managed key (aws/ecr)."""

    @model_validator(mode="after")
    def _key_only_with_kms(self) -> Encryption:
        if self.kms_key is not None and self.type != "KMS":
            raise ValueError("kms_key is for type: KMS only")
        return self


_Days = Annotated[int, Field(strict=True, ge=1, le=36_500)]
_Count = Annotated[int, Field(strict=True, ge=1, le=100_000)]


class Lifecycle(_Strict):
    """A repository's lifecycle policy: the short form (expanded into ECR's JSON rules),
    or ``policy:``, ECR's own lifecycle policy document."""

    keep_untagged_days: _Days | None = None
    """Expire untagged images pushed more than this many days ago."""
    keep_last_tags: _Count | None = None
    """Keep this many images (any tag status, newest first); expire the older ones."""
    policy: dict[str, Any] | None = None

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_json(cls, value: Any) -> dict[str, Any] | None:
        return _json_document(value, "the lifecycle policy", MAX_LIFECYCLE_POLICY_CHARS)

    @model_validator(mode="after")
    def _one_form(self) -> Lifecycle:
        short = self.keep_untagged_days is not None or self.keep_last_tags is not None
        if self.policy is not None and short:
            raise ValueError("give either keep_untagged_days/keep_last_tags or policy, not both")
        if self.policy is not None:
            _check_lifecycle_rules(self.policy)
        return self


def _check_lifecycle_rules(policy: dict[str, Any]) -> None:
    """The shape ECR requires of a lifecycle policy, checked before any account sees it."""
    rules = policy.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ValueError('a lifecycle policy has "rules": a non-empty list (ECR\'s lifecycle policy JSON)')
    if len(rules) > MAX_LIFECYCLE_RULES:
        raise ValueError(f"a lifecycle policy has at most {MAX_LIFECYCLE_RULES} rules")
    priorities: list[int] = []
    for index, rule in enumerate(rules, 1):
        if not isinstance(rule, dict):
            raise ValueError(f"lifecycle rule {index} is not an object")
        priority = rule.get("rulePriority")
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
            raise ValueError(f"lifecycle rule {index}: rulePriority is a positive integer")
        if priority in priorities:
            raise ValueError(f"lifecycle rule {index}: rulePriority {priority} is used twice")
        priorities.append(priority)
        selection = rule.get("selection")
        if not isinstance(selection, dict) or selection.get("tagStatus") not in TAG_STATUSES:
            raise ValueError(
                f"lifecycle rule {index}: selection.tagStatus is one of {', '.join(TAG_STATUSES)}"
            )
        if rule.get("action") != {"type": "expire"}:
            raise ValueError(f'lifecycle rule {index}: action is {{"type": "expire"}}')
    anys = [r["rulePriority"] for r in rules if r["selection"]["tagStatus"] == "any"]
    if anys and (len(anys) > 1 or anys[0] != max(priorities)):
        raise ValueError(
            'a lifecycle rule with tagStatus "any" must be the only one and have the highest rulePriority'
        )


class RepositorySettings(_Strict):
    """The settings of one ECR repository (defaults, an override, or the two merged)."""

    tag_immutability: Literal["IMMUTABLE", "MUTABLE"] = "IMMUTABLE"
    scan_on_push: StrictBool = True
    encryption: Encryption = Encryption()
    lifecycle: Lifecycle | None = None
    """None: no lifecycle policy (init deletes one it finds)."""
    policy: dict[str, Any] | None = None
    """The repository policy document; None: none (init deletes one it finds)."""

    # False when pipeline.yaml has no repositories: section: lifecycle and repository
    # policies are then left as they are (neither set nor deleted nor reported).
    _manages_policies: bool = PrivateAttr(True)

    @property
    def manages_policies(self) -> bool:
        return self._manages_policies

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_json(cls, value: Any) -> dict[str, Any] | None:
        return _json_document(value, "the repository policy", MAX_REPOSITORY_POLICY_CHARS)

    def merged(self, override: RepositorySettings) -> RepositorySettings:
        """These settings with what ``override`` sets explicitly (an explicit null
        included). Two short-form lifecycles merge key by key."""
        update = {key: getattr(override, key) for key in override.model_fields_set}
        mine, theirs = self.lifecycle, override.lifecycle
        if (
            "lifecycle" in update
            and mine is not None
            and theirs is not None
            and mine.policy is None
            and theirs.policy is None
        ):
            update["lifecycle"] = mine.model_copy(
                update={key: getattr(theirs, key) for key in theirs.model_fields_set}
            )
        return self.model_copy(update=update)


class Repositories(_Strict):
    defaults: RepositorySettings = RepositorySettings()
    overrides: dict[str, RepositorySettings] = {}
    """Per pipeline image: the settings that differ from the defaults."""


class Databases(_Strict):
    """The Data Population Tool's guard rails per stage (docs/database.md)."""

    protected: list[str] | None = None
    """Stages whose database `cloudops db reset` refuses; default: preprod and prod (the
    ones of them the pipeline has) and always the last stage."""
    allow_reset: list[str] = []
    """Protected stages where a reset is allowed after all (with an approval)."""


class Verify(_Strict):
    """Which stages accept only signed images, and the cosign public keys that count."""

    keys: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(default=[], max_length=32)
    """PEM files (cosign.pub), relative to pipeline.yaml's folder."""
    required_for: list[str] = []


class Pipeline(_Strict):
    accounts: dict[str, Account]
    stages: list[str]
    images: list[str] = []
    deployment_package: DeploymentPackage = DeploymentPackage()
    config_root: str = "config"
    source_repositories: SourceRepositories | None = None
    endpoints: Endpoints = Endpoints()
    allow_stage_skip: bool = False
    """Allow promoting past a stage (build straight to prod). Off: every stage in order."""
    approvals: dict[str, Approval] = {}
    """Per stage: who must approve a release before it is applied there."""
    databases: Databases = Databases()
    verify: Verify | None = None
    """Stages that accept only images with a valid cosign signature (docs/signatures.md)."""
    repositories: Repositories | None = None
    """The settings of every pipeline image's repository (docs/accounts.md). Without the
    section: the defaults, and lifecycle and repository policies left as they are."""

    # Where the file was read from; set by load_pipeline.
    path: Path | None = Field(None, exclude=True)

    # -- lookups -----------------------------------------------------------------------

    def account(self, name: str) -> Account:
        try:
            return self.accounts[name]
        except KeyError:
            raise InputError(
                f"unknown account {name!r}",
                hint=f"accounts in {self.path or 'pipeline.yaml'}: {', '.join(self.accounts)}",
            ) from None

    @property
    def build_account(self) -> str:
        return next(name for name, account in self.accounts.items() if account.builds_images)

    def registry_host(self, name: str) -> str:
        account = self.account(name)
        return self.endpoints.registries.get(name) or ecr_host(account.account_id, account.region)

    def bucket(self, name: str) -> str:
        account = self.account(name)
        return account.bucket or f"ep-cloudops-{account.account_id}"

    def approval(self, stage: str) -> Approval:
        """What applying a release into ``stage`` needs: its approvals: entry, else one
        approval by any identity of its account for the last stage, else none."""
        if stage in self.approvals:
            return self.approvals[stage]
        return Approval() if self.stages and stage == self.stages[-1] else NO_APPROVAL

    def protected_databases(self) -> list[str]:
        if self.databases.protected is not None:
            return list(self.databases.protected)
        found = [s for s in self.stages if s in ("preprod", "prod")]
        if self.stages and self.stages[-1] not in found:
            found.append(self.stages[-1])
        return found

    def requires_signature(self, stage: str) -> bool:
        return self.verify is not None and stage in self.verify.required_for

    def verify_key_paths(self) -> list[Path]:
        base = self.path.parent if self.path else Path.cwd()
        return [base / key for key in (self.verify.keys if self.verify else [])]

    def repository_settings(self, name: str) -> RepositorySettings:
        """The settings of image repository ``name``: the defaults merged with its
        override (what the override sets explicitly wins)."""
        section = self.repositories or Repositories()
        settings = section.defaults
        override = section.overrides.get(name)
        if override is not None:
            settings = settings.merged(override)
        settings = settings.model_copy()
        settings._manages_policies = self.repositories is not None
        return settings

    def previous_stage(self, name: str) -> str | None:
        index = self.stages.index(name)
        return self.stages[index - 1] if index > 0 else None

    @property
    def config_dir(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return base / self.config_root


# --- loading -------------------------------------------------------------------------


def find_pipeline_file(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--pipeline, then $CLOUDOPS_PIPELINE, then ./pipeline.yaml."""
    for candidate, origin in (
        (explicit, "--pipeline"),
        (os.environ.get("CLOUDOPS_PIPELINE"), "$CLOUDOPS_PIPELINE"),
        ("pipeline.yaml", "the current directory"),
    ):
        if candidate:
            path = Path(candidate)
            if path.is_file():
                return path
            if origin != "the current directory":
                raise PipelineError(f"pipeline file {path} (from {origin}) does not exist")
    raise PipelineError(
        "no pipeline file found",
        hint="pass --pipeline FILE, set CLOUDOPS_PIPELINE, or run where pipeline.yaml is "
        "(`cloudops sandbox up` writes one for the local sandbox)",
    )


def _line_index(
    node: yaml.Node, path: tuple[Any, ...] = (), seen: frozenset[int] = frozenset()
) -> dict[tuple[Any, ...], int]:
    """Map each path in the YAML document (keys and list indexes) to its 1-based line.
    An alias can make the node graph loop: each node is visited once per path."""
    lines = {path: node.start_mark.line + 1}
    if id(node) in seen or len(path) > 32:
        return lines
    seen = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines.update(_line_index(value, (*path, key.value), seen))
            lines[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, index), seen))
    return lines


def _where(path: Path, lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> str:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return f"{path}:{lines[loc[:cut]]}"
    return str(path)


def load_pipeline(source: str | os.PathLike[str] | None = None) -> Pipeline:
    path = find_pipeline_file(source)
    try:
        text = read_bounded(path)
    except YamlBoundsError as exc:
        raise PipelineError(f"{path}: {exc}", hint="a pipeline file is a few kilobytes") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {path}: {type(exc).__name__}") from None
    return parse_pipeline(text, path)


def parse_pipeline(text: str, path: Path = Path("pipeline.yaml")) -> Pipeline:
    try:
        node, data = compose_and_load(text)
    except YamlBoundsError as exc:
        raise PipelineError(
            f"{path}: refused: {exc}", hint="write the values out; use aliases only for small shared blocks"
        ) from None
    except YamlValueError as exc:
        raise PipelineError(f"{path}: {exc}", hint="quote it if it is meant as text") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise PipelineError(
            f"{path}{line}: not valid YAML: {exc.problem}",
            hint="fix the YAML syntax (indentation, quotes, colons)",
        ) from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {type(exc).__name__}") from None
    except RecursionError:
        raise PipelineError(
            f"{path}: nested too deeply", hint="a pipeline file is a few levels deep"
        ) from None
    if not isinstance(data, dict) or node is None:
        raise PipelineError(f"{path}: expected a mapping with accounts: and stages:")
    lines = _line_index(node)
    try:
        pipeline = Pipeline.model_validate(data)
    except RecursionError:
        raise PipelineError(
            f"{path}: refers to itself (a YAML alias loop)", hint="remove the alias"
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc)
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif first["type"] == "missing":
            message = f"{loc[-1]!r} is required"
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        raise PipelineError(
            f"{_where(path, lines, loc)}: {field}: {message}{more}",
            hint="see docs/pipeline.md for the pipeline.yaml format",
        ) from None
    pipeline = pipeline.model_copy(update={"path": path})
    problems = check_rules(pipeline)
    if problems:
        loc, message = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise PipelineError(f"{_where(path, lines, loc)}: {message}{more}", hint="see docs/pipeline.md")
    return pipeline


def check_rules(pipeline: Pipeline) -> list[tuple[tuple[Any, ...], str]]:
    """Meaning, after shape: each problem with the YAML path it belongs to."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for name in pipeline.accounts:
        if not NAME_RE.fullmatch(name):
            problems.append(
                (("accounts", name), f"account name {name!r} must be lowercase letters, digits, -")
            )
    builders = [n for n, a in pipeline.accounts.items() if a.builds_images]
    if not builders:
        problems.append((("accounts",), "no account has builds_images: true (exactly one must build images)"))
    elif len(builders) > 1:
        problems.append(
            (
                ("accounts", builders[1], "builds_images"),
                f"more than one account builds images: {', '.join(builders)}",
            )
        )
    if not pipeline.stages:
        problems.append((("stages",), "stages is empty"))
    seen: dict[str, int] = {}
    for index, stage in enumerate(pipeline.stages):
        if stage in seen:
            problems.append((("stages", index), f"stage {stage!r} is listed twice"))
        seen[stage] = index
        if stage not in pipeline.accounts:
            problems.append(
                (
                    ("stages", index),
                    f"stage {stage!r} is not an account (accounts: {', '.join(pipeline.accounts)})",
                )
            )
    for name in pipeline.accounts:
        if name not in seen:
            problems.append((("accounts", name), f"account {name!r} is not in stages"))
    by_id: dict[str, str] = {}
    for name, account in pipeline.accounts.items():
        other = by_id.get(account.account_id)
        if other is not None:
            problems.append(
                (
                    ("accounts", name, "account_id"),
                    f"accounts {other!r} and {name!r} share account id {account.account_id}: "
                    "every environment needs its own AWS account",
                )
            )
        by_id[account.account_id] = name
    if builders and pipeline.stages and pipeline.stages[0] != builders[0] and builders[0] in seen:
        problems.append((("stages", 0), f"the build account {builders[0]!r} must be the first stage"))
    for index, image in enumerate(pipeline.images):
        try:
            validate_repository(image)
        except ReferenceError as exc:
            problems.append((("images", index), exc.message))
    if len(set(pipeline.images)) != len(pipeline.images):
        problems.append((("images",), "an image repository is listed twice"))
    for name in pipeline.endpoints.registries:
        if name not in pipeline.accounts:
            problems.append(
                (("endpoints", "registries", name), f"registry override for unknown account {name!r}")
            )
    if pipeline.source_repositories and pipeline.source_repositories.account not in pipeline.accounts:
        problems.append(
            (("source_repositories", "account"), f"unknown account {pipeline.source_repositories.account!r}")
        )
    problems += _approval_rules(pipeline)
    problems += _verify_rules(pipeline)
    for section, names in (
        ("protected", pipeline.databases.protected or []),
        ("allow_reset", pipeline.databases.allow_reset),
    ):
        for index, stage in enumerate(names):
            if stage not in pipeline.stages:
                problems.append((("databases", section, index), f"{stage!r} is not a stage"))
    for name in pipeline.endpoints.databases:
        if name not in pipeline.accounts:
            problems.append(
                (("endpoints", "databases", name), f"database endpoint for unknown account {name!r}")
            )
    problems += _ownership_rules(pipeline)
    problems += _repository_rules(pipeline)
    return problems


def _repository_rules(pipeline: Pipeline) -> list[tuple[tuple[Any, ...], str]]:
    """repositories: overrides name pipeline images; a KMS key per account is that
    account's own (id and region); no repository policy lets another account push."""
    section = pipeline.repositories
    if section is None:
        return []
    problems: list[tuple[tuple[Any, ...], str]] = []
    for name in section.overrides:
        if name not in pipeline.images:
            problems.append(
                (
                    ("repositories", "overrides", name),
                    f"override for {name!r}, which is not a pipeline image "
                    f"(images: {', '.join(pipeline.images) or 'none'}): fix the name or add it to images",
                )
            )
    blocks = [(("repositories", "defaults"), section.defaults)] + [
        (("repositories", "overrides", name), settings) for name, settings in section.overrides.items()
    ]
    for where, settings in blocks:
        problems += _kms_rules(pipeline, (*where, "encryption"), settings.encryption)
        if settings.policy is not None:
            problems += _policy_rules(pipeline, (*where, "policy"), settings.policy)
    return problems


def _kms_rules(
    pipeline: Pipeline, where: tuple[Any, ...], encryption: Encryption
) -> list[tuple[tuple[Any, ...], str]]:
    if encryption.kms_key is None:
        return []
    problems: list[tuple[tuple[Any, ...], str]] = []
    for name, arn in encryption.kms_key.items():
        if name not in pipeline.accounts:
            problems.append(((*where, "kms_key", name), f"kms_key for {name!r}, which is not an account"))
            continue
        account = pipeline.accounts[name]
        match = KMS_KEY_ARN_RE.fullmatch(arn)
        if match is None:
            problems.append(
                (
                    (*where, "kms_key", name),
                    f"kms_key of {name} is not a KMS key ARN: write "
                    f"arn:aws:kms:{account.region}:{account.account_id}:key/KEY-ID (ECR records the "
                    "key's ARN, not an alias)",
                )
            )
        elif (match.group(3), match.group(2)) != (account.account_id, account.region):
            problems.append(
                (
                    (*where, "kms_key", name),
                    f"kms_key of {name} is a key of account {match.group(3)} in {match.group(2)}, not "
                    f"{name}'s ({account.account_id} in {account.region}): each account encrypts "
                    "with a key of its own, in its region",
                )
            )
    missing = [
        name for name in pipeline.stages if name in pipeline.accounts and name not in encryption.kms_key
    ]
    if missing:
        problems.append(
            (
                (*where, "kms_key"),
                f"kms_key has no key for {', '.join(missing)}: give every account its own key "
                "(or leave kms_key out to use each account's AWS-managed key)",
            )
        )
    return problems


def _policy_rules(
    pipeline: Pipeline, where: tuple[Any, ...], policy: dict[str, Any]
) -> list[tuple[tuple[Any, ...], str]]:
    text = json.dumps(policy)
    by_id = {a.account_id: n for n, a in pipeline.accounts.items()}
    for name in pipeline.stages:
        account = pipeline.accounts.get(name)
        if account is None:
            continue
        try:
            grants = push_grants(text, account.account_id)
        except PolicyError as error:
            return [(where, str(error))]
        for grant in grants:
            who = "anyone" if grant.principal == ANYONE else f"account {grant.principal}"
            if grant.principal in by_id:
                who += f" ({by_id[grant.principal]})"
            sid = f" {grant.sid!r}" if grant.sid else ""
            return [
                (
                    where,
                    f"the repository policy lets {who} push into {name}'s repositories "
                    f"({', '.join(grant.actions)}): only each account writes its own ECR; remove the "
                    f"statement{sid} or reduce it to pull actions",
                )
            ]
    return []


def _verify_rules(pipeline: Pipeline) -> list[tuple[tuple[Any, ...], str]]:
    verify = pipeline.verify
    if verify is None:
        return []
    problems: list[tuple[tuple[Any, ...], str]] = []
    for index, stage in enumerate(verify.required_for):
        where = ("verify", "required_for", index)
        if stage not in pipeline.stages:
            problems.append((where, f"{stage!r} is not a stage"))
        elif stage == pipeline.stages[0]:
            problems.append(
                (where, f"nothing is promoted into the first stage {stage!r}: sign there instead")
            )
    if verify.required_for and not verify.keys:
        problems.append((("verify", "keys"), "stages require signatures but no public key is named"))
    return problems


def _approval_rules(pipeline: Pipeline) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    for stage, approval in pipeline.approvals.items():
        if stage not in pipeline.stages:
            problems.append((("approvals", stage), f"approvals for {stage!r}, which is not a stage"))
            continue
        if stage == pipeline.stages[0]:
            problems.append((("approvals", stage), f"nothing is promoted into the first stage {stage!r}"))
        account_id = pipeline.accounts[stage].account_id if stage in pipeline.accounts else None
        for index, pattern in enumerate(approval.approvers):
            where = ("approvals", stage, "approvers", index)
            if not ARN_PATTERN_RE.fullmatch(pattern):
                problems.append(
                    (
                        where,
                        "an approver is an STS or IAM ARN pattern naming its 12-digit account, e.g. "
                        "arn:aws:sts::444444444444:assumed-role/release-approver/*",
                    )
                )
            elif account_id is not None and not fnmatch.fnmatchcase(account_id, pattern.split(":")[4]):
                problems.append(
                    (
                        where,
                        f"approver {pattern!r} is not in {stage}'s account {account_id}: "
                        "approvals are made with credentials acting in the stage's own account",
                    )
                )
        for index, name in enumerate(approval.jenkins_submitters):
            if not re.fullmatch(r"[\w.@+-]{1,128}", name):
                problems.append(
                    (
                        ("approvals", stage, "jenkins_submitters", index),
                        f"{name!r} is not a Jenkins user or group id",
                    )
                )
        if approval.jenkins_credentials_id is not None and not re.fullmatch(
            r"[\w.-]{1,128}", approval.jenkins_credentials_id
        ):
            problems.append(
                (
                    ("approvals", stage, "jenkins_credentials_id"),
                    "a Jenkins credentials id is letters, digits, . _ -",
                )
            )
    return problems


_AWS_REGISTRY_RE = re.compile(
    r".+\.dkr\.ecr(?:-fips)?\..+\.amazonaws\.com|(?:.+\.)?amazonaws\.com\.cn|(?:.+\.)?ecr\.aws"
    r"|.+\.dkr-ecr(?:-fips)?\..+\.on\.aws"  # dual-stack endpoints
)


def is_aws_registry_host(host: str) -> bool:
    """A real Amazon ECR host (*.dkr.ecr.*.amazonaws.com, VPC endpoints included, anything
    under amazonaws.com.cn, public.ecr.aws, dual-stack *.dkr-ecr.*.on.aws), with or without a
    port: never without TLS."""
    name = host.strip().lower()
    if name.startswith("["):
        return False  # an IPv6 literal
    name = name.rsplit(":", 1)[0] if ":" in name else name
    return _AWS_REGISTRY_RE.fullmatch(name.rstrip(".")) is not None


def _ownership_rules(pipeline: Pipeline) -> list[tuple[tuple[Any, ...], str]]:
    """Each account writes only to what it owns: no bucket or registry host shared by two
    accounts, no ECR host of another account, and TLS never off for a real ECR host."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    buckets: dict[str, str] = {}
    hosts: dict[str, str] = {}
    for name, account in pipeline.accounts.items():
        bucket = pipeline.bucket(name)
        other = buckets.setdefault(bucket, name)
        if other != name:
            problems.append(
                (
                    ("accounts", name, "bucket"),
                    f"accounts {other!r} and {name!r} share bucket {bucket}: each account keeps its "
                    "packages and history in a bucket of its own "
                    "(a promotion into one would write the other's)",
                )
            )
        mapped = name in pipeline.endpoints.registries
        where = ("endpoints", "registries", name) if mapped else ("accounts", name)
        host = pipeline.registry_host(name)
        # One registry, however spelled: case, a trailing dot, HTTPS's default port.
        key = host.strip().lower().removesuffix(":443").rstrip(".")
        other = hosts.setdefault(key, name)
        if other != name:
            problems.append(
                (
                    where,
                    f"accounts {other!r} and {name!r} share registry {host}: each account pushes only to "
                    "its own ECR (a promotion into one would write the other's)",
                )
            )
        ecr = parse_ecr_host(key)
        own = (account.account_id, account.region)
        if mapped and ecr is not None and (ecr.account_id, ecr.region) != own:
            problems.append(
                (
                    where,
                    f"registry {host} of account {name!r} is the ECR of account {ecr.account_id} "
                    f"({ecr.region}), not {account.account_id} ({account.region})",
                )
            )
        if pipeline.endpoints.insecure_registries and is_aws_registry_host(host):
            problems.append(
                (
                    ("endpoints", "insecure_registries"),
                    f"insecure_registries would reach {host} ({name}'s registry, a real Amazon ECR host) "
                    "without TLS: ECR is only ever reached over HTTPS; map each account to a local "
                    "registry in endpoints.registries or set insecure_registries: false",
                )
            )
    return problems
