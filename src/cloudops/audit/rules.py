"""The best-practice rules, judged on the facts read from each account. Pure: every rule
takes the pipeline and the facts and returns findings, plus a note on what it could
not check (an unreachable account is a finding of its own, under "identity")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from cloudops.audit.facts import AccountFacts
from cloudops.audit.findings import Finding, RuleResult, Severity
from cloudops.aws.ecr import desired_repository, read_policy_document, repository_drift
from cloudops.config import check_config
from cloudops.pipeline.model import Pipeline, check_rules
from cloudops.refs import parse_ecr_host
from cloudops.repository_policy import ANYONE, PolicyError, push_grants

Facts = dict[str, AccountFacts]
Rule = Callable[[Pipeline, Facts], tuple[list[Finding], str]]


def _unchecked(facts: Facts, rule: str, names: list[str] | None = None) -> list[str]:
    return [n for n in (names if names is not None else list(facts)) if not facts[n].checked(rule)]


def _note(unchecked: list[str], extra: str = "") -> str:
    parts = [extra] if extra else []
    if unchecked:
        parts.append(f"not checked in {', '.join(unchecked)} (see the identity findings)")
    return "; ".join(parts)


def identity(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    findings = [
        Finding("identity", "error", None, message, "fix pipeline.yaml", "pipeline.yaml")
        for _, message in check_rules(pipeline)
    ]
    by_id = {a.account_id: n for n, a in pipeline.accounts.items()}
    for name, fact in facts.items():
        if fact.error is not None:
            findings.append(
                Finding(
                    "identity",
                    "error",
                    name,
                    f"account {name} ({fact.account_id}) cannot be reached: {fact.error}",
                    f"check {name}'s credentials in pipeline.yaml and the network; the rest of the "
                    f"audit skipped {name}",
                )
            )
        elif fact.caller_account != fact.account_id:
            owner = by_id.get(fact.caller_account or "")
            whose = f" (account {owner}'s)" if owner else ""
            findings.append(
                Finding(
                    "identity",
                    "error",
                    name,
                    f"the credentials configured for {name} act in account {fact.caller_account}{whose}, "
                    f"not in {fact.account_id} ({fact.caller_arn})",
                    f"give {name} credentials of account {fact.account_id}; "
                    f"the rest of the audit skipped {name}",
                    "pipeline.yaml",
                )
            )
    builders = [n for n, a in pipeline.accounts.items() if a.builds_images]
    return findings, f"{len(facts)} accounts on distinct ids; images built in {', '.join(builders)} only"


def ownership(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    """Each account's bucket is owned by that account (S3's bucket owner condition, asked
    with the account's id), and its registry is its own ECR (or a host mapped to it)."""
    rule = "ownership"
    findings: list[Finding] = []
    for name, account in pipeline.accounts.items():
        host = pipeline.registry_host(name)
        ecr = parse_ecr_host(host)
        if ecr is not None and (ecr.account_id, ecr.region) != (account.account_id, account.region):
            findings.append(
                Finding(
                    rule,
                    "error",
                    name,
                    f"{name}'s registry {host} is the ECR of account {ecr.account_id} ({ecr.region}), "
                    f"not {name}'s ({account.account_id}, {account.region})",
                    f"map {name} to its own registry in pipeline.yaml endpoints.registries",
                    "pipeline.yaml",
                )
            )
    for name, fact in facts.items():
        if not fact.checked(rule) or fact.bucket_state != "foreign":
            continue
        owner = fact.bucket_owner
        whose = (
            f"account {owner!r} ({pipeline.account(owner).account_id})"
            if owner in pipeline.accounts
            else "another account"
        )
        findings.append(
            Finding(
                rule,
                "error",
                name,
                f"{name}'s bucket {fact.bucket} is owned by {whose}, not by {name} ({fact.account_id}): "
                f"promotions into {name} would write there, and cloudops refuses them",
                f"set accounts.{name}.bucket in pipeline.yaml to a bucket of {name}'s own "
                f"(default ep-cloudops-{fact.account_id}), then run cloudops init {name}",
                f"s3://{fact.bucket}",
            )
        )
    return findings, _note(_unchecked(facts, rule), "buckets asked with ExpectedBucketOwner")


def source_repositories(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    sources = pipeline.source_repositories
    if sources is None or not sources.names:
        return [], "skipped: pipeline.yaml names no source_repositories"
    rule = "source-repositories"
    findings: list[Finding] = []
    for name, fact in facts.items():
        if not fact.checked(rule):
            continue
        for repo, exists in fact.source_repositories.items():
            if name == sources.account and not exists:
                findings.append(
                    Finding(
                        rule,
                        "error",
                        name,
                        f"source repository {repo} does not exist in its hosting account {name}",
                        f"create {repo} in {name}'s CodeCommit (the one copy), or fix "
                        "source_repositories in pipeline.yaml",
                        f"codecommit:{repo}",
                    )
                )
            elif name != sources.account and exists:
                findings.append(
                    Finding(
                        rule,
                        "error",
                        name,
                        f"a copy of source repository {repo} exists in {name}; it belongs to "
                        f"{sources.account} only",
                        f"delete {repo} from {name}'s CodeCommit and reference the one in {sources.account}",
                        f"codecommit:{repo}",
                    )
                )
    return findings, _note(_unchecked(facts, rule), f"{', '.join(sources.names)} hosted in {sources.account}")


def ecr_push_policy(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    rule = "ecr-push-policy"
    by_id = {a.account_id: n for n, a in pipeline.accounts.items()}
    findings: list[Finding] = []
    for name, fact in facts.items():
        if not fact.checked(rule):
            continue
        for repo, repo_facts in sorted(fact.repositories.items()):
            if repo_facts.policy is None:
                continue
            try:
                grants = push_grants(repo_facts.policy, fact.account_id)
            except PolicyError as error:
                findings.append(
                    Finding(
                        rule, "warning", name, f"repository {repo}: {error}", "fix the policy", f"ecr:{repo}"
                    )
                )
                continue
            for grant in grants:
                who = "anyone" if grant.principal == ANYONE else f"account {grant.principal}"
                if grant.principal in by_id:
                    who += f" ({by_id[grant.principal]})"
                findings.append(
                    Finding(
                        rule,
                        "error",
                        name,
                        f"the policy of ECR repository {repo} lets {who} push ({', '.join(grant.actions)})",
                        f"remove the statement{f' {grant.sid!r}' if grant.sid else ''} or reduce it to pull "
                        f"actions: only {name} writes its own ECR (promotions run with {name}'s credentials)",
                        f"ecr:{repo}",
                    )
                )
    return findings, _note(_unchecked(facts, rule))


def repository_settings(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    """Each pipeline image's repository, in every account, has pipeline.yaml's settings
    (repositories: section): an error for mutable tags or another encryption, a warning
    for any other drift, for a missing repository, and for tags pipeline.yaml itself lets
    move (MUTABLE)."""
    rule = "repository-settings"
    findings: list[Finding] = []
    managed = pipeline.repositories is not None
    for name, fact in facts.items():
        if not fact.checked(rule):
            continue
        init = f"cloudops init {name}"
        for repo in pipeline.images:
            desired = desired_repository(pipeline.repository_settings(repo), name)
            repo_facts = fact.repositories.get(repo)
            if repo_facts is None:
                findings.append(
                    Finding(
                        rule,
                        "warning",
                        name,
                        f"ECR repository {repo} does not exist in {name}",
                        f"create it with pipeline.yaml's settings: {init}",
                        f"ecr:{repo}",
                    )
                )
                continue
            if repo_facts.state is None:
                continue  # not described (hand-made facts)
            state = replace(
                repo_facts.state,
                lifecycle=read_policy_document(repo_facts.lifecycle),
                policy=read_policy_document(repo_facts.policy),
                policies_read=repo_facts.lifecycle_read,
            )
            for drift in repository_drift(state, desired):
                mutable = drift.setting == "tag_immutability" and state.tag_mutability != "IMMUTABLE"
                severity: Severity = "error" if drift.setting == "encryption" or mutable else "warning"
                findings.append(
                    Finding(
                        rule,
                        severity,
                        name,
                        f"ECR repository {repo} in {name}: {drift.setting} is {drift.was}, pipeline.yaml "
                        f"says {drift.now}",
                        drift.fix
                        if not drift.correctable
                        else f"correct it: {init} (--dry-run first to see it)",
                        f"ecr:{repo}",
                    )
                )
            if desired.tag_mutability == "MUTABLE" and state.tag_mutability == "MUTABLE":
                findings.append(
                    Finding(
                        rule,
                        "warning",
                        name,
                        f"ECR repository {repo} in {name} has mutable tags, as pipeline.yaml asks: a tag "
                        "can then be moved to another image after it was promoted",
                        f"set tag_immutability: IMMUTABLE for {repo} in pipeline.yaml, then {init}",
                        f"ecr:{repo}",
                    )
                )
    note = "" if managed else "lifecycle and repository policies not managed (no repositories: section)"
    return findings, _note(_unchecked(facts, rule), note)


def image_provenance(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    rule = "image-provenance"
    build = pipeline.build_account
    if not facts[build].checked(rule):
        return [], f"skipped: the build account {build} could not be read"
    built = {repo: set(r.images) for repo, r in facts[build].repositories.items()}
    findings: list[Finding] = []
    for name, fact in facts.items():
        if name == build or not fact.checked(rule):
            continue
        for repo, repo_facts in sorted(fact.repositories.items()):
            for digest, tags in sorted(repo_facts.images.items()):
                if digest in built.get(repo, set()):
                    continue
                tagged = f" (tags {', '.join(sorted(tags))})" if tags else " (untagged)"
                findings.append(
                    Finding(
                        rule,
                        "error",
                        name,
                        f"image {repo}@{digest[:19]}…{tagged} in {name} does not exist in {build}, the "
                        "build account: it was built or pushed outside the pipeline",
                        f"delete it from {name} (aws ecr batch-delete-image) and promote the image from "
                        f"{build}: cloudops promote image --to {name} --repository {repo} --tag TAG",
                        f"ecr:{repo}@{digest}",
                    )
                )
    return findings, _note(_unchecked(facts, rule))


def deployment_package(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    rule = "deployment-package"
    build = pipeline.build_account
    if not any(f.packages or f.current_package or f.invalid_pointer for f in facts.values()):
        return [], "skipped: no deployment package in any account yet"
    # An invalid current.json (hostile input, aws/s3_json.py) is a finding wherever it is.
    findings: list[Finding] = [
        Finding(
            rule,
            "warning",
            name,
            fact.invalid_pointer,
            f"move the pointer again: cloudops promote package --to {name} --version V"
            if name != build
            else "publish the package again: cloudops package publish FILE --version V",
            f"s3://{fact.bucket}",
        )
        for name, fact in facts.items()
        if fact.invalid_pointer is not None and fact.checked(rule)
    ]
    if not facts[build].checked(rule):
        return findings, f"skipped: the build account {build} could not be read"
    published = {p.sha256 for p in facts[build].packages if p.sha256}
    build_current = facts[build].current_package
    for name, fact in facts.items():
        if name == build or not fact.checked(rule):
            continue
        repromote = f"delete it and promote the package from {build}: cloudops promote package --to {name}"
        for package in fact.packages:
            uri = f"s3://{fact.bucket}/{package.key}"
            if package.sha256 is None:
                findings.append(
                    Finding(
                        rule,
                        "warning",
                        name,
                        f"{package.key} records no SHA-256: it cannot be proven to come from {build}",
                        repromote,
                        uri,
                    )
                )
            elif package.sha256 not in published:
                findings.append(
                    Finding(
                        rule,
                        "error",
                        name,
                        f"{package.key} (sha256 {package.sha256[:12]}…) was never published in {build}, "
                        "the build account",
                        repromote,
                        uri,
                    )
                )
        findings += _lag(pipeline, name, fact, build, build_current)
    return findings, _note(_unchecked(facts, rule))


def _lag(
    pipeline: Pipeline, name: str, fact: AccountFacts, build: str, build_current: dict[str, str] | None
) -> list[Finding]:
    if build_current is None:
        return []
    current = fact.current_package
    fix = f"promote it stage by stage: cloudops promote package --to {name}"
    if pipeline.approval(name).required:  # such a stage takes releases only (docs/releases.md)
        fix = (
            f"promote a release into it when one is due: cloudops plan --to {name} --release FILE "
            "--out PLAN.json, cloudops approve PLAN.json, cloudops apply PLAN.json"
        )
    if current is None and not fact.packages:
        what = f"{name} has no deployment package yet; {build}'s current is {build_current['version']}"
    elif current is not None and current["sha256"] != build_current["sha256"]:
        what = (
            f"{name}'s current package {current['version']} lags behind {build}'s {build_current['version']}"
        )
    else:
        return []
    return [Finding("deployment-package", "info", name, what, fix, f"s3://{fact.bucket}")]


def config(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], str]:
    report = check_config(pipeline)
    findings = [
        Finding(
            "config", f.severity, f.account, f.message, f.fix, f.where if f.file else str(report.config_dir)
        )
        for f in report.findings
    ]
    return findings, f"{report.files_parsed} .env files in {report.config_dir}"


ALL_RULES: list[tuple[str, Rule]] = [
    ("identity", identity),
    ("ownership", ownership),
    ("source-repositories", source_repositories),
    ("ecr-push-policy", ecr_push_policy),
    ("repository-settings", repository_settings),
    ("image-provenance", image_provenance),
    ("deployment-package", deployment_package),
    ("config", config),
]


def judge(pipeline: Pipeline, facts: Facts) -> tuple[list[Finding], list[RuleResult]]:
    findings: list[Finding] = []
    results: list[RuleResult] = []
    for name, rule in ALL_RULES:
        found, note = rule(pipeline, facts)
        findings += found
        if any(f.counts for f in found):
            status = "failed"
        elif note.startswith("skipped"):
            status = "skipped"
        else:
            status = "passed"
        results.append(RuleResult(name, status, note))  # type: ignore[arg-type]
    return findings, results
