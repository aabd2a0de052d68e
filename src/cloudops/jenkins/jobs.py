"""What the Jenkins jobs of one destination account are, from pipeline.yaml alone (pure).

The best-practice guide puts a promotion job in the Jenkins server of EACH destination
account, taking the source account's credentials and what to promote as parameters. One
job per kind of promotion: image, deployment package, release. Every value in a job comes
from the pipeline file: account names and ids, the image repositories, credentials ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from cloudops.errors import InputError
from cloudops.pipeline.model import Pipeline
from cloudops.pipeline.stages import promotion_route

JobKind = Literal["image", "package", "release"]
KINDS: tuple[JobKind, ...] = ("image", "package", "release")

TAG_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
"""refs.validate_tag's grammar spelled for bash's =~ (POSIX ERE, run with LC_ALL=C): the
job refuses a bad tag before it touches AWS. A unit test keeps the two in agreement."""

SOURCE_ENV_PREFIX = "SOURCE"
"""The binding puts the source keys in $SOURCE_AWS_ACCESS_KEY_ID / $SOURCE_AWS_SECRET_ACCESS_KEY;
`cloudops promote --source-credentials-env SOURCE` reads them from there."""

AWS_CREDENTIALS_TYPE = "com.cloudbees.jenkins.plugins.awscredentials.AWSCredentialsImpl"
"""The aws-credentials plugin's credential class: the parameter offers only AWS credentials."""

# What the shell step leaves in the workspace: the JSON result (archived) and, on failure,
# the tool's own message, which the Jenkinsfile turns into the build's failure reason.
RESULT_FILE = "cloudops-result.json"
ERROR_FILE = "cloudops-error.txt"
OUTPUT_FILE = "cloudops-output.log"
# A release job into a stage that requires an approval also leaves the plan it approves
# and applies, the plan's hash (shown in the input step), and the approval record.
PLAN_FILE = "cloudops-plan.json"
PLAN_HASH_FILE = "cloudops-plan-hash.txt"
APPROVAL_FILE = "cloudops-approval.json"

APPROVER_ENV_PREFIX = "CLOUDOPS_APPROVER"
"""The approver's binding puts its keys in $CLOUDOPS_APPROVER_AWS_ACCESS_KEY_ID / ..._SECRET_ACCESS_KEY;
`cloudops approve --credentials-env CLOUDOPS_APPROVER` reads them from there."""
APPROVED_BY_ENV = "CLOUDOPS_APPROVED_BY"
"""jenkins:<the Jenkins user id that answered the input step>, passed as `cloudops approve --note`."""
PLAN_HASH_ENV = "CLOUDOPS_PLAN_HASH"
"""The plan hash the input step showed: the approve step approves only a plan with that hash."""

# Jenkins' own rule for credentials ids; anything else could not be a default anyway, and
# keeping to it means the id needs no quoting in Groovy, YAML or XML.
_CREDENTIALS_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")


@dataclass(frozen=True)
class CredentialsParameter:
    """A credentials parameter restricted to AWS credentials (CredentialsParameterDefinition)."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class ChoiceParameter:
    name: str
    choices: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class StringParameter:
    name: str
    default: str
    description: str


Parameter = CredentialsParameter | ChoiceParameter | StringParameter


@dataclass(frozen=True)
class ApprovalGate:
    """The approval a release job waits for before it applies (pipeline.yaml approvals:)."""

    submitters: tuple[str, ...]
    """Jenkins users or groups who may answer the input step (empty: anyone who may build the job)."""
    credentials_id: str | None
    """The Jenkins AWS credentials the approval is recorded with; None: the agent's own
    (only when the stage allows self-approval). `cloudops approve` and `apply` check that
    their identity matches the stage's approvers: the job does not."""


@dataclass(frozen=True)
class JobSpec:
    """One Jenkins job of a destination account."""

    kind: JobKind
    account: str
    account_id: str
    source: str
    source_id: str
    parameters: tuple[Parameter, ...]
    images: tuple[str, ...] = ()
    approval: ApprovalGate | None = None
    """Set for the release job into a stage that requires an approval: plan, input, approve, apply."""

    @property
    def name(self) -> str:
        return f"cloudops-promote-{self.kind}-into-{self.account}"

    @property
    def source_credentials(self) -> CredentialsParameter:
        first = self.parameters[0]
        assert isinstance(first, CredentialsParameter), "every job takes the source credentials first"
        return first

    @property
    def script_name(self) -> str:
        return f"promote-{self.kind}.sh"

    @property
    def command(self) -> str:
        return f"cloudops promote {self.kind}"

    @property
    def what(self) -> str:
        return {"image": "an image", "package": "the deployment package", "release": "a release"}[self.kind]

    @property
    def description(self) -> str:
        if self.approval is not None:
            credentials = (
                f"the approver's AWS credentials ({self.approval.credentials_id})"
                if self.approval.credentials_id
                else "the agent's own AWS credentials (self-approval is allowed)"
            )
            return (
                f"Promote {self.what} from account {self.source} ({self.source_id}) into account "
                f"{self.account} ({self.account_id}), which requires an approval: `cloudops plan "
                f"--to {self.account}`, a Jenkins input step, `cloudops approve` of that plan with "
                f"{credentials}, then `cloudops apply` of exactly that plan. The agent's own AWS "
                f"credentials must belong to {self.account} ({self.account_id}): cloudops refuses "
                f"to write otherwise. The source account's credentials are bound for the plan and "
                f"apply steps only. Rendered by `cloudops jenkins render --account {self.account}`: "
                f"render again rather than edit."
            )
        return (
            f"Promote {self.what} from account {self.source} ({self.source_id}) into account "
            f"{self.account} ({self.account_id}) with `{self.command} --to {self.account}`. "
            f"The agent's own AWS credentials must belong to {self.account} ({self.account_id}): "
            f"cloudops refuses to write otherwise. The source account's credentials are bound "
            f"for the promotion step only. Rendered by `cloudops jenkins render --account "
            f"{self.account}`: render again rather than edit."
        )


def credentials_id(pipeline: Pipeline, account: str) -> str:
    """The Jenkins credentials id holding ``account``'s AWS keys: pipeline.yaml's
    credentials.jenkins_credentials_id, else cloudops-<account>."""
    chosen = pipeline.account(account).credentials.jenkins_credentials_id or f"cloudops-{account}"
    if not _CREDENTIALS_ID_RE.fullmatch(chosen):
        raise InputError(
            f"jenkins_credentials_id {chosen!r} of account {account!r} is not a Jenkins credentials id",
            hint="use letters, digits, _ . - only (what Jenkins accepts as a credentials ID)",
        )
    return chosen


def approval_gate(pipeline: Pipeline, account: str) -> ApprovalGate | None:
    """What the release job into ``account`` waits for, or None when ``account`` requires no
    approval. Refused (InputError) when the job could never apply: an approval is required,
    no approver's Jenkins credentials are named, and the agent that applies may not approve
    its own plan."""
    rule = pipeline.approval(account)
    if not rule.required:
        return None
    chosen = rule.jenkins_credentials_id
    if chosen is None and not rule.allow_self_approval:
        raise InputError(
            f"the release job into {account!r} could never apply: {account} requires an approval "
            f"(pipeline.yaml approvals:), the job has no approver's credentials to record it with, "
            f"and the agent that applies may not approve its own plan",
            hint=f"set approvals.{account}.jenkins_credentials_id to the Jenkins AWS credentials of "
            f"an approver's role, or approvals.{account}.allow_self_approval: true to approve with "
            f"the agent's own credentials (see docs/jenkins.md)",
        )
    if chosen is not None and not _CREDENTIALS_ID_RE.fullmatch(chosen):
        raise InputError(
            f"approvals.{account}.jenkins_credentials_id {chosen!r} is not a Jenkins credentials id",
            hint="use letters, digits, _ . - only (what Jenkins accepts as a credentials ID)",
        )
    return ApprovalGate(tuple(rule.jenkins_submitters), chosen)


def job_specs(pipeline: Pipeline, account: str) -> list[JobSpec]:
    """The jobs of destination ``account``. The build account has none: it never pulls
    (StageRuleError, exit 3). A stage that requires an approval gets only the release job
    (plan, input, approve, apply): cloudops refuses an image or a package promoted into it
    alone (stages.require_outside_release_approval), so such jobs could never succeed."""
    route = promotion_route(pipeline, account)
    if not pipeline.images:
        raise InputError(
            "pipeline.yaml lists no images: the image job's ECR_REPOSITORY is a choice of them",
            hint="list the image repositories under images: in pipeline.yaml",
        )
    source_id = pipeline.account(route.source).account_id
    account_id = pipeline.account(account).account_id
    approval = approval_gate(pipeline, account)
    source_credentials = CredentialsParameter(
        "SOURCE_ACCOUNT_CREDENTIALS",
        credentials_id(pipeline, route.source),
        f"AWS credentials of the source account {route.source} ({source_id}): read access to "
        f"its ECR and bucket is enough. Bound only for the promotion step.",
    )
    # The release job into a stage that requires an approval promotes in two steps.
    planned_source_credentials = replace(
        source_credentials,
        description=source_credentials.description.replace(
            "for the promotion step.", "for the plan and apply steps."
        ),
    )

    def job(
        kind: JobKind,
        *parameters: Parameter,
        images: tuple[str, ...] = (),
        approval: ApprovalGate | None = None,
    ) -> JobSpec:
        credentials = source_credentials if approval is None else planned_source_credentials
        return JobSpec(
            kind, account, account_id, route.source, source_id, (credentials, *parameters), images, approval
        )

    jobs = [
        job(
            "image",
            ChoiceParameter(
                "ECR_REPOSITORY", tuple(pipeline.images), "ECR repository to promote (pipeline.yaml images)."
            ),
            StringParameter(
                "IMAGE_TAG",
                "",
                "Image tag to promote: 1-128 letters, digits, _ . - not starting with . or -. "
                f"It must exist in {route.source}; the digest it names is copied as it is.",
            ),
            images=tuple(pipeline.images),
        ),
        job(
            "package",
            StringParameter(
                "PACKAGE_VERSION",
                "",
                f"Deployment package version to promote from {route.source} "
                f"(empty: the current version in {route.source}).",
            ),
        ),
        job(
            "release",
            StringParameter(
                "RELEASE_FILE", "", "Release file to promote: a path relative to the workspace of this job."
            ),
            approval=approval,
        ),
    ]
    return jobs if approval is None else [j for j in jobs if j.kind == "release"]
