"""`make demo` is the README's first command: `cloudops demo` runs the whole job on a
sandbox of its own (as a user's checkout would: no $CLOUDOPS_* settings) and shows every
step the issues ask of it, ending with a clean audit. Small layers (--scale) keep it quick;
the steps are the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STEPS = [
    "1. initialize every account",
    "3. promote release 8.5.0 through every stage (the last one after an approval)",
    "5. promote release 8.6.0 through every stage",
    "6. an unsigned image is refused where signatures are required",
    "7. 8.6.0 is broken in prod: roll prod back to 8.5.0, reject 8.6.0 there",
    "9. status",
    "10. best-practice audit",
]


def test_the_demo_runs_the_whole_job_and_ends_with_a_clean_audit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDOPS_", "AWS_"))}
    env.update(CLOUDOPS_SANDBOX=str(tmp_path / "sandbox"), COLUMNS="200")

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cloudops", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    try:
        demo = run("demo", "--scale", "0.05", timeout=400)
    finally:
        # Stops what the demo started (its state file names the processes), whatever happened.
        try:
            down = run("sandbox", "down", timeout=120)
        except subprocess.TimeoutExpired as timeout:
            down = subprocess.CompletedProcess(timeout.cmd, -1, "", "sandbox down timed out")
    said = demo.stdout + demo.stderr
    assert demo.returncode == 0, said[-4000:]
    assert "Traceback" not in said
    flat = " ".join(said.split())
    for step in STEPS:
        assert step in flat, step
    assert "prod requires an approval" in flat and "approved by arn:aws:sts::444444444444:" in flat
    assert "4 change sets applied" in flat and "2 change sets applied" in flat  # 8.5.0, then 8.6.0's two
    assert "rolled-back" in flat and "refused (exit 3)" in flat and "rejected 8.6.0" in flat
    assert "audit clean: the setup follows the best practices" in flat
    assert down.returncode == 0, down.stderr
