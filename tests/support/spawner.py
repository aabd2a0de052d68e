"""Measuring one command at a time: wall seconds, CPU seconds and the command's OWN peak
RSS (``ru_maxrss`` from ``wait4``). Shared by the memory-bound test
(tests/integration/test_memory_bound.py) and the benchmarks (benchmarks/measure.py).

Linux counts the parent's RSS high-water mark into a child's ``ru_maxrss``: exec keeps the
figure of the (v)forked image it replaces. A test run or a benchmark holds layers, boto3
and pytest, so every measured command is started by a small helper (``python -S``) whose
own image, fresh after its exec, is what the measured child is forked from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class MeasureError(Exception):
    """The command could not be measured, or it did not do what was measured."""


@dataclass
class Run:
    argv: list[str]
    seconds: float
    cpu_seconds: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Run:
        if self.returncode != 0:
            raise MeasureError(
                f"{' '.join(self.argv)} exited {self.returncode}\n{self.stderr[-4000:]}{self.stdout[-2000:]}"
            )
        return self

    def json_report(self) -> dict[str, object]:
        """The JSON document cloudops printed with --json."""
        try:
            report: dict[str, object] = json.loads(self.stdout)
        except ValueError:
            raise MeasureError(
                f"cloudops printed no JSON report:\n{self.stdout[-2000:]}{self.stderr[-2000:]}"
            ) from None
        return report


SPAWNER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["out"], "wb") as out, open(job["err"], "wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            job["argv"], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=job["env"]
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    answer = {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss,
        "rc": os.waitstatus_to_exitcode(status),
    }
    print(json.dumps(answer), flush=True)
"""


class Spawner:
    """Runs one command at a time; wall seconds and that command's own peak RSS."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-S", "-c", SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def run(self, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Run:
        assert self._process.stdin is not None and self._process.stdout is not None
        out_path, err_path = workdir / "last.stdout", workdir / "last.stderr"
        job = {"argv": list(argv), "env": env or dict(os.environ), "out": str(out_path), "err": str(err_path)}
        self._process.stdin.write(json.dumps(job) + "\n")
        answer = self._process.stdout.readline()
        if not answer:
            raise MeasureError(f"the process spawner died running {' '.join(argv)}")
        result = json.loads(answer)
        return Run(
            list(argv),
            result["seconds"],
            result["cpu"],
            result["rss"],  # KiB on Linux
            result["rc"],
            out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"),
        )

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
