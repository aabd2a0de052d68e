"""safe_text: the one way text from outside reaches the terminal (issue 12, 4)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from cloudops.cli.output import safe_text
from cloudops.text import plain_text

EVIL = "\x1b]8;;http://evil\x07click\x1b]8;;\x07 \x1b[2J [link=http://evil]x[/link] [bold]b[/] \r\n\u202e\\"


def _render(*cells: str) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=300, emoji=False)
    table = Table("a", "b")
    table.add_row(*cells)
    console.print(table)
    console.print(f"[red]{cells[0]}[/] after")
    return out.getvalue()


def test_controls_are_visible_and_markup_is_text() -> None:
    shown = _render(safe_text(EVIL), safe_text("ep/cortex:1.0\x9b2J"))
    assert "\x1b]" not in shown and "\x07" not in shown and "\r" not in shown and "\u202e" not in shown
    assert "\x1b[2J" not in shown and "\x9b" not in shown
    assert "\\x1b]8;;http://evil\\x07click" in shown and "[link=http://evil]x[/link]" in shown
    assert "\\u202e" in shown and "\\x0d\\x0a" in shown
    assert "after" in shown  # the trailing backslash did not swallow the closing tag


def test_without_it_rich_would_render_the_link() -> None:
    assert "\x1b]8;" in _render("[link=http://evil]x[/link]", "")  # what safe_text prevents


@given(st.text())
def test_any_text_prints_as_itself_or_visibly_escaped(text: str) -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=False, width=10_000, emoji=False, highlight=False).print(
        safe_text(text), end=""
    )
    expected = plain_text(text)
    if expected.endswith("\\"):  # a trailing backslash is shown as its escape, whatever follows
        expected = expected[:-1] + "\\x5c"
    assert out.getvalue() == expected
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in plain_text(text))
