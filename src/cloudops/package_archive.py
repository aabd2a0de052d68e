"""The deployment package file (inspection, pure but for reading the file): a zip with
webapps/, database/ and tools/ (tools/ holds the Data Population Tool that creates or
updates the RDS database). A zip is hostile input until checked: member names, links,
counts and sizes are bounded, bytes are counted as they inflate (never trusted from the
header), and its SHA-256 is computed while it is read. Storing and promoting it:
package_store.py and package.py.
"""

from __future__ import annotations

import hashlib
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cloudops.errors import InputError

VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
REQUIRED_DIRS = ("webapps/", "database/", "tools/")
READ_BLOCK = 1024 * 1024
# A zip is hostile input until checked. Far above any real deployment
# package (a few GiB of wars and SQL, a few thousand files), far below a zip bomb.
MAX_MEMBERS = 50_000
MAX_TOTAL_UNCOMPRESSED = 16 * 1024**3
MAX_RATIO = 100  # uncompressed : compressed, for a member over RATIO_FLOOR bytes
RATIO_FLOOR = 1024 * 1024
_DRIVE = re.compile(r"[A-Za-z]:")


class PackageError(InputError):
    """A deployment package file that is not what the pipeline needs."""


@dataclass(frozen=True)
class PackageFile:
    path: Path
    size: int
    sha256: str


def validate_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise InputError(
            f"invalid package version {version!r}",
            hint="use 1-64 letters, digits, and . _ + - (e.g. 8.5.0 or 2026.11.28-1)",
        )
    return version


def inspect_package(path: Path) -> PackageFile:
    """Refuse anything but a readable zip with webapps/, database/ and tools/ holding the
    data-population CLI. Every member's CRC is checked (streamed), so a truncated or
    corrupt zip is caught before a byte is uploaded. The zip is hostile input: member
    names that would escape a folder when unpacked (absolute, C:, \\\\host, ..),
    symlinks, too many members, and a zip bomb (declared or actual uncompressed size, or
    compression ratio) are refused too."""
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            _check_members(path, archive.infolist())
            bad = _read_members(path, archive)
    except FileNotFoundError:
        raise PackageError(f"package file {path} does not exist") from None
    except IsADirectoryError:
        raise PackageError(f"{path} is a directory, not a package zip") from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        ValueError,
        RuntimeError,  # an encrypted member
        NotImplementedError,  # an unknown compression method
    ) as exc:
        raise PackageError(
            f"{path} is not a readable zip ({type(exc).__name__})",
            hint="the file is corrupt or truncated: rebuild the deployment package",
        ) from None
    if bad is not None:
        raise PackageError(
            f"{path} is corrupt: member {safe_member_name(bad)} fails its CRC or header check",
            hint="rebuild the package",
        )
    tops = {name.split("/", 1)[0] + "/" for name in names if "/" in name}
    missing = [d for d in REQUIRED_DIRS if d not in tops]
    if missing:
        raise PackageError(
            f"{path} lacks {', '.join(missing)} (a deployment package has webapps/, database/ and tools/)",
            hint="build the package with the Elastic Path deployment package build",
        )
    if not any(n.startswith("tools/") and "data-population" in n for n in names):
        raise PackageError(
            f"{path}: tools/ holds no data-population CLI",
            hint="the package must carry the Data Population Tool under tools/",
        )
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(READ_BLOCK), b""):
            hasher.update(block)
    return PackageFile(path, size, hasher.hexdigest())


def safe_member_name(name: str) -> str:
    """A member name as it may be put in a message: quoted, with control and invisible
    characters escaped (repr does: ESC, \\r, bidi overrides), cut short (it is the zip
    author's text). Markup is the printing layer's to escape."""
    return repr(name[:200] + ("..." if len(name) > 200 else ""))


def _refuse_member(path: Path, name: str, why: str) -> PackageError:
    return PackageError(
        f"{path}: member {safe_member_name(name)} {why}",
        hint="rebuild the deployment package with the Elastic Path build; do not publish this file",
    )


def _check_members(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """What the central directory says, before a byte of content is read."""
    if len(members) > MAX_MEMBERS:
        raise PackageError(
            f"{path} has {len(members)} members (more than {MAX_MEMBERS}): not a deployment package",
            hint="rebuild the deployment package with the Elastic Path build",
        )
    declared = 0
    seen: set[str] = set()
    for info in members:
        name = info.filename
        parts = re.split(r"[/\\]", name)
        if name.startswith(("/", "\\")) or _DRIVE.match(name):
            raise _refuse_member(path, name, "has an absolute path (it would unpack outside its folder)")
        if ".." in parts:
            raise _refuse_member(path, name, "has a '..' path segment (it would unpack outside its folder)")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise _refuse_member(path, name, "has control characters in its name")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse_member(path, name, "is a symbolic link (a package holds files and folders only)")
        # Two members that unpack to one file (the same name, in another case or with "\\"
        # for "/"): which one is unpacked would depend on the unzip tool and the disk.
        unpacked = "/".join(p for p in name.casefold().replace("\\", "/").split("/") if p not in ("", "."))
        if unpacked in seen:
            raise _refuse_member(
                path, name, "has the same name as another member (which one is unpacked is not defined)"
            )
        seen.add(unpacked)
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _refuse_member(
                path,
                name,
                f"declares {info.file_size} bytes from {info.compress_size} compressed "
                f"(over {MAX_RATIO}:1): a zip bomb",
            )
        declared += info.file_size
        if declared > MAX_TOTAL_UNCOMPRESSED:
            raise _refuse_member(
                path,
                name,
                f"takes the declared uncompressed size over {MAX_TOTAL_UNCOMPRESSED} bytes: a zip bomb",
            )


def _read_members(path: Path, archive: zipfile.ZipFile) -> str | None:
    """Read every member to its end, checking its CRC (zipfile does at the end of each),
    and count the bytes that really come out: a header may lie about sizes. The name of
    the first member that fails its CRC, or None."""
    total = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        produced = 0
        try:
            with archive.open(info) as member:
                while block := member.read(READ_BLOCK):
                    produced += len(block)
                    total += len(block)
                    if produced > RATIO_FLOOR and produced > MAX_RATIO * max(info.compress_size, 1):
                        raise _refuse_member(
                            path, info.filename, f"inflates over {MAX_RATIO}:1 while read: a zip bomb"
                        )
                    if total > MAX_TOTAL_UNCOMPRESSED:
                        raise _refuse_member(
                            path,
                            info.filename,
                            f"takes the uncompressed size over {MAX_TOTAL_UNCOMPRESSED} bytes: a zip bomb",
                        )
        except zipfile.BadZipFile:
            return info.filename
    return None
