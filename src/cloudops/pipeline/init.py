"""`cloudops init ACCOUNT`: the account's own ECR repositories and bucket, idempotently.
Each account is initialized on its own, with its own credentials (the guard checks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloudops.aws.ecr import EcrRepositories, RepositoryChange
from cloudops.aws.guard import require_account
from cloudops.aws.s3 import AccountBucket, BucketChange
from cloudops.pipeline.context import PipelineContext


@dataclass
class InitReport:
    account: str
    account_id: str
    dry_run: bool
    repositories: dict[str, RepositoryChange] = field(default_factory=dict)
    bucket: str = ""
    bucket_change: BucketChange = "unchanged"
    bucket_steps: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.bucket_change != "unchanged" or any(c != "unchanged" for c in self.repositories.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "account_id": self.account_id,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "repositories": self.repositories,
            "bucket": {"name": self.bucket, "change": self.bucket_change, "steps": self.bucket_steps},
        }


def init_account(context: PipelineContext, name: str, *, dry_run: bool = False) -> InitReport:
    session = context.session(name)
    require_account(session, purpose=f"initialize account {name!r}")
    report = InitReport(name, session.account.account_id, dry_run)
    bucket = AccountBucket(session, context.pipeline.bucket(name))
    bucket.exists()  # a bucket another account owns is refused before anything is written
    repositories = EcrRepositories(session)
    for repo, state in repositories.describe(list(context.pipeline.images)).items():
        report.repositories[repo] = repositories.ensure(state, dry_run=dry_run)
    report.bucket = bucket.name
    report.bucket_change, report.bucket_steps = bucket.ensure(dry_run=dry_run)
    return report
