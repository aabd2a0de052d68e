"""The best-practice audit: one account per environment, images built in one account only,
each account writing only its own ECR, one copy of each source repository, the deployment
package propagated from the build account, config unique to each account."""

from cloudops.audit.findings import RULES, AuditReport, Finding, RuleResult
from cloudops.audit.run import run_audit

__all__ = ["RULES", "AuditReport", "Finding", "RuleResult", "run_audit"]
