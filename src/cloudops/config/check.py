"""`cloudops config check`: each account's config is its own and names only its own things.

Reads every account's folder (<config_dir>/<account>/AWS/Config/author.env, live.env, ...)
and reports, with file and line:

- a missing or unreadable account folder or required file;
- a line the dotenv parser cannot read, a binary file;
- a value naming another account: its id, registry host or bucket, or a host name that
  another account's config uses too (prod pointing at QA's database);
- the same secret in two accounts: the value of a secret key (PASS, PWD, SECRET, TOKEN,
  KEY, AUTH, CREDENTIAL) or a secret inside any value (a URL's password, ?password=,
  Oracle's user/password@), compared part for part: EP_DB_PASS in one account and the
  password inside EP_DB_URL in another are the same secret;
- a file shared between accounts by symlink or hard link, or an identical .env file.

Nothing here writes: config is never copied between accounts.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cloudops.config.envfile import EnvFile, read_env_file
from cloudops.config.hosts import contains_account_id, contains_token, host_tokens, hosts_in
from cloudops.config.secrets import embedded_secrets, is_real_secret, is_secret_key, mask_embedded
from cloudops.config.tree import (
    CONFIG_SUBDIR,
    REQUIRED_FILES,
    AccountTree,
    TreeFile,
    missing_required,
    relative_to,
    scan_account,
)
from cloudops.pipeline.model import Pipeline
from cloudops.refs import ecr_host

Severity = Literal["error", "warning"]
FindingKind = Literal[
    "missing",
    "unreadable",
    "syntax",
    "cross-account",
    "shared-secret",
    "shared-file",
    "identical-file",
    "unknown-folder",
]
ENVNAME_KEY = "EP_COMMERCE_ENVNAME"


@dataclass(frozen=True)
class ConfigFinding:
    kind: FindingKind
    severity: Severity
    account: str | None
    file: str | None  # relative to the config folder
    line: int | None
    key: str | None
    message: str
    fix: str

    @property
    def where(self) -> str:
        if self.file is None:
            return "config"
        return f"{self.file}:{self.line}" if self.line else self.file

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "account": self.account,
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class ConfigReport:
    config_dir: Path
    accounts: list[str]
    files_parsed: int = 0
    findings: list[ConfigFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "config_dir": str(self.config_dir),
            "accounts": self.accounts,
            "files_parsed": self.files_parsed,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class _Parsed:
    file: TreeFile
    env: EnvFile


def check_config(pipeline: Pipeline) -> ConfigReport:
    config_dir = pipeline.config_dir
    order = [*pipeline.stages, *(a for a in pipeline.accounts if a not in pipeline.stages)]
    report = ConfigReport(config_dir, order)
    if not _config_dir_usable(config_dir, report):
        return report
    trees = {name: scan_account(config_dir, name) for name in order}
    _unknown_folders(config_dir, order, report)
    for name in order:
        _tree_problems(trees[name], config_dir, report)
    shared = _links(trees, config_dir, order, report)
    parsed = _parse(trees, shared, report)
    report.files_parsed = sum(len(p) for p in parsed.values())
    _identical(parsed, order, report)
    _identity_references(pipeline, parsed, order, report)
    _shared_hosts(parsed, order, report)
    _shared_secrets(parsed, order, report)
    # Stage order, then file and line: each account's findings together, as a reader fixes them.
    report.findings.sort(
        key=lambda f: (order.index(f.account) if f.account in order else -1, f.file or "", f.line or 0)
    )
    return report


def _config_dir_usable(config_dir: Path, report: ConfigReport) -> bool:
    """The config root exists, is a folder and can be listed; otherwise one finding."""
    fix = "create <config>/<account>/AWS/Config/author.env and live.env for every account"
    problem: tuple[FindingKind, str, str] | None = None
    try:
        if not config_dir.exists():
            problem = ("missing", "the config folder does not exist", fix)
        elif not config_dir.is_dir():
            problem = ("unreadable", "the config path is not a folder", fix)
        else:
            os.listdir(config_dir)
    except OSError as exc:
        problem = (
            "unreadable",
            f"the config folder cannot be read ({type(exc).__name__})",
            "give the user running cloudops read access to it",
        )
    if problem is None:
        return True
    kind, message, how = problem
    report.findings.append(ConfigFinding(kind, "error", None, str(config_dir), None, None, message, how))
    return False


def _unknown_folders(config_dir: Path, accounts: list[str], report: ConfigReport) -> None:
    try:
        names = sorted(os.listdir(config_dir))
    except OSError:
        return
    for name in names:
        if name.startswith(".") or name in accounts:
            continue
        report.findings.append(
            ConfigFinding(
                "unknown-folder",
                "warning",
                None,
                name,
                None,
                None,
                f"{name!r} is not an account in pipeline.yaml (accounts: {', '.join(accounts)})",
                "rename it to its account's name, or remove it",
            )
        )


def _tree_problems(tree: AccountTree, config_dir: Path, report: ConfigReport) -> None:
    for where, message in tree.problems:
        missing = "does not exist" in message
        report.findings.append(
            ConfigFinding(
                "missing" if missing else "unreadable",
                "error",
                tree.account,
                where,
                None,
                None,
                message,
                f"create {where}/{CONFIG_SUBDIR.as_posix()}/ with {' and '.join(REQUIRED_FILES)}"
                if missing and where == tree.account
                else "make it a readable file or folder of this account",
            )
        )
    if not tree.usable:
        return
    for where in missing_required(tree, config_dir):
        report.findings.append(
            ConfigFinding(
                "missing",
                "error",
                tree.account,
                where,
                None,
                None,
                f"required file {Path(where).name} is missing",
                f"create it with {tree.account}'s own values",
            )
        )


def _owner(target: Path, roots: dict[str, Path]) -> str | None:
    for name, root in roots.items():
        if target == root or root in target.parents:
            return name
    return None


Located = tuple[str, str]  # (account, path relative to the config folder)


def _links(
    trees: dict[str, AccountTree], config_dir: Path, order: list[str], report: ConfigReport
) -> set[Located]:
    """Report links that leave the account's folder; return the files that merely share
    another account's file (by symlink or hard link). The later rules skip those, so one
    sharing is not reported again as copied hosts, secrets and content."""
    roots = {name: _real(config_dir / name) for name in order if trees[name].usable}
    shared: set[Located] = set()
    outside: dict[Path, list[tuple[str, str]]] = defaultdict(list)
    links = [(f.account, f.relative, f.target) for t in trees.values() for f in t.files if f.symlink]
    links += [(d.account, d.relative, d.target) for t in trees.values() for d in t.linked_dirs]
    for account, relative, target in links:
        if target is None:
            continue  # a dangling link is already a tree problem
        own = roots.get(account)
        if own is not None and (target == own or own in target.parents):
            continue  # a link inside the account's own folder shares nothing
        other = _owner(target, roots)
        if other is not None and other != account:
            shared.add((account, relative))
            report.findings.append(
                ConfigFinding(
                    "shared-file",
                    "error",
                    account,
                    relative,
                    None,
                    None,
                    f"is a symlink to account {other}'s {relative_to(target, _real(config_dir))}: "
                    "the two accounts share one config",
                    f"replace the link with a file of {account}'s own values",
                )
            )
        else:
            outside[target].append((account, relative))
    for target, users in outside.items():
        accounts = sorted({a for a, _ in users}, key=order.index)
        for account, relative in users:
            if len(accounts) > 1:
                if account != accounts[0]:
                    shared.add((account, relative))
                others = ", ".join(a for a in accounts if a != account)
                message = f"is a symlink to {target}, which account(s) {others} use too"
                severity: Severity = "error"
            else:
                message = f"is a symlink to {target}, outside the config folder"
                severity = "warning"
            report.findings.append(
                ConfigFinding(
                    "shared-file",
                    severity,
                    account,
                    relative,
                    None,
                    None,
                    message,
                    f"replace the link with a file of {account}'s own values",
                )
            )
    _hard_links(trees, order, shared, report)
    return shared


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _hard_links(
    trees: dict[str, AccountTree], order: list[str], shared: set[Located], report: ConfigReport
) -> None:
    by_inode: dict[tuple[int, int], list[TreeFile]] = defaultdict(list)
    for tree in trees.values():
        for file in tree.files:
            if not file.symlink and file.device_inode is not None:
                by_inode[file.device_inode].append(file)
    for files in by_inode.values():
        accounts = sorted({f.account for f in files}, key=order.index)
        if len(accounts) > 1:
            first = next(f for f in files if f.account == accounts[0])
            for file in files:
                if file.account == accounts[0]:
                    continue
                shared.add((file.account, file.relative))
                report.findings.append(
                    ConfigFinding(
                        "shared-file",
                        "error",
                        file.account,
                        file.relative,
                        None,
                        None,
                        f"is a hard link to {first.relative}: accounts {accounts[0]} and {file.account} "
                        "share one file",
                        f"replace it with a separate file of {file.account}'s own values",
                    )
                )
        elif files[0].links > len(files):
            file = files[0]
            report.findings.append(
                ConfigFinding(
                    "shared-file",
                    "warning",
                    file.account,
                    file.relative,
                    None,
                    None,
                    f"has {file.links} hard links, some outside the account's folder: another "
                    "place may change it",
                    "replace it with a separate copy",
                )
            )


def _parse(
    trees: dict[str, AccountTree], shared: set[Located], report: ConfigReport
) -> dict[str, list[_Parsed]]:
    parsed: dict[str, list[_Parsed]] = {}
    for name, tree in trees.items():
        parsed[name] = []
        for file in tree.files:
            if not file.is_env or file.target is None:
                continue
            if (file.account, file.relative) in shared:
                continue  # another account's file, reported as shared, judged there
            env = read_env_file(file.path)
            parsed[name].append(_Parsed(file, env))
            for problem in env.problems:
                # Unreadable files and unparsable lines are errors (the application would
                # not see what the file means to say); a repeated key or a bare word is a
                # warning (dotenv reads it, perhaps not as intended).
                serious = not env.readable or problem.serious
                report.findings.append(
                    ConfigFinding(
                        "unreadable" if not env.readable else "syntax",
                        "error" if serious else "warning",
                        name,
                        file.relative,
                        problem.line,
                        None,
                        problem.message,
                        "write it as KEY=value lines of UTF-8 text (dotenv syntax)"
                        if serious
                        else "keep exactly one KEY=value line per key",
                    )
                )
    return parsed


def _identical(parsed: dict[str, list[_Parsed]], order: list[str], report: ConfigReport) -> None:
    by_content: dict[str, list[_Parsed]] = defaultdict(list)
    for items in parsed.values():
        for item in items:
            if item.env.readable and item.env.entries:
                by_content[item.env.sha256].append(item)
    for items in by_content.values():
        for later, first in _later_accounts(items, order):
            report.findings.append(
                ConfigFinding(
                    "identical-file",
                    "error",
                    later.file.account,
                    later.file.relative,
                    None,
                    None,
                    f"is identical to {first.file.relative}: config must be unique to each account",
                    f"give {later.file.account} its own values (host names, database, secrets)",
                )
            )


def _later_accounts(items: Iterable[_Parsed], order: list[str]) -> list[tuple[_Parsed, _Parsed]]:
    """(item, the first-stage item it repeats) for every item outside the first account."""
    ranked = sorted(items, key=lambda i: order.index(i.file.account))
    if len({i.file.account for i in ranked}) < 2:
        return []
    return [(item, ranked[0]) for item in ranked if item.file.account != ranked[0].file.account]


def _identity(pipeline: Pipeline, name: str) -> list[tuple[str, str]]:
    """(what, token) that belong to account ``name``; the id is matched separately."""
    account = pipeline.account(name)
    registries = {pipeline.registry_host(name), ecr_host(account.account_id, account.region)}
    return [("bucket", pipeline.bucket(name))] + [("registry", host) for host in sorted(registries)]


def _identity_references(
    pipeline: Pipeline, parsed: dict[str, list[_Parsed]], order: list[str], report: ConfigReport
) -> None:
    for name in order:
        for item in parsed[name]:
            for entry in item.env.entries:
                if not entry.value or is_secret_key(entry.key):
                    continue  # a secret is compared as a whole (below), never quoted in part
                visible = mask_embedded(entry.value)  # nor is a password inside a URL
                for other in order:
                    if other == name:
                        continue
                    named = [
                        f"{what} {token}"
                        for what, token in _identity(pipeline, other)
                        if contains_token(visible, token)
                    ]
                    other_id = pipeline.account(other).account_id
                    if not named and contains_account_id(visible, other_id):
                        named.append(f"account id {other_id}")
                    if named:
                        report.findings.append(
                            ConfigFinding(
                                "cross-account",
                                "error",
                                name,
                                item.file.relative,
                                entry.line,
                                entry.key,
                                f"{entry.key} names account {other}'s {', '.join(named)}",
                                f"point {entry.key} at {name}'s own resources",
                            )
                        )


@dataclass(frozen=True)
class _Use:
    account: str
    file: str
    line: int
    key: str


def _shared_hosts(parsed: dict[str, list[_Parsed]], order: list[str], report: ConfigReport) -> None:
    uses: dict[str, list[_Use]] = defaultdict(list)
    envnames: dict[str, set[str]] = {name: {name.lower()} for name in order}
    for name in order:
        for item in parsed[name]:
            for entry in item.env.entries:
                if entry.key == ENVNAME_KEY and entry.value and len(entry.value) > 1:
                    envnames[name].add(entry.value.strip().lower())
                if is_secret_key(entry.key):
                    continue
                for host in hosts_in(entry.key, entry.value):
                    uses[host].append(_Use(name, item.file.relative, entry.line, entry.key))
    already = {(f.account, f.file, f.line) for f in report.findings if f.kind == "cross-account"}
    for host, host_uses in sorted(uses.items()):
        accounts = sorted({u.account for u in host_uses}, key=order.index)
        tokens = host_tokens(host)
        named = [a for a in order if envnames[a] & tokens]
        for use in host_uses:
            if (use.account, use.file, use.line) in already:
                continue
            owner = named[0] if len(named) == 1 else None
            smtp = "SMTP" in use.key.upper()
            if len(accounts) > 1:
                if owner == use.account:
                    continue  # the host carries this account's name: the others are wrong
                others = [a for a in accounts if a != use.account]
                whose = (
                    f"account {owner}'s host"
                    if owner
                    else "a host that account(s) " + ", ".join(others) + " use too"
                )
                message = f"{use.key} points at {host}, {whose}"
                severity: Severity = "warning" if smtp else "error"
            elif owner is not None and owner != use.account and not (envnames[use.account] & tokens):
                message = f"{use.key} points at {host}, which carries account {owner}'s name"
                severity = "warning"
            else:
                continue
            report.findings.append(
                ConfigFinding(
                    "cross-account",
                    severity,
                    use.account,
                    use.file,
                    use.line,
                    use.key,
                    message,
                    f"each account uses its own hosts: point {use.key} at {use.account}'s own",
                )
            )


def _shared_secrets(parsed: dict[str, list[_Parsed]], order: list[str], report: ConfigReport) -> None:
    # Grouped by value in memory only; no value is ever put in a finding.
    by_value: dict[str, list[_Use]] = defaultdict(list)
    for name in order:
        for item in parsed[name]:
            for entry in item.env.entries:
                if entry.value is None:
                    continue
                secrets = [entry.value] if is_secret_key(entry.key) and is_real_secret(entry.value) else []
                secrets += embedded_secrets(entry.value)
                for secret in secrets:
                    by_value[secret].append(_Use(name, item.file.relative, entry.line, entry.key))
    for secret_uses in by_value.values():
        ranked = sorted(secret_uses, key=lambda u: order.index(u.account))
        first = ranked[0]
        reported: set[tuple[str, int]] = set()
        for use in ranked:
            if use.account == first.account or (use.file, use.line) in reported:
                continue
            reported.add((use.file, use.line))
            report.findings.append(
                ConfigFinding(
                    "shared-secret",
                    "error",
                    use.account,
                    use.file,
                    use.line,
                    use.key,
                    f"{use.key} holds the same secret as {first.key} of account {first.account} "
                    f"({first.file}:{first.line})",
                    f"give {use.account} its own secret (and rotate the one that was shared)",
                )
            )
