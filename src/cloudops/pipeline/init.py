"""`cloudops init ACCOUNT`: the account's own ECR repositories and bucket, idempotently.
Each account is initialized on its own, with its own credentials (the guard checks).

Every pipeline image's repository gets the settings of pipeline.yaml's ``repositories:``
section (docs/accounts.md): a setting that drifted is corrected and reported (repository,
setting, was -> now); encryption, which ECR cannot change, is reported as drift init
cannot correct, with the fix."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloudops.aws.ecr import Drift, EcrRepositories, RepositoryChange, desired_repository
from cloudops.aws.guard import require_account
from cloudops.aws.s3 import AccountBucket, BucketChange
from cloudops.pipeline.context import PipelineContext


@dataclass
class InitReport:
    account: str
    account_id: str
    dry_run: bool
    repositories: dict[str, RepositoryChange] = field(default_factory=dict)
    changes: list[Drift] = field(default_factory=list)
    """Settings that drifted and were corrected (or would be, in a dry run)."""
    uncorrectable: list[Drift] = field(default_factory=list)
    """Settings that drifted and init cannot correct (encryption), each with its fix."""
    bucket: str = ""
    bucket_change: BucketChange = "unchanged"
    bucket_steps: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.bucket_change != "unchanged" or any(c != "unchanged" for c in self.repositories.values())

    @property
    def complete(self) -> bool:
        """The account is (or, in a dry run, would be) what pipeline.yaml says."""
        return not self.uncorrectable

    def as_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "account_id": self.account_id,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "complete": self.complete,
            "repositories": self.repositories,
            "changes": [d.as_dict() for d in self.changes],
            "uncorrectable": [d.as_dict() for d in self.uncorrectable],
            "bucket": {"name": self.bucket, "change": self.bucket_change, "steps": self.bucket_steps},
        }


def init_account(context: PipelineContext, name: str, *, dry_run: bool = False) -> InitReport:
    session = context.session(name)
    require_account(session, purpose=f"initialize account {name!r}")
    report = InitReport(name, session.account.account_id, dry_run)
    bucket = AccountBucket(session, context.pipeline.bucket(name))
    bucket.exists()  # a bucket another account owns is refused before anything is written
    pipeline = context.pipeline
    desired = {repo: desired_repository(pipeline.repository_settings(repo), name) for repo in pipeline.images}
    repositories = EcrRepositories(session)
    policies = any(d.manage_policies for d in desired.values())
    for repo, state in repositories.describe(list(pipeline.images), policies=policies).items():
        change, drifts = repositories.ensure(state, desired[repo], dry_run=dry_run)
        report.repositories[repo] = change
        report.changes += [d for d in drifts if d.correctable]
        report.uncorrectable += [d for d in drifts if not d.correctable]
    report.bucket = bucket.name
    report.bucket_change, report.bucket_steps = bucket.ensure(dry_run=dry_run)
    return report
