"""`cloudops jenkins render --account A --out DIR`."""

from __future__ import annotations

from pathlib import Path

import click

from cloudops.cli.context import pipeline_option
from cloudops.cli.output import emit_json, handles_errors, stderr
from cloudops.jenkins import render_account, write_rendered
from cloudops.pipeline.model import load_pipeline


@click.group()
def jenkins() -> None:
    """Jenkins jobs for the destination accounts (see docs/jenkins.md)."""


@jenkins.command("render")
@click.option("--account", required=True, metavar="ACCOUNT", help="Destination account the jobs run for.")
@click.option(
    "--out",
    "out",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the jobs into (one subdirectory per job).",
)
@pipeline_option
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON on stdout.")
@handles_errors
def render(account: str, out: Path, pipeline_file: str | None, as_json: bool) -> None:
    """Write ACCOUNT's Jenkins jobs: promote image, promote package, promote release; for a
    stage that requires approvals (pipeline.yaml approvals:), the release job only.

    Each job gets a Jenkinsfile, its shell step alone (promote-KIND.sh), a
    jenkins-job-builder definition (job.yaml) and the config.xml JJB renders from it. The
    job binds the source account's AWS credentials (the SOURCE_ACCOUNT_CREDENTIALS
    parameter) for the promotion step only and runs `cloudops promote KIND --to ACCOUNT`
    with the agent's own credentials. Into a stage that requires approvals the release job
    plans, waits at Jenkins' input step, approves with the approver's credentials
    (approvals.<stage>.jenkins_credentials_id) and applies (plan-, approve-, apply-release.sh;
    docs/jenkins.md). Refused (exit 3) for the build account: it never pulls; exit 2 for
    such a stage without approver credentials unless it allows self-approval.
    """
    pipeline = load_pipeline(pipeline_file)
    jobs = render_account(pipeline, account)
    written = write_rendered(jobs, out)
    if as_json:
        emit_json(
            {
                "account": account,
                "account_id": pipeline.account(account).account_id,
                "source_account": jobs[0].spec.source,
                "source_credentials_id": jobs[0].spec.source_credentials.default,
                "jobs": [
                    {
                        "name": job.spec.name,
                        "kind": job.spec.kind,
                        "parameters": [p.name for p in job.spec.parameters],
                        "files": [str(p) for p in written[job.spec.name]],
                    }
                    for job in jobs
                ],
            }
        )
        return
    for job in jobs:
        stderr.print(f"[green]✓[/] {job.spec.name}: {', '.join(p.name for p in job.spec.parameters)}")
        for path in written[job.spec.name]:
            stderr.print(f"    {path}")
    stderr.print(f"install them in account {account}'s Jenkins: see docs/jenkins.md")
