"""Where output goes: one JSON document on stdout with --json; human text and progress
on stderr. Errors print as one line, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

from cloudops.cli import exit_codes
from cloudops.errors import CloudopsError
from cloudops.text import human_bytes as human_bytes  # the CLI's name for it
from cloudops.text import plain_text

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """rich's Console for stderr, made on first use: a `-q --json` run that prints nothing
    there never imports rich (~40 ms of every such run's start-up)."""

    def __init__(self) -> None:
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # emoji=False: ":warning:" in a tag or an error is text, not a picture.
            console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
            if not console.is_terminal:
                # Logs (Jenkins) are read in a browser: do not squeeze tables into 80 columns.
                console.width = max(console.width, 140)
            self._console = console
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


_stderr = _LazyConsole()
stderr = cast("Console", _stderr)
"""Human output and errors. Hand :func:`stderr_console` (the Console itself) to rich APIs."""


def stderr_console() -> Console:
    return _stderr.get()


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def report_error(error: CloudopsError, prefix: str = "") -> None:
    """What failed on one line, the fix on the next."""
    stderr.print(f"[bold red]error:[/] {safe_text(prefix + error.message)}")
    if error.hint:
        stderr.print(f"  [dim]fix:[/] {safe_text(error.hint)}")


def fail(error: CloudopsError) -> NoReturn:
    report_error(error)
    sys.exit(exit_codes.for_error(error))


def safe_text(value: object) -> str:
    """``value`` for a rich markup string or Table cell: control characters shown as
    visible escapes (cloudops.text.plain_text), and rich
    markup escaped (``[link=...]``, ``[/]`` print as typed). The ONE way anything read
    from an account, a registry, a file or a user (repository names, tags, account names,
    error messages, S3 metadata, record fields) reaches the terminal."""
    from rich.markup import escape

    text = plain_text(value)
    if text.endswith("\\"):
        # rich.markup.escape doubles a trailing backslash (it would escape a tag that
        # follows) and the doubled one then prints twice when nothing follows: show it as
        # a visible escape instead, the same in every context.
        text = text[:-1] + "\\x5c"
    return escape(text)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A rich Table on stderr; the title and every cell through :func:`safe_text`."""
    from rich.table import Table

    table = Table(title=safe_text(title), title_justify="left")
    for column in columns:
        table.add_column(safe_text(column))
    for row in rows:
        table.add_row(*(safe_text(cell) for cell in row))
    stderr.print(table)


F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn library errors into a one-line message and an exit code. Anything else is a
    bug: one line too, the traceback only with CLOUDOPS_DEBUG=1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CloudopsError as error:
            fail(error)
        except KeyboardInterrupt:
            stderr.print("[red]interrupted[/]: nothing after the last completed step was written")
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as error:
            if os.environ.get("CLOUDOPS_DEBUG"):
                raise
            stderr.print(
                f"[bold red]internal error:[/] {type(error).__name__} "
                "(a bug in cloudops; run again with CLOUDOPS_DEBUG=1 for details and report it)"
            )
            sys.exit(exit_codes.FAILED)

    return wrapper  # type: ignore[return-value]


__all__ = [
    "emit_json",
    "fail",
    "handles_errors",
    "human_bytes",
    "print_table",
    "report_error",
    "safe_text",
    "stderr",
    "stderr_console",
]
