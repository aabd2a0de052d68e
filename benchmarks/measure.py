"""Measuring one command at a time for the benchmarks: wall seconds, CPU seconds and the
command's own peak RSS (shared by copy_bench.py, package_bench.py and history_bench.py).

The spawner itself lives in tests/support/spawner.py, shared with the memory-bound test
(tests/integration/test_memory_bound.py): one way of measuring peak RSS, not two."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.support

from tests.support.spawner import MeasureError, Run, Spawner

BenchError = MeasureError
"""The benchmark could not measure, or a tool copied wrongly."""

__all__ = ["BenchError", "Run", "Spawner", "mib", "print_table"]


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
