"""The Data Population Tool's command line, as the deployment package runs it::

    python3 tools/data-population-cli/bin/data-population update-db --config-dir DIR

Commands (Elastic Path's names; ``plan`` and ``release-locks`` are this stand-in's):

    update-db       apply the change sets the database lacks (DATABASECHANGELOG)
    reset-db        drop every table of the database, then apply every change set
    filter-data     validate the configuration and the change logs; changes nothing (Elastic
                    Path's filter-data renders its data files with the environment's
                    properties: this stand-in ships no data files to render)
    plan [--json]   what update-db would do: pending and changed change sets (read-only)
    release-locks   clear DATABASECHANGELOGLOCK whoever holds it (Liquibase's releaseLocks)

Options (before or after the command):

    --config-dir DIR       (also --configDirectory, -c) holds database.properties (keys:
                           database.DatabaseSettings.from_properties) and, optionally,
                           data-population.properties (parsed, not used)
    --changelog-dir DIR    the *.sql change logs; default: database/changelog/ of the
                           unpacked package this tool lies in
    --lock-wait SECONDS    wait that long for a lock held by another run (default 0)

Change logs are recorded in DATABASECHANGELOG.FILENAME as ``database/changelog/NAME``,
whatever directory they are read from: the identity of a change set does not depend on
where the package was unpacked.

Output: human lines on stderr; on stdout ONE JSON line for cloudops to parse, e.g.
``{"command": "update-db", "ok": true, "applied": ["ids"], "seconds": 1.2, ...}``; on an
error ``{"command": ..., "ok": false, "exit_code": 3, "error": "...", "applied": [...]}``,
with ``"connect_error": 1045`` (MariaDB's error number) when connecting failed with one.
``plan`` without ``--json`` prints the plan for humans on stdout instead. The password
never appears in either stream.

Exit codes: 0 done; 1 failed (server unreachable, login refused, a statement failed);
2 usage or configuration error (arguments, database.properties, malformed change log);
3 refused before applying anything (a changed checksum, the lock held by another run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import pymysql  # type: ignore[import-untyped,unused-ignore]

from . import changelog, database

__all__ = [
    "CHANGELOG_DIR",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "LAUNCHER",
    "TOOL_DIR",
    "main",
    "tool_files",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

TOOL_DIR = "tools/data-population-cli"
"""Where the tool lies in the deployment package zip: ``bin/data-population`` (the
launcher, :data:`LAUNCHER`) and ``lib/`` (this package's modules, copied verbatim)."""
CHANGELOG_DIR = "database/changelog"
"""Where the change logs lie in the zip (and the FILENAME prefix they are recorded with)."""
DATABASE_PROPERTIES = "database.properties"
DATA_POPULATION_PROPERTIES = "data-population.properties"
_MODULES = ("__init__.py", "changelog.py", "database.py", "cli.py")

LAUNCHER = '''#!/usr/bin/env python3
"""Data Population Tool (cloudops stand-in for Elastic Path's data-population-cli).

    python3 tools/data-population-cli/bin/data-population update-db --config-dir DIR

Loads ../lib as a package under a name of its own (its modules import each other
relatively), wherever the package was unpacked. Needs Python 3.11+ and PyMySQL.
"""
import importlib
import importlib.util
import os
import sys

sys.dont_write_bytecode = True  # leave the unpacked package as it was shipped
LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
NAME = "data_population_tool"
SPEC = importlib.util.spec_from_file_location(
    NAME, os.path.join(LIB, "__init__.py"), submodule_search_locations=[LIB]
)
PACKAGE = importlib.util.module_from_spec(SPEC)
sys.modules[NAME] = PACKAGE
SPEC.loader.exec_module(PACKAGE)
sys.exit(importlib.import_module(NAME + ".cli").main())
'''


def tool_files() -> dict[str, bytes]:
    """The tool's files as they go into the deployment package zip: path in the zip ->
    content (the launcher, then this package's modules copied verbatim)."""
    here = Path(__file__).resolve().parent
    files = {f"{TOOL_DIR}/bin/data-population": LAUNCHER.encode()}
    for name in _MODULES:
        files[f"{TOOL_DIR}/lib/{name}"] = (here / name).read_bytes()
    return files


# --- arguments ---------------------------------------------------------------------------


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the command's default.
    common.add_argument(
        "-c", "--config-dir", "--configDirectory", dest="config_dir", default=argparse.SUPPRESS, type=Path
    )
    common.add_argument("--changelog-dir", dest="changelog_dir", default=argparse.SUPPRESS, type=Path)
    common.add_argument("--lock-wait", dest="lock_wait", default=argparse.SUPPRESS, type=float)
    parser = _Parser(
        prog="data-population",
        description="Data Population Tool (Liquibase formatted SQL on MariaDB / MySQL).",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("update-db", parents=[common], help="apply the change sets the database lacks")
    commands.add_parser("reset-db", parents=[common], help="drop every table, then apply every change set")
    commands.add_parser("filter-data", parents=[common], help="validate the configuration (changes nothing)")
    plan = commands.add_parser("plan", parents=[common], help="what update-db would do (read-only)")
    plan.add_argument("--json", action="store_true", help="one JSON document on stdout")
    commands.add_parser("release-locks", parents=[common], help="clear the change log lock")
    return parser


# --- running -----------------------------------------------------------------------------


class _Terminated(BaseException):
    """SIGTERM: unwind (rolling back and releasing the lock) instead of dying mid-way."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


class _Output:
    """stderr for humans, one JSON line on stdout; the password scrubbed from both."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.secret = ""
        self.started = time.monotonic()

    def scrub(self, text: str) -> str:
        # Defence in depth: no message is built with the password. Very short passwords
        # are not scrubbed (they would mangle ordinary words).
        if len(self.secret) >= 4:
            return text.replace(self.secret, "***")
        return text

    def say(self, text: str) -> None:
        print(self.scrub(f"data-population: {text}"), file=sys.stderr, flush=True)

    def summary(self, **fields: Any) -> None:
        document = {"command": self.command, **fields}
        document.setdefault("seconds", round(time.monotonic() - self.started, 3))
        print(self.scrub(json.dumps(document, sort_keys=False)), flush=True)

    def fail(
        self, exit_code: int, message: str, applied: Sequence[str] = (), connect_error: int | None = None
    ) -> int:
        self.say(f"error: {message}")
        fields: dict[str, Any] = {"ok": False, "exit_code": exit_code, "error": message}
        if connect_error is not None:
            fields["connect_error"] = connect_error
        self.summary(**fields, applied=list(applied))
        return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code (module docstring)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(arguments)
    except _UsageError as error:
        return _Output(_guess_command(arguments)).fail(EXIT_USAGE, str(error))
    out = _Output(args.command)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args, out)
    except _Terminated:
        return out.fail(EXIT_FAILED, "terminated (SIGTERM); the next run completes what this one began")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _guess_command(arguments: Sequence[str]) -> str:
    known = {"update-db", "reset-db", "filter-data", "plan", "release-locks"}
    return next((a for a in arguments if a in known), "")


def _run(args: argparse.Namespace, out: _Output) -> int:
    try:
        settings, change_sets = _configuration(args)
    except (database.SettingsError, changelog.ChangelogError) as error:
        return out.fail(EXIT_USAGE, str(error))
    out.secret = settings.password
    if args.command == "filter-data":
        out.say(f"configuration valid: {settings.describe()}, {len(change_sets)} change sets")
        return _done(out, applied=[], change_sets=len(change_sets), database=settings.describe())
    actions: dict[str, Callable[[database.Connection], int]] = {
        "update-db": lambda connection: _update(connection, settings, change_sets, args, out),
        "reset-db": lambda connection: _reset(connection, settings, change_sets, args, out),
        "plan": lambda connection: _plan(connection, change_sets, args, out, settings),
        "release-locks": lambda connection: _release(connection, out),
    }
    try:
        connection = database.connect(settings)
    except database.DatabaseError as error:
        return out.fail(error.exit_code, str(error), connect_error=error.connect_error)
    except database.DbToolError as error:
        return out.fail(error.exit_code, str(error))
    try:
        return actions[args.command](connection)
    except database.ChangeSetFailed as error:
        return out.fail(error.exit_code, str(error), error.applied)
    except database.DbToolError as error:
        return out.fail(error.exit_code, str(error))
    except pymysql.err.MySQLError as error:
        return out.fail(EXIT_FAILED, f"database error: {database.error_reason(error)}")
    finally:
        with contextlib.suppress(pymysql.err.MySQLError, OSError):
            connection.close()


def _configuration(args: argparse.Namespace) -> tuple[database.DatabaseSettings, list[changelog.ChangeSet]]:
    config_dir: Path | None = getattr(args, "config_dir", None)
    if config_dir is None:
        raise database.SettingsError("--config-dir DIR is required (the directory of database.properties)")
    properties = database.read_properties(config_dir / DATABASE_PROPERTIES)
    extra = config_dir / DATA_POPULATION_PROPERTIES
    if extra.exists():
        database.read_properties(extra)  # must parse; its keys are Elastic Path's data filters
    settings = database.DatabaseSettings.from_properties(properties)
    return settings, changelog.load_changelogs(_read_changelogs(getattr(args, "changelog_dir", None)))


def _read_changelogs(directory: Path | None) -> dict[str, str]:
    if directory is None:
        directory = _default_changelog_dir()
    if not directory.is_dir():
        raise database.SettingsError(f"change log directory {directory} does not exist")
    files: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        try:
            files[f"{CHANGELOG_DIR}/{path.name}"] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise database.SettingsError(f"cannot read change log {path}: {error}") from None
    if not files:
        raise database.SettingsError(f"no *.sql change logs in {directory}")
    return files


def _default_changelog_dir() -> Path:
    """``database/changelog`` of the unpacked package, when this file is the package's
    ``tools/data-population-cli/lib/cli.py``."""
    here = Path(__file__).resolve().parent
    if here.name != "lib" or here.parent.parent.name != "tools":
        raise database.SettingsError("--changelog-dir DIR is required outside an unpacked deployment package")
    return here.parents[2] / CHANGELOG_DIR


def _done(out: _Output, **fields: Any) -> int:
    out.summary(ok=True, exit_code=EXIT_OK, **fields)
    return EXIT_OK


def _update(
    connection: database.Connection,
    settings: database.DatabaseSettings,
    change_sets: Sequence[changelog.ChangeSet],
    args: argparse.Namespace,
    out: _Output,
) -> int:
    result = database.update(connection, change_sets, lock_wait=getattr(args, "lock_wait", 0.0), log=out.say)
    out.say(f"update-db applied {len(result.applied)} change sets in {result.seconds:.2f}s")
    return _done(out, applied=result.applied, database=settings.describe())


def _reset(
    connection: database.Connection,
    settings: database.DatabaseSettings,
    change_sets: Sequence[changelog.ChangeSet],
    args: argparse.Namespace,
    out: _Output,
) -> int:
    result = database.reset(
        connection, settings.database, change_sets, lock_wait=getattr(args, "lock_wait", 0.0), log=out.say
    )
    out.say(f"reset-db dropped {len(result.dropped)} and applied {len(result.applied)} change sets")
    return _done(out, applied=result.applied, dropped=result.dropped, database=settings.describe())


def _plan(
    connection: database.Connection,
    change_sets: Sequence[changelog.ChangeSet],
    args: argparse.Namespace,
    out: _Output,
    settings: database.DatabaseSettings,
) -> int:
    the_plan = database.read_plan(connection, change_sets)
    if args.json:
        return _done(out, database=settings.describe(), up_to_date=the_plan.up_to_date, **the_plan.to_dict())
    lines = [f"{settings.describe()}: {the_plan.applied_count} applied, {len(the_plan.pending)} pending"]
    lines += [f"  pending  {c}" for c in the_plan.pending]
    lines += [f"  CHANGED  {c} (applied {stored}, now {c.checksum})" for c, stored in the_plan.changed]
    lines += [f"  unknown  {row} (applied, not in this package)" for row in the_plan.unknown_applied]
    if the_plan.changed:
        lines.append("update-db will refuse: applied change sets have changed")
    print(out.scrub("\n".join(lines)), flush=True)
    return EXIT_OK


def _release(connection: database.Connection, out: _Output) -> int:
    holder = database.release_locks(connection)
    out.say(f"released the change log lock held by {holder}" if holder else "the change log lock was free")
    return _done(out, applied=[], released=holder)


if __name__ == "__main__":
    sys.exit(main())
