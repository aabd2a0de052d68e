"""`cloudops config diff A B`: which keys of two accounts' config differ, are missing from B
or extra in B, file by file. Secret values are masked (config/secrets.py: secret keys
whole, passwords inside URLs in any key), in the human output and --json alike, so the
output can go into a ticket or a build log."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cloudops.config.envfile import EnvFile, read_env_file
from cloudops.config.secrets import embedded_secrets, is_real_secret, is_secret_key, shown
from cloudops.config.tree import scan_account
from cloudops.errors import InputError
from cloudops.pipeline.model import Pipeline

KeyStatus = Literal["same", "differs", "missing", "extra"]
FilePresence = Literal["both", "only-a", "only-b"]


@dataclass(frozen=True)
class KeyDiff:
    key: str
    status: KeyStatus  # missing: in A, not in B; extra: in B, not in A
    a: str | None  # as it may be shown: secrets masked
    b: str | None
    secret: bool = False  # the same secret in both (a secret key, or a password inside a URL)

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "status": self.status, "a": self.a, "b": self.b}


@dataclass
class FileDiff:
    file: str  # relative to the account's folder: AWS/Config/live.env
    presence: FilePresence
    keys: list[KeyDiff] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[KeyDiff]:
        """What to show: every difference, and secrets that are the same (they must not be)."""
        return [k for k in self.keys if k.status != "same" or k.secret]

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "presence": self.presence,
            "same": sum(1 for k in self.keys if k.status == "same"),
            "keys": [k.as_dict() for k in self.changed],
            "problems": self.problems,
        }


@dataclass
class ConfigDiff:
    a: str
    b: str
    files: list[FileDiff]

    def as_dict(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "files": [f.as_dict() for f in self.files]}


def diff_accounts(pipeline: Pipeline, a: str, b: str) -> ConfigDiff:
    pipeline.account(a)
    pipeline.account(b)
    if a == b:
        raise InputError(
            "config diff needs two different accounts", hint=f"e.g. cloudops config diff {a} OTHER"
        )
    files_a = _env_files(pipeline.config_dir, a)
    files_b = _env_files(pipeline.config_dir, b)
    result = ConfigDiff(a, b, [])
    for relative in sorted(set(files_a) | set(files_b)):
        env_a, env_b = files_a.get(relative), files_b.get(relative)
        presence: FilePresence = "both" if env_a and env_b else ("only-a" if env_a else "only-b")
        diff = FileDiff(relative, presence)
        for label, env in ((a, env_a), (b, env_b)):
            if env is not None:
                diff.problems += [
                    f"{label}: line {p.line}: {p.message}" if p.line else f"{label}: {p.message}"
                    for p in env.problems
                ]
        diff.keys = _keys(env_a.values() if env_a else {}, env_b.values() if env_b else {})
        result.files.append(diff)
    return result


def _env_files(config_dir: Path, account: str) -> dict[str, EnvFile]:
    tree = scan_account(config_dir, account)
    if not tree.usable:
        raise InputError(
            f"account {account!r} has no usable config folder ({config_dir / account})",
            hint="`cloudops config check` says what is wrong with it",
        )
    root = config_dir / account
    return {
        f.path.relative_to(root).as_posix(): read_env_file(f.path)
        for f in tree.files
        if f.is_env and f.target is not None
    }


def _keys(a: dict[str, str | None], b: dict[str, str | None]) -> list[KeyDiff]:
    keys: list[KeyDiff] = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            status: KeyStatus = "missing"
        elif key not in a:
            status = "extra"
        else:
            status = "same" if a[key] == b[key] else "differs"
        keys.append(
            KeyDiff(
                key,
                status,
                shown(key, a.get(key)),
                shown(key, b.get(key)),
                secret=status == "same" and _holds_secret(key, a[key]),
            )
        )
    return keys


def _holds_secret(key: str, value: str | None) -> bool:
    if value is None:
        return False
    return (is_secret_key(key) and is_real_secret(value)) or bool(embedded_secrets(value))
