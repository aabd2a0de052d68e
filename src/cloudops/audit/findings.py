"""What the audit reports: findings (severity, account, what, how to fix) and, per rule,
whether it passed, failed or could not be checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info"]
RuleStatus = Literal["passed", "failed", "skipped"]

RULES: dict[str, str] = {
    "identity": "every environment on its own account; credentials act in their configured account",
    "ownership": "each account's bucket and ECR registry belong to that account",
    "source-repositories": "each source repository exists once, in its hosting account",
    "ecr-push-policy": "no ECR repository policy lets another account push",
    "repository-settings": "every image repository has pipeline.yaml's settings (immutable tags, scanning, "
    "encryption, lifecycle, policy)",
    "image-provenance": "every image in a downstream account was built in the build account",
    "deployment-package": "every account's deployment package was published in the build account",
    "config": "config is unique to each account and names only its own resources",
    "lifecycle-guard": "no ECR lifecycle rule expires an image the current release or a release kept for "
    "rollback uses",
    "signatures": "every image in a stage that requires signatures carries a valid cosign signature",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    account: str | None
    what: str
    fix: str
    where: str | None = None  # a file:line, an s3:// URI, a repository

    @property
    def counts(self) -> bool:
        """Errors and warnings fail the audit (exit 4); info (a stage not yet promoted to)
        is the normal state of a staged pipeline and is only shown."""
        return self.severity != "info"

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "account": self.account,
            "what": self.what,
            "where": self.where,
            "fix": self.fix,
        }


@dataclass
class RuleResult:
    rule: str
    status: RuleStatus
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "title": RULES[self.rule], "status": self.status, "note": self.note}


@dataclass
class AuditReport:
    findings: list[Finding] = field(default_factory=list)
    rules: list[RuleResult] = field(default_factory=list)
    accounts: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.counts for f in self.findings)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "summary": {
                severity: sum(1 for f in self.findings if f.severity == severity)
                for severity in ("error", "warning", "info")
            },
            "accounts": self.accounts,
            "rules": [r.as_dict() for r in self.rules],
            "findings": [f.as_dict() for f in self.findings],
        }
