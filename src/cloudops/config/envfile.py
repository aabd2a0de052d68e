"""Reading one .env file with python-dotenv's own parser (quotes, comments, `export`,
multi-line values), keeping the line each key is on so findings can point at it.

We call the parser (dotenv.parser.parse_stream) rather than dotenv_values because we need
the line of every binding and the lines it could not read; dotenv_values only logs those.
Values are not interpolated: ${VAR} would pull in this process's environment, and a check
must judge the file as written, not the machine it runs on.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream

# A key-looking start of a line, to name what an unreadable line was about (never its value).
_KEY_START = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")
# What a variable name looks like. A bare word that does not is not echoed: a pasted
# password on a line of its own parses as a key without "=".
_VARIABLE_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_NEWLINE = re.compile(r"\r\n|\n|\r")
# Larger than any real config file; a bigger .env is almost surely a mistake (a dump, a zip).
MAX_ENV_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Entry:
    key: str
    value: str | None  # None: the key has no "=" (dotenv reads it as unset)
    line: int


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str
    serious: bool = True  # False: dotenv reads the line, perhaps not as meant


@dataclass
class EnvFile:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    readable: bool = True
    sha256: str = ""  # of the bytes, to find identical files in two accounts

    def values(self) -> dict[str, str | None]:
        """key -> value, the last assignment winning, as dotenv_values has it."""
        return {e.key: e.value for e in self.entries}

    def line_of(self, key: str) -> int | None:
        lines = [e.line for e in self.entries if e.key == key]
        return lines[-1] if lines else None


def read_env_file(path: Path) -> EnvFile:
    """Parse ``path``. Never raises for the file's content or an OS error: each becomes a
    Problem (the file is then marked unreadable when nothing could be parsed at all)."""
    result = EnvFile(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        result.readable = False
        result.problems.append(Problem(None, f"cannot be read ({type(exc).__name__}: {exc.strerror or exc})"))
        return result
    result.sha256 = hashlib.sha256(raw).hexdigest()
    text = _decode(raw, result)
    if text is None:
        return result
    parse_env_text(text, result)
    return result


def _decode(raw: bytes, result: EnvFile) -> str | None:
    if len(raw) > MAX_ENV_BYTES:
        result.readable = False
        result.problems.append(Problem(None, f"is {len(raw)} bytes: not a config file (over 1 MiB)"))
        return None
    if b"\0" in raw:
        result.readable = False
        result.problems.append(Problem(None, "is a binary file (contains NUL bytes), not KEY=value text"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        result.readable = False
        result.problems.append(Problem(line, "is not UTF-8 text (save it as UTF-8)"))
        return None


def parse_env_text(text: str, result: EnvFile) -> None:
    seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        line = binding.original.line + _leading_newlines(original)
        if binding.error:
            result.problems.append(Problem(line, _describe_unreadable(original)))
            continue
        if binding.key is None:
            continue  # a comment or blank lines
        if binding.key in seen:
            result.problems.append(
                Problem(
                    line,
                    f"{_shown(binding.key)} is set again (first on line {seen[binding.key]}); the last wins",
                    serious=False,
                )
            )
        seen.setdefault(binding.key, line)
        if binding.value is None:
            result.problems.append(
                Problem(
                    line,
                    f"{_shown(binding.key)} has no '=': dotenv reads it as unset (write KEY=VALUE)",
                    serious=False,
                )
            )
        result.entries.append(Entry(binding.key, binding.value, line))


def _shown(key: str) -> str:
    return key if _VARIABLE_NAME.fullmatch(key) else "a line (not shown: it may be a secret)"


def _leading_newlines(original: str) -> int:
    """The parser's mark starts at the blank lines before a binding: skip them."""
    stripped = original.lstrip()
    return len(_NEWLINE.findall(original[: len(original) - len(stripped)]))


def _describe_unreadable(original: str) -> str:
    # Only the key is named: the rest of the line may hold a secret (an unclosed quote
    # around a password is the typical syntax error).
    match = _KEY_START.match(original)
    if match:
        return f"cannot be parsed (the line starting with {match.group(1)}...; check quotes and '=')"
    return "cannot be parsed (expected KEY=value, # comment or a blank line)"
