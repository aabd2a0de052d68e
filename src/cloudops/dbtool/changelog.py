"""Liquibase "formatted SQL" change logs: parse them, checksum their change sets, and plan
what a database still lacks. Pure: no I/O beyond the text it is given.

A change log (https://docs.liquibase.com/concepts/changelogs/sql-format.html)::

    --liquibase formatted sql

    --changeset ep:8.5.0-create-catalog runOnChange:false
    --comment: the catalog
    CREATE TABLE IF NOT EXISTS TCATALOG (UIDPK BIGINT NOT NULL PRIMARY KEY);
    INSERT IGNORE INTO TCATALOG (UIDPK) VALUES (1);
    --rollback DROP TABLE TCATALOG;

What this parser accepts, and what it refuses with :class:`ChangelogError` (file and line):

- The first non-blank line must be the header ``--liquibase formatted sql`` (attributes
  after it, such as ``logicalFilePath:``, are ignored). A missing header is an error.
- ``--changeset author:id [attributes]`` opens a change set (case-insensitive, as
  Liquibase). Attributes (``runOnChange:false``, ``splitStatements:true``, ...) are read
  and ignored. A change set is identified by (id, author, file name): a second one with
  the same identity in the same file is an error.
- Only blank lines and comments may come before the first change set; a statement there
  is an error. A change set without SQL is an error.
- ``--comment:`` lines fill the change set's COMMENTS; ``--rollback``, ``--precondition*``,
  ``--validCheckSum`` and ``--ignoreLines`` lines are Liquibase directives: they are not
  SQL and not part of the checksum. Other ``--`` lines are ordinary comments.
- Statements end with ``;`` outside string literals ('...', "...", `...`, with doubled
  quotes and backslash escapes), ``--`` line comments and ``/* */`` block comments; the
  last statement may omit it. ``--`` comments are removed from the statements sent to the
  server; a piece holding only comments is not a statement. (Custom ``endDelimiter``s
  and stored-procedure bodies are not supported: the demo's change logs need neither.)

Checksums follow Liquibase 4's version 9 (``CheckSum``, ``AbstractSQLChange.NormalizingStream``
and ``ChangeSet.generateCheckSum`` in liquibase-standard):

1. the change's SQL is the change set's text minus the directive lines above, in UTF-8,
   with every space, tab, CR and LF REMOVED (not collapsed: ``a b`` and ``ab`` hash
   alike, as in Liquibase); its checksum is ``"9:" + md5``;
2. the change set's checksum is ``"9:" + md5(change_checksum + ":")``, as Liquibase does
   for a change set holding one change (a formatted SQL change set holds one raw SQL change).

So a change set's checksum changes when its SQL (comments included) changes, and not when
only its whitespace or its directives do. A checksum stored by another version of the
algorithm (``8:...``) cannot be checked here and is reported as changed.

Change logs are applied in file name order: :func:`load_changelogs` sorts the files of
``database/changelog/`` by their base name (plain code point order, as Liquibase's
``includeAll``), so name them with zero-padded prefixes (``0001-...sql``, ``0002-...sql``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

__all__ = [
    "CHECKSUM_VERSION",
    "AppliedRow",
    "ChangeSet",
    "ChangelogError",
    "DbPlan",
    "change_set_checksum",
    "load_changelogs",
    "parse",
    "plan",
    "split_statements",
]

CHECKSUM_VERSION = 9


class ChangelogError(ValueError):
    """A change log is malformed. Carries the file and the 1-based line."""

    def __init__(self, message: str, filename: str, line: int) -> None:
        super().__init__(f"{filename}:{line}: {message}")
        self.message = message
        self.filename = filename
        self.line = line


@dataclass(frozen=True)
class ChangeSet:
    """One change set: its identity (id, author, filename), the statements it runs in order,
    and its Liquibase checksum. ``line`` is where its ``--changeset`` line is."""

    id: str
    author: str
    filename: str
    sql: tuple[str, ...]
    checksum: str
    line: int = 0
    comments: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """(id, author, filename): what Liquibase identifies a change set by."""
        return (self.id, self.author, self.filename)

    def __str__(self) -> str:  # Liquibase's own way to name a change set
        return f"{self.filename}::{self.id}::{self.author}"


@dataclass(frozen=True)
class AppliedRow:
    """A row of DATABASECHANGELOG: a change set the database says it has run."""

    id: str
    author: str
    filename: str
    md5sum: str | None
    order_executed: int = 0
    date_executed: str = ""
    exectype: str = "EXECUTED"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.id, self.author, self.filename)

    def __str__(self) -> str:
        return f"{self.filename}::{self.id}::{self.author}"


@dataclass(frozen=True)
class DbPlan:
    """What an update would do.

    - ``pending``: change sets not yet applied, in the order they would run;
    - ``changed``: applied change sets whose text changed since (each with the checksum the
      database holds). Liquibase refuses to run any of them: "Validation Failed: N change
      sets check sum";
    - ``unknown_applied``: rows of the database that no change set of the package names
      (applied by another package, or from a file since renamed). Reported, not an error.
    """

    pending: list[ChangeSet] = field(default_factory=list)
    changed: list[tuple[ChangeSet, str]] = field(default_factory=list)
    unknown_applied: list[AppliedRow] = field(default_factory=list)
    applied_count: int = 0

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.changed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``data-population plan --json`` prints)."""
        return {
            "pending": [_change_set_dict(c) for c in self.pending],
            "changed": [{**_change_set_dict(c), "applied_checksum": stored} for c, stored in self.changed],
            "unknown_applied": [
                {"id": r.id, "author": r.author, "filename": r.filename, "md5sum": r.md5sum}
                for r in self.unknown_applied
            ],
            "applied_count": self.applied_count,
        }


def _change_set_dict(change_set: ChangeSet) -> dict[str, Any]:
    return {
        "id": change_set.id,
        "author": change_set.author,
        "filename": change_set.filename,
        "checksum": change_set.checksum,
    }


# --- checksums ---------------------------------------------------------------------------

_LIQUIBASE_WHITESPACE = str.maketrans("", "", " \t\r\n")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def change_set_checksum(sql_text: str) -> str:
    """The version 9 checksum of a formatted SQL change set whose SQL is ``sql_text``
    (module docstring): whitespace removed, md5 of the change, md5 of that plus ":"."""
    change = f"{CHECKSUM_VERSION}:{_md5(sql_text.translate(_LIQUIBASE_WHITESPACE))}"
    return f"{CHECKSUM_VERSION}:{_md5(change + ':')}"


# --- parsing -----------------------------------------------------------------------------

_HEADER = re.compile(r"--\s*liquibase\s+formatted\s+sql\b", re.IGNORECASE)
_CHANGESET = re.compile(r"--\s*changeset\b(?P<rest>.*)", re.IGNORECASE)
_IDENTITY = re.compile(
    r"""\s+(?P<author>"[^"]+"|[^\s:"]+):(?P<id>"[^"]+"|[^\s"]+)(?:\s+(?P<attributes>.*))?\s*""",
)
_COMMENT = re.compile(r"--\s*comment\s*:?(?P<text>.*)", re.IGNORECASE)
_DIRECTIVE = re.compile(
    r"--\s*(?:rollback|preconditions?|precondition-[\w-]+|validchecksum|ignorelines)\b",
    re.IGNORECASE,
)


@dataclass
class _Open:
    """A change set being read."""

    author: str
    id: str
    line: int
    body: list[tuple[int, str]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def parse(text: str, filename: str) -> list[ChangeSet]:
    """The change sets of one formatted SQL change log, in file order. ``filename`` is
    the path recorded in DATABASECHANGELOG.FILENAME (e.g. ``database/changelog/0001-x.sql``).
    Raises :class:`ChangelogError` on malformed input (module docstring)."""
    lines = text.removeprefix("\ufeff").splitlines()
    start = _header_line(lines, filename)
    preamble: list[tuple[int, str]] = []
    current: _Open | None = None
    done: list[ChangeSet] = []
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines[start:], start=start + 1):
        stripped = line.strip()
        opening = _CHANGESET.fullmatch(stripped)
        if opening is not None:
            if current is None:
                _refuse_statements(preamble, filename, "a statement before the first --changeset")
            else:
                done.append(_close(current, filename))
            current = _open(opening.group("rest"), filename, number)
            identity = (current.id, current.author)
            if identity in seen:
                raise ChangelogError(
                    f"duplicate change set {current.author}:{current.id} (first at line {seen[identity]})",
                    filename,
                    number,
                )
            seen[identity] = number
            continue
        if current is None:
            preamble.append((number, line))
            continue
        comment = _COMMENT.fullmatch(stripped)
        if comment is not None:
            current.comments.append(comment.group("text").strip())
        elif _DIRECTIVE.match(stripped) is None:
            current.body.append((number, line))
    if current is None:
        _refuse_statements(preamble, filename, "a statement outside any --changeset")
    else:
        done.append(_close(current, filename))
    return done


def _header_line(lines: Sequence[str], filename: str) -> int:
    """Index of the line after the header; the header must be the first non-blank line."""
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        if _HEADER.match(line.strip()):
            return index + 1
        raise ChangelogError(
            "missing header: the first line must be '--liquibase formatted sql'", filename, index + 1
        )
    raise ChangelogError("missing header '--liquibase formatted sql' (the file is empty)", filename, 1)


def _open(rest: str, filename: str, number: int) -> _Open:
    identity = _IDENTITY.fullmatch(rest)
    if identity is None:
        raise ChangelogError("malformed --changeset line: expected '--changeset author:id'", filename, number)
    return _Open(author=identity.group("author").strip('"'), id=identity.group("id").strip('"'), line=number)


def _close(open_set: _Open, filename: str) -> ChangeSet:
    first = open_set.body[0][0] if open_set.body else open_set.line
    sql_text = "\n".join(text for _, text in open_set.body)
    statements = [statement for _, statement in split_statements(sql_text, filename, first)]
    if not statements:
        name = f"{open_set.author}:{open_set.id}"
        raise ChangelogError(f"change set {name} has no SQL", filename, open_set.line)
    return ChangeSet(
        id=open_set.id,
        author=open_set.author,
        filename=filename,
        sql=tuple(statements),
        checksum=change_set_checksum(sql_text),
        line=open_set.line,
        comments="\n".join(c for c in open_set.comments if c),
    )


def _refuse_statements(lines: list[tuple[int, str]], filename: str, what: str) -> None:
    if not lines:
        return
    text = "\n".join(line for _, line in lines)
    found = split_statements(text, filename, lines[0][0])
    if found:
        raise ChangelogError(what, filename, found[0][0])


_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def split_statements(sql_text: str, filename: str = "<sql>", first_line: int = 1) -> list[tuple[int, str]]:
    """Split SQL on ``;`` outside literals and comments: (line where the statement starts,
    statement without its ``;`` and without ``--`` comments). Pieces holding only comments
    or whitespace are dropped. An unterminated literal or block comment is a
    :class:`ChangelogError` at the line where it opens."""
    statements: list[tuple[int, str]] = []
    current: list[str] = []
    current_line = first_line
    line = first_line
    position = 0
    size = len(sql_text)

    def flush() -> None:
        statement = "".join(current).strip()
        if _BLOCK_COMMENT.sub("", statement).strip():
            statements.append((current_line, statement))
        current.clear()

    while position < size:
        char = sql_text[position]
        if char in "'\"`":
            end = _literal_end(sql_text, position)
            if end < 0:
                raise ChangelogError(f"unterminated {char}...{char} literal", filename, line)
            piece = sql_text[position:end]
        elif sql_text.startswith("/*", position):
            close = sql_text.find("*/", position + 2)
            if close < 0:
                raise ChangelogError("unterminated /* comment", filename, line)
            piece = sql_text[position : close + 2]
        elif sql_text.startswith("--", position) and _is_line_comment(sql_text, position):
            newline = sql_text.find("\n", position)
            position = size if newline < 0 else newline
            continue
        elif char == ";":
            flush()
            position += 1
            continue
        else:
            piece = char
        if not current and piece.isspace():
            line += piece.count("\n")  # whitespace between statements: not part of either
            position += len(piece)
            continue
        if not current:
            current_line = line
        current.append(piece)
        line += piece.count("\n")
        position += len(piece)
    flush()
    return statements


def _literal_end(text: str, start: int) -> int:
    """Index just past the literal opened at ``start``, or -1 when it never closes.
    Doubled quotes and (outside backticks) backslash escapes stay inside."""
    quote = text[start]
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and quote != "`":
            position += 2
            continue
        if char == quote:
            if text.startswith(quote, position + 1):
                position += 2
                continue
            return position + 1
        position += 1
    return -1


def _is_line_comment(text: str, position: int) -> bool:
    """``--`` starts a comment when followed by whitespace or the end (MariaDB's rule), or
    when it opens a line (Liquibase's ``--directive`` lines): ``1--1`` stays arithmetic."""
    after = text[position + 2 : position + 3]
    if after == "" or after.isspace():
        return True
    line_start = text.rfind("\n", 0, position) + 1
    return not text[line_start:position].strip()


# --- the master change log ---------------------------------------------------------------


def load_changelogs(files: Mapping[str, str]) -> list[ChangeSet]:
    """Every change set of a package, in the order they apply. ``files`` maps a change
    log's path (as recorded in FILENAME, e.g. ``database/changelog/0001-ep-8.5.0.sql``) to
    its text. Files apply in base name order (plain code point order; the full path breaks
    ties), change sets in file order. Paths not ending in ``.sql`` are skipped (a README
    beside the change logs)."""
    ordered = sorted((path for path in files if path.lower().endswith(".sql")), key=_file_order)
    change_sets: list[ChangeSet] = []
    for path in ordered:
        change_sets.extend(parse(files[path], path))
    return change_sets


def _file_order(path: str) -> tuple[str, str]:
    return (PurePosixPath(path).name, path)


# --- the plan ----------------------------------------------------------------------------


def plan(change_sets: Sequence[ChangeSet], applied_rows: Iterable[AppliedRow]) -> DbPlan:
    """Compare a package's change sets with DATABASECHANGELOG's rows (:class:`DbPlan`).
    A row without MD5SUM (older Liquibase, or cleared by ``clearCheckSums``) matches any
    checksum: Liquibase fills it in on the next update, and so does ``database.update``."""
    rows = {row.key: row for row in applied_rows}
    known = {change_set.key for change_set in change_sets}
    pending: list[ChangeSet] = []
    changed: list[tuple[ChangeSet, str]] = []
    applied = 0
    for change_set in change_sets:
        row = rows.get(change_set.key)
        if row is None:
            pending.append(change_set)
            continue
        applied += 1
        if row.md5sum is not None and row.md5sum != change_set.checksum:
            changed.append((change_set, row.md5sum))
    unknown = [row for key, row in rows.items() if key not in known]
    return DbPlan(pending=pending, changed=changed, unknown_applied=unknown, applied_count=applied)
