"""The audit's lifecycle guard (issue 16): no ECR lifecycle rule may expire an image the
account runs (its current release) or keeps for rollback (the newest N of its release
log). Reads each account itself (lifecycle_preview.py, read calls only, behind the
account guard); an account that cannot be read is skipped and named, never judged."""

from __future__ import annotations

from cloudops.audit.findings import Finding, RuleResult
from cloudops.errors import CloudopsError
from cloudops.lifecycle_preview import (
    DEFAULT_KEEP_RELEASES,
    ExpiringImage,
    LifecyclePreview,
    preview_lifecycle,
)
from cloudops.pipeline.context import PipelineContext
from cloudops.report.model import short_digest

RULE = "lifecycle-guard"
TITLE = "no ECR lifecycle rule expires an image the current release or a release kept for rollback uses"


def lifecycle_guard(
    context: PipelineContext, accounts: list[str], *, keep_releases: int = DEFAULT_KEEP_RELEASES
) -> tuple[list[Finding], RuleResult]:
    """An error finding per digest a lifecycle rule would expire while a kept release uses
    it; a warning per repository whose policy cannot be evaluated (what it expires is not
    known); ``skipped`` with why for accounts that cannot be read."""
    findings: list[Finding] = []
    unread: list[str] = []
    for account in accounts:
        try:
            found = preview_lifecycle(context, account, keep_releases=keep_releases)
        except CloudopsError as exc:
            unread.append(f"{account}: {exc.message}")
            continue
        findings += _judge(found)
    if unread and len(unread) == len(accounts):
        return findings, RuleResult(RULE, "skipped", "no account could be read: " + "; ".join(unread))
    note = ("not read: " + "; ".join(unread)) if unread else ""
    if any(f.counts for f in findings):
        return findings, RuleResult(RULE, "failed", note)
    return findings, RuleResult(RULE, "passed", note)


def _judge(found: LifecyclePreview) -> list[Finding]:
    findings = [_in_use(found.account, item) for item in found.in_use]
    for repository in found.problems:
        findings.append(
            Finding(
                rule=RULE,
                severity="warning",
                account=found.account,
                what=f"the lifecycle policy of {repository.repository} cannot be evaluated: "
                f"{repository.problem}",
                fix="make it a policy of expire rules as ECR documents them (cloudops lifecycle preview "
                f"--account {found.account} shows what is wrong), or remove it",
                where=repository.repository,
            )
        )
    return findings


def _in_use(account: str, item: ExpiringImage) -> Finding:
    image = item.expiry.image
    tags = ", ".join(image.tags[:5]) or "untagged"
    users = ", ".join(u.label for u in item.in_use_by)
    rule = item.expiry.rule_label
    return Finding(
        rule=RULE,
        severity="error",
        account=account,
        what=f"{item.repository}@{short_digest(image.digest)} ({tags}) would be expired by lifecycle "
        f"{rule} while release {users} uses it",
        fix=f"change lifecycle {rule} of {item.repository}: raise its imageCountMoreThan above the "
        "number of images it selects that releases still use, lengthen its sinceImagePushed days, "
        "or narrow its tagPrefixList/tagPatternList so that release tags are not selected",
        where=f"{item.repository}@{image.digest}",
    )
