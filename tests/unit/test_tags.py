"""`cloudops tags` without a registry: the filtering, the order, the printing of hostile names."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cloudops.cli import output
from cloudops.cli.commands.tags import show_notes, show_tags
from cloudops.report.tags import TagList, sort_tags

HOSTILE = [
    "\x1b[2J\x1b]0;pwned\x07",  # clears the screen, retitles the terminal
    "[bold red]fake error[/]",  # rich markup
    "[link=https://evil.example]click[/link]",
    ":warning:",
    "-rf",
    ".hidden",
    "x" * 129,
    "a b",
    "1.0\n2.0",
    "9.0\n",
    "",
    "ta\u0261",  # not ASCII
]


def test_invalid_names_are_dropped_and_counted_valid_ones_sorted_newest_first() -> None:
    found = sort_tags("r.example/ep/cortex", ["8.5.0", *HOSTILE, "8.10.0", "latest", "8.6.0-rc1", "8.5.0"])

    assert found.tags == ("8.10.0", "8.6.0-rc1", "8.5.0", "latest")
    assert found.invalid == len(HOSTILE)
    assert not found.truncated
    assert found.as_dict() == {
        "repository": "r.example/ep/cortex",
        "tags": ["8.10.0", "8.6.0-rc1", "8.5.0", "latest"],
        "referrer_tags": [],
        "invalid_tags": len(HOSTILE),
        "truncated": False,
    }


def test_tags_that_carry_referrers_are_kept_apart_and_counted(captured: io.StringIO) -> None:
    fallback = "sha256-" + "a" * 64
    names = ["8.5.0", fallback + ".sig", fallback, "sha256-" + "b" * 64 + ".att", "sha256-short", "8.6.0"]
    found = sort_tags("r/x", names)

    assert found.tags == ("8.6.0", "8.5.0", "sha256-short")  # not a digest: an ordinary tag
    assert found.referrer_tags == (fallback, fallback + ".sig", "sha256-" + "b" * 64 + ".att")
    show_tags(found)
    show_notes(found)
    shown = captured.getvalue()
    assert (
        fallback not in shown and "3 referrer tags (signatures, SBOMs) not shown; --all lists them" in shown
    )
    captured.truncate(0)
    show_tags(found, show_all=True)
    show_notes(found, show_all=True)
    assert fallback + ".sig" in captured.getvalue() and "not shown" not in captured.getvalue()


def test_the_longest_valid_tag_is_kept() -> None:
    assert sort_tags("r/x", ["_" + "a" * 127]).tags == ("_" + "a" * 127,)


def test_more_valid_tags_than_the_bound_are_cut_and_marked() -> None:
    found = sort_tags("r/x", [str(n) for n in range(10)], limit=4)

    assert found.tags == ("3", "2", "1", "0") and found.truncated


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buffer = io.StringIO()
    console = Console(file=buffer, highlight=False, soft_wrap=True, emoji=False, width=200)
    monkeypatch.setattr(output._stderr, "_console", console)
    return buffer


def test_hostile_names_never_reach_the_terminal(captured: io.StringIO) -> None:
    found = sort_tags("r.example/ep/cortex", ["1.0", *HOSTILE, "[b]"])

    show_tags(found)
    show_notes(found)

    text = captured.getvalue()
    assert text.splitlines()[0] == "1.0"
    assert f"{len(HOSTILE) + 1} invalid tags not shown" in text
    assert "\x1b" not in text and "\x07" not in text
    for needle in ("pwned", "fake error", "evil.example", "warning", "-rf", "hidden", "a b", "[b]"):
        assert needle not in text, needle


def test_a_tag_is_printed_through_safe_text(captured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    # Valid tags cannot hold markup or control characters, so printing them through
    # safe_text is checked directly: a list the filter did not make is still escaped.
    show_tags(TagList("r/x", ("[bold]x[/bold]", "a\x1bb")))

    text = captured.getvalue()
    assert "[bold]x[/bold]" in text and "\x1b" not in text and "a\\x1bb" in text


def test_the_cut_is_said() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(output._stderr, "_console", console)
        show_notes(TagList("r/x", ("1",), truncated=True, limit=100_000))
    assert "stopped after 100,000 tags" in buffer.getvalue()
