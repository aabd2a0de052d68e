"""What the Jenkins jobs of one destination account are, from pipeline.yaml alone (pure).

The best-practice guide puts a promotion job in the Jenkins server of EACH destination
account, taking the source account's credentials and what to promote as parameters. One
job per kind of promotion: image, deployment package, release. Every value in a job comes
from the pipeline file: account names and ids, the image repositories, credentials ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
class JobSpec:
    """One Jenkins job of a destination account."""

    kind: JobKind
    account: str
    account_id: str
    source: str
    source_id: str
    parameters: tuple[Parameter, ...]
    images: tuple[str, ...] = ()

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


def job_specs(pipeline: Pipeline, account: str) -> list[JobSpec]:
    """The jobs of destination ``account``. The build account has none: it never pulls
    (StageRuleError, exit 3)."""
    route = promotion_route(pipeline, account)
    if not pipeline.images:
        raise InputError(
            "pipeline.yaml lists no images: the image job's ECR_REPOSITORY is a choice of them",
            hint="list the image repositories under images: in pipeline.yaml",
        )
    source_id = pipeline.account(route.source).account_id
    account_id = pipeline.account(account).account_id
    source_credentials = CredentialsParameter(
        "SOURCE_ACCOUNT_CREDENTIALS",
        credentials_id(pipeline, route.source),
        f"AWS credentials of the source account {route.source} ({source_id}): read access to "
        f"its ECR and bucket is enough. Bound only for the promotion step.",
    )

    def job(kind: JobKind, *parameters: Parameter, images: tuple[str, ...] = ()) -> JobSpec:
        return JobSpec(
            kind, account, account_id, route.source, source_id, (source_credentials, *parameters), images
        )

    return [
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
        ),
    ]
