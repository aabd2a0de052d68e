"""Jenkins jobs for each destination account, rendered from pipeline.yaml (docs/jenkins.md).

Each destination account's Jenkins gets one job per kind of promotion (image, deployment
package, release). The job takes the source account's AWS credentials as a parameter,
binds them for the promotion step only, and runs `cloudops promote ... --to ACCOUNT` with
the agent's own credentials, which the account guard checks belong to ACCOUNT.
"""

from __future__ import annotations

from cloudops.jenkins.jobs import (
    KINDS,
    TAG_PATTERN,
    ChoiceParameter,
    CredentialsParameter,
    JobKind,
    JobSpec,
    StringParameter,
    credentials_id,
    job_specs,
)
from cloudops.jenkins.render import RenderedJob, render_account, write_rendered

__all__ = [
    "KINDS",
    "TAG_PATTERN",
    "ChoiceParameter",
    "CredentialsParameter",
    "JobKind",
    "JobSpec",
    "RenderedJob",
    "StringParameter",
    "credentials_id",
    "job_specs",
    "render_account",
    "write_rendered",
]
