"""The sandbox's servers need the optional extra cloudops[sandbox] (aiohttp, moto): without
it, `sandbox up` and `demo` refuse with the fix before starting anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cloudops.errors import InputError
from cloudops.sandbox import world


def test_without_the_extra_the_sandbox_refuses_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def without_moto(name: str, *args: object) -> object:
        return None if name == "moto" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(world.importlib.util, "find_spec", without_moto)
    with pytest.raises(InputError, match=r"needs moto") as caught:
        world.up(tmp_path / "sandbox")
    assert "cloudops[sandbox]" in str(caught.value)
    assert not (tmp_path / "sandbox").exists()  # nothing started, nothing written


def test_the_library_imports_neither_aiohttp_nor_moto() -> None:
    """What a Jenkins agent runs (the CLI and the library, sandbox aside) works without the
    extra: no module outside cloudops.sandbox imports aiohttp or moto."""
    root = Path(__file__).resolve().parents[2] / "src" / "cloudops"
    for path in root.rglob("*.py"):
        if "sandbox" in path.relative_to(root).parts:
            continue
        text = path.read_text()
        for name in ("aiohttp", "moto"):
            assert f"import {name}" not in text and f"from {name}" not in text, path
