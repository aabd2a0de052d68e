"""The Data Population Tool's database side, on MariaDB / MySQL through PyMySQL: the
connection settings (``database.properties``), Liquibase's two tables, its lock, ``update``
and ``reset``. Standard library and PyMySQL only (this module also runs from the
deployment package zip, see ``__init__``).

Liquibase's tables, created as Liquibase creates them on MySQL:

- ``DATABASECHANGELOG``: one row per applied change set (ID, AUTHOR, FILENAME,
  DATEEXECUTED, ORDEREXECUTED, EXECTYPE, MD5SUM, DESCRIPTION, COMMENTS, TAG, LIQUIBASE,
  CONTEXTS, LABELS, DEPLOYMENT_ID), no primary key;
- ``DATABASECHANGELOGLOCK``: one row (ID 1) whose LOCKED flag is the lock; LOCKEDBY says
  who holds it and LOCKGRANTED since when.

The update rule (why a kill -9 at any point leaves the change log consistent with the
schema, and a rerun completes). MariaDB commits DDL implicitly, so a change set cannot be
applied atomically with its DATABASECHANGELOG row. Instead:

1. each pending change set runs, then its row is inserted and committed, before the next
   one starts: a row exists only for a change set that ran to its end;
2. change sets are written to be rerunnable (``CREATE TABLE IF NOT EXISTS``, ``ADD COLUMN
   IF NOT EXISTS``, ``CREATE INDEX IF NOT EXISTS``, ``INSERT IGNORE``): a change set whose
   statements ran, all or in part, but whose row was not written is simply run again, in
   full, by the next update. (Its DML, and the row, share one transaction; only its DDL
   is committed early.)

So after a kill the database holds every change set that has a row, plus perhaps part of
the first one that has none; the next update completes that one and goes on.

The lock (Liquibase's DATABASECHANGELOGLOCK). ``update`` and ``reset`` take it with one
conditional UPDATE (``... WHERE LOCKED = 0``) committed at once, refuse when another run
holds it (:class:`LockHeld`, exit 3: "Could not acquire change log lock"), and release it
on the way out however the run ends (through a new session when the current one broke,
e.g. SIGTERM in the middle of a statement). LOCKEDBY records the holder as
``HOSTNAME (pid PID)``. A process killed with -9 cannot release it: a later run on the
SAME host (same ``socket.gethostname()``) clears a lock whose holder pid no longer exists
(or is a zombie), and goes on. A lock held from another host, or by a live pid, is never
cleared automatically (a reused pid looks alive: the error is then a refusal, never a
second writer); ``data-population release-locks`` clears it by hand, as Liquibase's
``releaseLocks``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pymysql  # type: ignore[import-untyped,unused-ignore]

from . import changelog
from .changelog import AppliedRow, ChangeSet, DbPlan

__all__ = [
    "DEFAULT_PORT",
    "TOOL_NAME",
    "ChangeSetFailed",
    "ChecksumsChanged",
    "Connection",
    "DatabaseError",
    "DatabaseSettings",
    "DbToolError",
    "LockHeld",
    "Refused",
    "ResetResult",
    "SettingsError",
    "UpdateResult",
    "applied_rows",
    "connect",
    "ensure_tables",
    "error_reason",
    "expand_placeholders",
    "lock_holder",
    "parse_properties",
    "read_plan",
    "read_properties",
    "release_locks",
    "reset",
    "update",
]

DEFAULT_PORT = 3306
TOOL_NAME = "cloudops-dbtool"
"""Written to DATABASECHANGELOG.LIQUIBASE (where Liquibase writes its version)."""

Log = Callable[[str], None]


# --- errors ------------------------------------------------------------------------------


class DbToolError(Exception):
    """Root of this module's errors. ``exit_code`` is the CLI's: 1 failed, 2 usage or
    configuration, 3 refused. Messages never carry the password."""

    exit_code = 1


class SettingsError(DbToolError):
    """``database.properties`` is missing, unreadable or incomplete."""

    exit_code = 2


class DatabaseError(DbToolError):
    """The server could not be reached, refused the login, or failed a statement of ours.
    ``connect_error``: when connecting failed, the MariaDB error number (the server's, or
    the client's 2xxx): cloudops picks its hint by it (1045 login refused, 2003 unreachable)."""

    exit_code = 1

    def __init__(self, message: str, connect_error: int | None = None) -> None:
        super().__init__(message)
        self.connect_error = connect_error


class ChangeSetFailed(DbToolError):
    """A statement of a change set failed. Change sets applied before it stay applied
    (``applied``); this one has no row and runs again, in full, on the next update."""

    exit_code = 1

    def __init__(self, change_set: ChangeSet, statement_index: int, reason: str, applied: Sequence[str]):
        where = f"statement {statement_index + 1} of {len(change_set.sql)}"
        super().__init__(f"change set {change_set} failed at {where}: {reason}")
        self.change_set = change_set
        self.reason = reason
        self.applied = list(applied)


class Refused(DbToolError):
    """Refused before anything was applied (exit 3)."""

    exit_code = 3


class LockHeld(Refused):
    """Another run holds DATABASECHANGELOGLOCK."""

    def __init__(self, holder: str | None, granted: str | None):
        super().__init__(
            f"Could not acquire change log lock. Currently locked by {holder or 'an unknown holder'}"
            f" since {granted or 'an unknown time'} (if no update is running there, clear it with"
            " 'data-population release-locks')"
        )
        self.holder = holder
        self.granted = granted


class ChecksumsChanged(Refused):
    """Change sets already applied have changed since (Liquibase: "Validation Failed")."""

    def __init__(self, changed: Sequence[tuple[ChangeSet, str]]):
        names = "; ".join(f"{c} was {stored}, is now {c.checksum}" for c, stored in changed)
        super().__init__(
            f"Validation Failed: {len(changed)} change sets check sum: {names}"
            " (an applied change set must never be edited: add a new change set instead)"
        )
        self.changed = list(changed)


# --- connection settings -----------------------------------------------------------------


_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
_JDBC_URL = re.compile(
    r"jdbc:(?:mysql|mariadb)://(?P<host>\[[^\]]+\]|[^:/?]+)(?::(?P<port>\d+))?/(?P<schema>[^?;]*)(?:[?;].*)?",
    re.IGNORECASE,
)
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_$]{1,64}")
PREFIX = "data.population."


@dataclass(frozen=True)
class DatabaseSettings:
    """Where and as whom to connect. The password is never part of ``repr`` or
    :meth:`describe`.

    ``bind_address`` is the client's source address. Left unset, it is chosen by one rule
    for the local sandbox, where each account's database endpoint is a loopback address
    127.0.0.N (N > 1) on one private MariaDB and its user is allowed only FROM that address:
    connecting to such an address, the client binds to the same address (Linux would
    otherwise use 127.0.0.1 as the source for every loopback destination). Elsewhere (an
    RDS host name, 127.0.0.1, localhost) nothing is bound.
    """

    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    bind_address: str | None = None
    connect_timeout: float = 10.0

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> DatabaseSettings:
        """Settings from ``database.properties`` (already parsed). Keys, as in Elastic
        Path's file (``${key}`` placeholders are expanded from the same file):

        - ``data.population.host``, ``data.population.port`` (default 3306),
          ``data.population.schemaname``: where. When absent, host, port and schema are
          read from ``data.population.url`` (``jdbc:mysql://HOST[:PORT]/SCHEMA?...`` or
          ``jdbc:mariadb://...``); the explicit keys win;
        - ``data.population.username``, ``data.population.password``: who (the password
          key must be present; it may be empty);
        - ``data.population.database.type`` / ``data.population.jdbc.driver``: optional;
          when set they must name MySQL or MariaDB;
        - ``data.population.bind_address``: optional (cloudops' own): the source address,
          overriding the sandbox rule (class docstring).

        ``data.population.reset_user`` / ``reset_password`` (Elastic Path's account for
        dropping and creating the database) are not used: ``reset-db`` drops the tables
        with the ordinary user, which may lack the right to drop the database."""
        props = expand_placeholders(properties)
        url = _JDBC_URL.fullmatch(props.get(PREFIX + "url", "").strip())
        for key in ("database.type", "jdbc.driver"):
            kind = props.get(PREFIX + key, "").strip().lower()
            if kind and "mysql" not in kind and "mariadb" not in kind:
                raise SettingsError(f"{PREFIX}{key} is {kind!r}: this tool speaks MySQL / MariaDB only")

        def value(key: str, from_url: str | None = None) -> str:
            found = props.get(PREFIX + key)
            if found is None or not found.strip():
                if from_url:
                    return from_url
                raise SettingsError(f"database.properties lacks {PREFIX}{key}")
            return found.strip()

        host = value("host", url.group("host").strip("[]") if url else None)
        port_text = value("port", (url.group("port") if url else None) or str(DEFAULT_PORT))
        database = value("schemaname", url.group("schema") if url else None)
        user = value("username")
        if PREFIX + "password" not in props:
            raise SettingsError(f"database.properties lacks {PREFIX}password")
        try:
            port = int(port_text)
        except ValueError:
            raise SettingsError(f"{PREFIX}port is not a number: {port_text!r}") from None
        if not 0 < port < 65536:
            raise SettingsError(f"{PREFIX}port is out of range: {port}")
        if not _SCHEMA_NAME.fullmatch(database):
            raise SettingsError(
                f"{PREFIX}schemaname {database!r} is not a plain schema name (letters, digits, _ and $)"
            )
        bind = props.get(PREFIX + "bind_address", "").strip() or None
        return cls(host, port, database, user, props[PREFIX + "password"], bind)

    @property
    def source_address(self) -> str | None:
        """The address the client binds to (class docstring), or None."""
        if self.bind_address:
            return self.bind_address
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return None
        if address.version == 4 and address.is_loopback and str(address) != "127.0.0.1":
            return str(address)
        return None

    def describe(self) -> str:
        """``user@host:port/database``: safe to print."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def expand_placeholders(properties: Mapping[str, str], depth: int = 10) -> dict[str, str]:
    """``${key}`` in values replaced by the value of ``key`` in the same properties (Elastic
    Path filters its properties files this way). Unknown keys stay as written."""
    expanded = dict(properties)
    for _ in range(depth):
        changed = False
        for key, value in expanded.items():
            new = _PLACEHOLDER.sub(lambda m: expanded.get(m.group(1), m.group(0)), value)
            if new != value:
                expanded[key] = new
                changed = True
        if not changed:
            break
    return expanded


def parse_properties(text: str) -> dict[str, str]:
    """A Java ``.properties`` file: ``key=value``, ``key: value`` or ``key value``; ``#``
    and ``!`` comment lines; a line ending in an odd number of backslashes continues on
    the next; escapes ``\\t \\n \\r \\f \\uXXXX`` and ``\\X`` for X. The last of repeated
    keys wins."""
    result: dict[str, str] = {}
    lines = text.removeprefix("\ufeff").splitlines()
    index = 0
    while index < len(lines):
        logical = lines[index].lstrip()
        index += 1
        if not logical or logical[0] in "#!":
            continue
        while _continues(logical) and index < len(lines):
            logical = logical[:-1] + lines[index].lstrip()
            index += 1
        if _continues(logical):
            logical = logical[:-1]
        key, value = _split_property(logical)
        result[key] = value
    return result


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _split_property(line: str) -> tuple[str, str]:
    position = 0
    while position < len(line):
        char = line[position]
        if char == "\\":
            position += 2
            continue
        if char in "=:" or char.isspace():
            break
        position += 1
    key = line[:position]
    rest = line[position:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape(key), _unescape(rest)


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char != "\\" or position + 1 >= len(text):
            out.append(char)
            position += 1
            continue
        escaped = text[position + 1]
        if escaped == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[position + 2 : position + 6]):
            out.append(chr(int(text[position + 2 : position + 6], 16)))
            position += 6
            continue
        out.append(_ESCAPES.get(escaped, escaped))
        position += 2
    return "".join(out)


def read_properties(path: Path) -> dict[str, str]:
    """Parse a properties file (ISO 8859-1 is Java's default; UTF-8 is read first, as
    Elastic Path's files are plain ASCII anyway)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{path} does not exist") from None
    except OSError as error:
        raise SettingsError(f"{path} cannot be read: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return parse_properties(text)


# --- connecting --------------------------------------------------------------------------


class Cursor(Protocol):
    rowcount: int

    def execute(self, query: str, args: object = None) -> int: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """What this module uses of a PyMySQL connection."""

    def cursor(self) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


def connect(settings: DatabaseSettings) -> Connection:
    """A PyMySQL connection to the settings' database, autocommit off, utf8mb4.
    :class:`DatabaseError` (without the password) when the server cannot be reached or
    refuses the login."""
    try:
        connection: Connection = pymysql.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            bind_address=settings.source_address,
            connect_timeout=settings.connect_timeout,
            charset="utf8mb4",
            autocommit=False,
        )
    except pymysql.err.MySQLError as error:
        message = f"cannot connect as {settings.describe()}: {error_reason(error)}"
        raise DatabaseError(message, connect_error=error_number(error)) from None
    except OSError as error:  # e.g. the source address cannot be bound
        raise DatabaseError(f"cannot connect as {settings.describe()}: {error}") from None
    return connection


def error_number(error: BaseException) -> int | None:
    """The MariaDB error number of a PyMySQL error (its first arg), if it has one. PyMySQL's
    own ``InterfaceError(0, '')`` ("not connected") has none: 0 is no error number."""
    args: tuple[Any, ...] = getattr(error, "args", ())
    number = args[0] if args else None
    return number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else None


def error_reason(error: BaseException) -> str:
    """The server's message of a PyMySQL error: ``(code, message)`` args."""
    args: tuple[Any, ...] = getattr(error, "args", ())
    if len(args) >= 2 and str(args[1]).strip():
        return f"{args[1]} (error {args[0]})"
    return str(error) or type(error).__name__


def _execute(connection: Connection, sql: str, args: object = None) -> int:
    """Run one statement; its affected row count. ``args`` None: the SQL is sent as is
    (no ``%`` interpolation: change sets may hold ``LIKE 'a%'``)."""
    cursor = connection.cursor()
    try:
        return cursor.execute(sql, args)
    finally:
        cursor.close()


def _query(connection: Connection, sql: str, args: object = None) -> list[Sequence[Any]]:
    cursor = connection.cursor()
    try:
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


# --- Liquibase's tables ------------------------------------------------------------------

_CREATE_CHANGELOG = """CREATE TABLE IF NOT EXISTS DATABASECHANGELOG (
  ID VARCHAR(255) NOT NULL, AUTHOR VARCHAR(255) NOT NULL, FILENAME VARCHAR(255) NOT NULL,
  DATEEXECUTED DATETIME NOT NULL, ORDEREXECUTED INT NOT NULL, EXECTYPE VARCHAR(10) NOT NULL,
  MD5SUM VARCHAR(35) NULL, DESCRIPTION VARCHAR(255) NULL, COMMENTS VARCHAR(255) NULL,
  TAG VARCHAR(255) NULL, LIQUIBASE VARCHAR(20) NULL, CONTEXTS VARCHAR(255) NULL,
  LABELS VARCHAR(255) NULL, DEPLOYMENT_ID VARCHAR(10) NULL)"""

_CREATE_LOCK = """CREATE TABLE IF NOT EXISTS DATABASECHANGELOGLOCK (
  ID INT NOT NULL, `LOCKED` TINYINT(1) NOT NULL, LOCKGRANTED DATETIME NULL,
  LOCKEDBY VARCHAR(255) NULL, CONSTRAINT PK_DATABASECHANGELOGLOCK PRIMARY KEY (ID))"""

CHANGELOG_TABLE = "DATABASECHANGELOG"
LOCK_TABLE = "DATABASECHANGELOGLOCK"


def ensure_tables(connection: Connection) -> None:
    """Create DATABASECHANGELOG and DATABASECHANGELOGLOCK (with its one unlocked row)
    when absent, as Liquibase does on its first run. Idempotent."""
    try:
        _execute(connection, _CREATE_CHANGELOG)
        _execute(connection, _CREATE_LOCK)
        _execute(connection, "INSERT IGNORE INTO DATABASECHANGELOGLOCK (ID, `LOCKED`) VALUES (1, 0)")
        connection.commit()
    except pymysql.err.MySQLError as error:
        raise DatabaseError(f"cannot create Liquibase's tables: {error_reason(error)}") from None


def _table_exists(connection: Connection, table: str) -> bool:
    rows = _query(
        connection,
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    return bool(rows)


def applied_rows(connection: Connection) -> list[AppliedRow]:
    """DATABASECHANGELOG's rows in the order Liquibase reads them (DATEEXECUTED,
    ORDEREXECUTED); none when the table does not exist yet (nothing is created)."""
    try:
        if not _table_exists(connection, CHANGELOG_TABLE):
            return []
        rows = _query(
            connection,
            "SELECT ID, AUTHOR, FILENAME, MD5SUM, ORDEREXECUTED, DATEEXECUTED, EXECTYPE"
            " FROM DATABASECHANGELOG ORDER BY DATEEXECUTED, ORDEREXECUTED",
        )
    except pymysql.err.MySQLError as error:
        raise DatabaseError(f"cannot read DATABASECHANGELOG: {error_reason(error)}") from None
    return [
        AppliedRow(
            id=str(row[0]),
            author=str(row[1]),
            filename=str(row[2]),
            md5sum=None if row[3] is None else str(row[3]),
            order_executed=int(row[4]),
            date_executed=str(row[5]),
            exectype=str(row[6]),
        )
        for row in rows
    ]


def read_plan(connection: Connection, change_sets: Sequence[ChangeSet]) -> DbPlan:
    """What :func:`update` would do now (read-only: creates nothing, takes no lock)."""
    return changelog.plan(change_sets, applied_rows(connection))


# --- the lock ----------------------------------------------------------------------------

_HOLDER = re.compile(r"(?P<host>.+) \(pid (?P<pid>\d+)\)")


def lock_holder() -> str:
    """What this process writes to LOCKEDBY: ``HOSTNAME (pid PID)``."""
    return f"{socket.gethostname()} (pid {os.getpid()})"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a zombie (killed, not yet reaped by its parent) holds nothing
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _stale(holder: str | None) -> bool:
    """Whether LOCKEDBY names a process of this host that no longer runs."""
    if holder is None:
        return False
    match = _HOLDER.fullmatch(holder)
    if match is None or match.group("host") != socket.gethostname():
        return False
    return not _pid_alive(int(match.group("pid")))


def _acquire(connection: Connection, wait: float, log: Log | None) -> str:
    me = lock_holder()
    deadline = time.monotonic() + wait
    while True:
        taken = _execute(
            connection,
            "UPDATE DATABASECHANGELOGLOCK SET `LOCKED` = 1, LOCKGRANTED = NOW(), LOCKEDBY = %s"
            " WHERE ID = 1 AND `LOCKED` = 0",
            (me,),
        )
        connection.commit()
        if taken == 1:
            return me
        rows = _query(connection, "SELECT LOCKEDBY, LOCKGRANTED FROM DATABASECHANGELOGLOCK WHERE ID = 1")
        connection.commit()
        if not rows:  # the row vanished (hand-edited): put it back and try again
            ensure_tables(connection)
            continue
        holder = None if rows[0][0] is None else str(rows[0][0])
        granted = None if rows[0][1] is None else str(rows[0][1])
        if _stale(holder):
            cleared = _execute(
                connection,
                "UPDATE DATABASECHANGELOGLOCK SET `LOCKED` = 0, LOCKGRANTED = NULL, LOCKEDBY = NULL"
                " WHERE ID = 1 AND `LOCKED` = 1 AND LOCKEDBY = %s",
                (holder,),
            )
            connection.commit()
            if cleared and log is not None:
                log(f"cleared a stale change log lock held by {holder} since {granted}: that process is gone")
            continue
        if time.monotonic() >= deadline:
            raise LockHeld(holder, granted)
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _release(connection: Connection, me: str) -> None:
    _execute(
        connection,
        "UPDATE DATABASECHANGELOGLOCK SET `LOCKED` = 0, LOCKGRANTED = NULL, LOCKEDBY = NULL"
        " WHERE ID = 1 AND LOCKEDBY = %s",
        (me,),
    )
    connection.commit()


def release_locks(connection: Connection) -> str | None:
    """Clear the lock whoever holds it (Liquibase's ``releaseLocks``): for a holder that is
    known to be gone but that :func:`update` cannot prove gone (another host). Returns the
    holder that was cleared, or None when the lock was free."""
    try:
        ensure_tables(connection)
        rows = _query(connection, "SELECT `LOCKED`, LOCKEDBY FROM DATABASECHANGELOGLOCK WHERE ID = 1")
        _execute(
            connection,
            "UPDATE DATABASECHANGELOGLOCK SET `LOCKED` = 0, LOCKGRANTED = NULL, LOCKEDBY = NULL WHERE ID = 1",
        )
        connection.commit()
    except pymysql.err.MySQLError as error:
        raise DatabaseError(f"cannot release the change log lock: {error_reason(error)}") from None
    if rows and rows[0][0]:
        return None if rows[0][1] is None else str(rows[0][1])
    return None


def _release_on_a_new_session(connection: Connection, me: str) -> bool:
    """Release through a fresh session when the current one broke (a signal arrived in the
    middle of a statement, the server dropped the connection): PyMySQL's ``ping(reconnect=
    True)`` opens one with the same settings."""
    ping = getattr(connection, "ping", None)
    if ping is None:
        return False
    try:
        ping(reconnect=True)
        _release(connection, me)
    except (pymysql.err.MySQLError, OSError):
        return False
    return True


class _Locked:
    """``with _Locked(conn, wait, log):`` holds DATABASECHANGELOGLOCK for the block and
    releases it on the way out, however the block ends, through a new session when the
    current one broke. When even that fails (the server is gone), the lock stays with this
    pid: the next run on this host finds the pid gone and clears it."""

    def __init__(self, connection: Connection, wait: float, log: Log | None):
        self.connection = connection
        self.wait = wait
        self.log = log
        self.me = ""

    def __enter__(self) -> str:
        ensure_tables(self.connection)
        try:
            self.me = _acquire(self.connection, self.wait, self.log)
        except pymysql.err.MySQLError as error:
            raise DatabaseError(f"cannot take the change log lock: {error_reason(error)}") from None
        return self.me

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        try:
            if kind is not None:
                self.connection.rollback()
            _release(self.connection, self.me)
        except (pymysql.err.MySQLError, OSError) as failure:
            if _release_on_a_new_session(self.connection, self.me):
                return
            if kind is None:
                raise DatabaseError(f"cannot release the change log lock: {error_reason(failure)}") from None
            if self.log is not None:
                self.log(
                    f"could not release the change log lock ({error_reason(failure)}); the next run clears it"
                )


# --- update and reset --------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateResult:
    """What an update applied (change set ids, in order) and how long it took."""

    applied: list[str]
    seconds: float


@dataclass(frozen=True)
class ResetResult:
    """What a reset dropped (tables, views, sequences) and then applied."""

    dropped: list[str]
    applied: list[str]
    seconds: float


def update(
    connection: Connection,
    change_sets: Sequence[ChangeSet],
    *,
    lock_wait: float = 0.0,
    log: Log | None = None,
) -> UpdateResult:
    """Apply the change sets the database lacks, in order (module docstring: the rule that
    keeps a killed update consistent). Takes the lock (:class:`LockHeld` when another run
    holds it, after waiting up to ``lock_wait`` seconds); refuses with
    :class:`ChecksumsChanged`, before applying anything, when an applied change set has
    changed. :class:`ChangeSetFailed` when a statement fails. ``log`` receives one human
    line per event (nothing is printed otherwise)."""
    started = time.monotonic()
    with _Locked(connection, lock_wait, log):
        applied = _apply_pending(connection, change_sets, log)
    return UpdateResult(applied, round(time.monotonic() - started, 3))


def reset(
    connection: Connection,
    database_name: str,
    change_sets: Sequence[ChangeSet],
    *,
    lock_wait: float = 0.0,
    log: Log | None = None,
) -> ResetResult:
    """Drop every table, view and sequence of ``database_name`` (the connection's own
    database; the database itself stays: the user may not have the right to drop and
    create it), then apply every change set from scratch. Holds the lock throughout (the
    lock table is the one table kept). DATABASECHANGELOG is dropped FIRST: a reset killed
    midway leaves no row claiming a change set whose tables are gone, and the next update
    or reset reruns everything (the change sets are rerunnable)."""
    started = time.monotonic()
    current = _query(connection, "SELECT DATABASE()")
    connected_to = current[0][0] if current else None
    if connected_to != database_name:
        raise SettingsError(f"refusing to reset {database_name!r}: the connection is to {connected_to!r}")
    with _Locked(connection, lock_wait, log):
        dropped = _drop_everything(connection, database_name, log)
        ensure_tables(connection)
        applied = _apply_pending(connection, change_sets, log)
    return ResetResult(dropped, applied, round(time.monotonic() - started, 3))


def _drop_everything(connection: Connection, database_name: str, log: Log | None) -> list[str]:
    try:
        objects = _query(
            connection,
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (database_name,),
        )
        objects.sort(key=lambda row: (str(row[0]) != CHANGELOG_TABLE, str(row[0])))
        dropped: list[str] = []
        _execute(connection, "SET FOREIGN_KEY_CHECKS = 0")
        try:
            for name, kind in ((str(row[0]), str(row[1])) for row in objects):
                if name == LOCK_TABLE:
                    continue
                what = {"VIEW": "VIEW", "SEQUENCE": "SEQUENCE"}.get(kind, "TABLE")
                _execute(connection, f"DROP {what} IF EXISTS {_quote(database_name)}.{_quote(name)}")
                dropped.append(name)
        finally:
            _execute(connection, "SET FOREIGN_KEY_CHECKS = 1")
        connection.commit()
    except pymysql.err.MySQLError as error:
        raise DatabaseError(f"cannot drop the tables of {database_name}: {error_reason(error)}") from None
    if log is not None:
        log(f"dropped {len(dropped)} tables, views and sequences of {database_name}")
    return dropped


def _apply_pending(connection: Connection, change_sets: Sequence[ChangeSet], log: Log | None) -> list[str]:
    """Under the lock: validate, then run each pending change set and commit its row."""
    rows = applied_rows(connection)
    the_plan = changelog.plan(change_sets, rows)
    if the_plan.changed:
        raise ChecksumsChanged(the_plan.changed)
    if log is not None and the_plan.unknown_applied:
        log(f"{len(the_plan.unknown_applied)} applied change sets are not in this package (left as they are)")
    try:
        _fill_missing_checksums(connection, change_sets, rows)
        order = max((row.order_executed for row in rows), default=0) + 1
    except pymysql.err.MySQLError as error:
        raise DatabaseError(f"cannot update DATABASECHANGELOG: {error_reason(error)}") from None
    deployment_id = str(time.time_ns() // 1_000_000)[-10:]
    applied: list[str] = []
    for change_set in the_plan.pending:
        if log is not None:
            log(f"running change set {change_set}")
        for index, statement in enumerate(change_set.sql):
            try:
                _execute(connection, statement)
            except pymysql.err.MySQLError as error:
                raise ChangeSetFailed(change_set, index, error_reason(error), applied) from None
        try:
            _execute(
                connection,
                "INSERT INTO DATABASECHANGELOG (ID, AUTHOR, FILENAME, DATEEXECUTED, ORDEREXECUTED,"
                " EXECTYPE, MD5SUM, DESCRIPTION, COMMENTS, LIQUIBASE, DEPLOYMENT_ID)"
                " VALUES (%s, %s, %s, NOW(), %s, 'EXECUTED', %s, 'sql', %s, %s, %s)",
                (
                    change_set.id,
                    change_set.author,
                    change_set.filename,
                    order,
                    change_set.checksum,
                    change_set.comments[:255],
                    TOOL_NAME,
                    deployment_id,
                ),
            )
            connection.commit()
        except pymysql.err.MySQLError as error:
            raise ChangeSetFailed(change_set, len(change_set.sql) - 1, error_reason(error), applied) from None
        applied.append(change_set.id)
        order += 1
    return applied


def _fill_missing_checksums(
    connection: Connection, change_sets: Sequence[ChangeSet], rows: Sequence[AppliedRow]
) -> None:
    """Rows without MD5SUM get the change set's checksum, as Liquibase does."""
    by_key = {change_set.key: change_set for change_set in change_sets}
    for row in rows:
        change_set = by_key.get(row.key)
        if row.md5sum is None and change_set is not None:
            _execute(
                connection,
                "UPDATE DATABASECHANGELOG SET MD5SUM = %s WHERE ID = %s AND AUTHOR = %s AND FILENAME = %s"
                " AND MD5SUM IS NULL",
                (change_set.checksum, row.id, row.author, row.filename),
            )
    connection.commit()
