"""`cloudops audit`: read every account (in parallel, each with its own credentials),
then judge the facts against the best practices (rules.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from cloudops.audit.facts import AccountFacts, gather
from cloudops.audit.findings import AuditReport
from cloudops.audit.lifecycle_rule import lifecycle_guard
from cloudops.audit.rules import judge
from cloudops.audit.signature_rule import signature_rule
from cloudops.pipeline.context import PipelineContext


def run_audit(context: PipelineContext) -> AuditReport:
    names = list(context.pipeline.stages)
    with ThreadPoolExecutor(max_workers=min(8, len(names) or 1)) as pool:
        facts: dict[str, AccountFacts] = dict(
            zip(names, pool.map(lambda n: gather(context, n), names), strict=True)
        )
    findings, rules = judge(context.pipeline, facts)
    # Reads the accounts again (policies, images, releases): its own facts, lifecycle_rule.py.
    lifecycle_findings, lifecycle_result = lifecycle_guard(context, names)
    findings += lifecycle_findings
    rules.append(lifecycle_result)
    # Only with verify.required_for in pipeline.yaml; reads the required stages' registries.
    signed = signature_rule(context, facts)
    if signed is not None:
        findings += signed[0]
        rules.append(signed[1])
    return AuditReport(findings, rules, {name: fact.summary() for name, fact in facts.items()})
