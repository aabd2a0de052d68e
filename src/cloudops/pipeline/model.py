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
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloudops.aws.account import Account
from cloudops.errors import InputError
from cloudops.pipeline.yamlload import YamlBoundsError, YamlValueError, compose_and_load, read_bounded
from cloudops.refs import ReferenceError, ecr_host, parse_ecr_host, validate_repository

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


ARN_PATTERN_RE = re.compile(r"arn:aws[a-z-]*:(?:sts|iam)::[0-9*?]{1,12}:[\x21-\x7e]{1,512}")


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
    problems += _ownership_rules(pipeline)
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
                        "an approver is an STS or IAM ARN pattern, e.g. "
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
