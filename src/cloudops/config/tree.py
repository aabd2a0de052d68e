"""Finding the files of each account's config folder, without trusting the tree: links
are noted (not followed into other folders), unreadable folders become problems.

    <config_dir>/<account>/AWS/Config/author.env, live.env, ...
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_SUBDIR = Path("AWS") / "Config"
REQUIRED_FILES = ("author.env", "live.env")


@dataclass(frozen=True)
class TreeFile:
    account: str
    path: Path  # where it was found, inside the account's folder
    relative: str  # to the config dir, for messages: "prod/AWS/Config/live.env"
    symlink: bool
    target: Path | None  # the resolved file; None when a link points nowhere
    device_inode: tuple[int, int] | None
    links: int  # hard links to the resolved file

    @property
    def is_env(self) -> bool:
        return self.path.name.endswith(".env")


@dataclass(frozen=True)
class LinkedDir:
    account: str
    relative: str
    target: Path


@dataclass
class AccountTree:
    account: str
    root: Path
    files: list[TreeFile] = field(default_factory=list)
    linked_dirs: list[LinkedDir] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (relative path, message)
    usable: bool = True  # False: missing, not a folder, or itself a link


def _probe(check: Callable[[], bool]) -> bool | None:
    """A filesystem test that may itself fail (a folder we may not enter): None then."""
    try:
        return check()
    except OSError:
        return None


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: RuntimeError before Python 3.13
        return path


def relative_to(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def scan_account(config_dir: Path, account: str) -> AccountTree:
    root = config_dir / account
    tree = AccountTree(account, root)
    rel_root = relative_to(root, config_dir)
    if _probe(root.is_symlink):
        tree.usable = False
        tree.linked_dirs.append(LinkedDir(account, rel_root, _resolve(root)))
        return tree
    exists = _probe(root.exists)
    if exists is None:
        tree.usable = False
        tree.problems.append((rel_root, "cannot be read (permission denied on the way there?)"))
        return tree
    if not exists:
        tree.usable = False
        tree.problems.append((rel_root, "the account's config folder does not exist"))
        return tree
    if not root.is_dir():
        tree.usable = False
        tree.problems.append((rel_root, "is not a folder (each account needs its own config folder)"))
        return tree

    def unreadable(error: OSError) -> None:
        where = relative_to(Path(error.filename), config_dir) if error.filename else rel_root
        tree.problems.append((where, f"cannot be read ({type(error).__name__})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames):
            path = here / name
            if _probe(path.is_symlink):
                tree.linked_dirs.append(LinkedDir(account, relative_to(path, config_dir), _resolve(path)))
        dirnames.sort()
        for name in sorted(filenames):
            tree.files.append(_tree_file(account, here / name, config_dir, tree))
    return tree


def _tree_file(account: str, path: Path, config_dir: Path, tree: AccountTree) -> TreeFile:
    relative = relative_to(path, config_dir)
    symlink = bool(_probe(path.is_symlink))
    try:
        info = path.stat()  # follows a link: what the account really reads
    except OSError as exc:
        message = "is a link to nothing" if symlink else f"cannot be read ({type(exc).__name__})"
        tree.problems.append((relative, message))
        return TreeFile(account, path, relative, symlink, None, None, 0)
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or device would block or stream forever when read: never open one.
        tree.problems.append((relative, "is not a regular file"))
        return TreeFile(account, path, relative, symlink, None, None, 0)
    return TreeFile(
        account,
        path,
        relative,
        symlink,
        _resolve(path),
        (info.st_dev, info.st_ino),
        info.st_nlink,
    )


def missing_required(tree: AccountTree, config_dir: Path) -> list[str]:
    """Relative paths of the required files the account lacks."""
    missing = []
    for name in REQUIRED_FILES:
        path = tree.root / CONFIG_SUBDIR / name
        if not _probe(path.is_file):
            missing.append(relative_to(path, config_dir))
    return missing
