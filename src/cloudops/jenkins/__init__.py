"""Jenkins jobs for each destination account, rendered from pipeline.yaml (docs/jenkins.md).

Each destination account's Jenkins gets one job per kind of promotion (image, deployment
package, release). The job takes the source account's AWS credentials as a parameter,
binds them for the promotion step only, and runs `cloudops promote ... --to ACCOUNT` with
the agent's own credentials, which the account guard checks belong to ACCOUNT.

The release job into a stage that requires an approval (pipeline.yaml approvals:) plans,
waits for Jenkins' input step, approves that plan with the approver's credentials, then
applies exactly that plan (`cloudops plan`, `approve`, `apply`).
"""

from __future__ import annotations

from cloudops.jenkins.jobs import (
    KINDS,
    TAG_PATTERN,
    ApprovalGate,
    ChoiceParameter,
    CredentialsParameter,
    JobKind,
    JobSpec,
    StringParameter,
    approval_gate,
    credentials_id,
    job_specs,
)
from cloudops.jenkins.render import RenderedJob, render_account, write_rendered
from cloudops.jenkins.shell import ShellStep, shell_steps

__all__ = [
    "KINDS",
    "TAG_PATTERN",
    "ApprovalGate",
    "ChoiceParameter",
    "CredentialsParameter",
    "JobKind",
    "JobSpec",
    "RenderedJob",
    "ShellStep",
    "StringParameter",
    "approval_gate",
    "credentials_id",
    "job_specs",
    "render_account",
    "shell_steps",
    "write_rendered",
]
