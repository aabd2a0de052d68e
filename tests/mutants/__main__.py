"""Run the named mutants (tests/mutants/catalogue.py) and print who killed each.

    python -m tests.mutants [--only NAME,NAME] [--list] [--baseline] [--keep] [--timeout S]

For each mutant: copy src/, tests/, benchmarks/ and pyproject.toml to a scratch
directory, apply the mutant's edits there (the real tree is never touched), and run
``python -m pytest -x`` on the mutant's tests in the scratch directory with
PYTHONPATH=<scratch>/src, so the tests and every `python -m cloudops` they start import
the mutated copy. A mutant is killed when a test fails; the table names that test and the
seconds it took. Exit 0 only when every mutant run was killed.

--baseline runs each distinct test selection once on an unmutated scratch copy first: a
kill only means something when the same tests pass without the mutant.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.mutants.catalogue import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("src", "tests", "benchmarks")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", ".hypothesis")
_SUMMARY = re.compile(r"^(FAILED|ERROR) (.+?)(?: - .*)?$")


class CatalogueError(Exception):
    """A mutant that cannot be applied as written (its text is gone or ambiguous)."""


@dataclass
class Outcome:
    mutant: str
    status: str  # killed | survived | no tests | error | timeout | stale
    by: str = ""
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)
    log: Path | None = None

    @property
    def killed(self) -> bool:
        return self.status == "killed"


def check_catalogue(mutants: list[Mutant]) -> None:
    """Every edit's text occurs exactly once in its file, today: fail loudly otherwise."""
    names = [m.name for m in MUTANTS]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise CatalogueError(f"mutant names used twice: {', '.join(sorted(duplicates))}")
    problems = []
    for mutant in mutants:
        for edit in mutant.edits:
            path = ROOT / edit.file
            if not path.is_file():
                problems.append(f"{mutant.name}: {edit.file} does not exist")
                continue
            count = path.read_text().count(edit.old)
            if count != 1:
                problems.append(
                    f"{mutant.name}: the text to replace occurs {count} times in {edit.file} "
                    f"(must be exactly once): {edit.old.strip()[:80]!r}"
                )
            if edit.old == edit.new:
                problems.append(f"{mutant.name}: an edit that changes nothing in {edit.file}")
    if problems:
        raise CatalogueError("the catalogue no longer matches the code:\n  " + "\n  ".join(problems))


def resolve_tests(mutant: Mutant) -> tuple[list[str], list[str]]:
    """(pytest arguments that exist, entries that match nothing)."""
    found: list[str] = []
    missing: list[str] = []
    for entry in mutant.tests:
        path, sep, rest = entry.partition("::")
        if glob.has_magic(path):
            matches = sorted(str(Path(p).relative_to(ROOT)) for p in glob.glob(str(ROOT / path)))
            if not matches:
                missing.append(entry)
            found += [m + sep + rest for m in matches]
        elif (ROOT / path).exists():
            found.append(entry)
        else:
            missing.append(entry)
    return list(dict.fromkeys(found)), missing


def make_scratch(parent: Path) -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="tree-", dir=parent))
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, scratch / name, ignore=IGNORED, symlinks=True)
    shutil.copy2(ROOT / "pyproject.toml", scratch / "pyproject.toml")
    return scratch


def apply(mutant: Mutant, scratch: Path) -> None:
    for edit in mutant.edits:
        path = scratch / edit.file
        text = path.read_text()
        if text.count(edit.old) != 1:  # the tree changed since check_catalogue
            raise CatalogueError(f"{mutant.name}: text to replace not found once in {edit.file}")
        path.write_text(text.replace(edit.old, edit.new, 1))


def environment(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(scratch / "src"), str(scratch)) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("CLOUDOPS_DEBUG", None)
    return env


def check_imports(scratch: Path) -> None:
    """The scratch copy is what `python -m cloudops` imports (not the editable install)."""
    found = subprocess.run(
        [sys.executable, "-c", "import cloudops; print(cloudops.__file__)"],
        cwd=scratch,
        env=environment(scratch),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(scratch.resolve()):
        raise CatalogueError(f"the scratch copy is not what Python imports: cloudops is {found}")


def run_tests(tests: list[str], scratch: Path, log: Path, timeout: float) -> tuple[str, str, float]:
    """(status, first failing test, seconds) of ``pytest -x`` on ``tests`` in ``scratch``."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=scratch,
            env=environment(scratch),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return "timeout", f"no result in {timeout:.0f} s", time.monotonic() - started
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    seconds = time.monotonic() - started
    first = ""
    for line in log.read_text(errors="replace").splitlines():
        match = _SUMMARY.match(line)
        if match:
            first = match[2] if match[1] == "FAILED" else f"{match[2]} (error)"
            break
    if code == 0:
        return "passed", "", seconds
    if code == 1:
        return "failed", first or "(see log)", seconds
    return "error", f"pytest exit {code}" + (f": {first}" if first else ""), seconds


def run_mutant(mutant: Mutant, work: Path, timeout: float, keep: bool) -> Outcome:
    tests, missing = resolve_tests(mutant)
    if not tests:
        return Outcome(mutant.name, "no tests", "none of " + ", ".join(missing), missing=missing)
    scratch = make_scratch(work)
    try:
        try:
            apply(mutant, scratch)
        except CatalogueError as error:  # the tree changed while the mutants ran
            return Outcome(mutant.name, "stale", str(error))
        log = work / f"{mutant.name}.log"
        status, by, seconds = run_tests(tests, scratch, log, timeout)
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {"failed": "killed", "passed": "survived"}.get(status, status)
    return Outcome(mutant.name, result, by, seconds, missing, log)


def baseline(mutants: list[Mutant], work: Path, timeout: float) -> bool:
    """Each distinct test selection on the unmutated copy: all must pass."""
    scratch = make_scratch(work)
    good = True
    try:
        seen: set[tuple[str, ...]] = set()
        for mutant in mutants:
            tests, _ = resolve_tests(mutant)
            if not tests or tuple(tests) in seen:
                continue
            seen.add(tuple(tests))
            log = work / f"baseline-{mutant.name}.log"
            status, by, seconds = run_tests(tests, scratch, log, timeout)
            print(f"baseline for {mutant.name}: {status} {by} ({seconds:.1f} s)", file=sys.stderr, flush=True)
            good = good and status == "passed"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return good


def short(test: str, param: int = 40) -> str:
    """A test id for the table: a long parameter id cut short."""
    head, bracket, rest = test.partition("[")
    if bracket and len(rest) > param:
        return f"{head}[{rest[: param - 3]}...]"
    return test


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutant", "result", "killed by (or why not)", "seconds")]
    for o in outcomes:
        rows.append((o.mutant, o.status, short(o.by), f"{o.seconds:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row[:3])) + "  " + row[3].rjust(7)
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
    killed = sum(o.killed for o in outcomes)
    total = sum(o.seconds for o in outcomes)
    lines.append(f"\n{killed} of {len(outcomes)} mutants killed in {total:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=os.environ.get("MUTANTS", ""), help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--baseline", action="store_true", help="first run each test selection unmutated")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (for debugging)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant (default 900)")
    args = parser.parse_args(argv)

    by_name = {m.name: m for m in MUTANTS}
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        print(f"unknown mutants: {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    selected = [by_name[n] for n in wanted] if wanted else list(MUTANTS)
    try:
        check_catalogue(selected)
    except CatalogueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.list:
        for m in selected:
            tests = ", ".join(m.tests)
            print(f"{m.name}\n    promise: {m.promise}\n    edits:   {', '.join(e.file for e in m.edits)}")
            print(f"    tests:   {tests}")
        return 0

    work = Path(tempfile.mkdtemp(prefix="cloudops-mutants-"))
    probe = make_scratch(work)
    try:
        check_imports(probe)
    except CatalogueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    print(f"{len(selected)} mutants; logs in {work}", file=sys.stderr, flush=True)
    if args.baseline and not baseline(selected, work, args.timeout):
        print("error: a test selection fails without any mutant (see the baseline logs)", file=sys.stderr)
        return 2

    outcomes: list[Outcome] = []
    try:
        for index, mutant in enumerate(selected, 1):
            outcome = run_mutant(mutant, work, args.timeout, args.keep)
            outcomes.append(outcome)
            note = f" [missing: {', '.join(outcome.missing)}]" if outcome.missing and outcome.by else ""
            print(
                f"[{index}/{len(selected)}] {mutant.name}: {outcome.status} {outcome.by} "
                f"({outcome.seconds:.1f} s){note}",
                file=sys.stderr,
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    print(table(outcomes))
    print(f"pytest logs: {work}")
    survivors = [o for o in outcomes if not o.killed]
    if survivors:
        print(f"not killed: {', '.join(o.mutant for o in survivors)}")
        return 1
    return 0 if len(outcomes) == len(selected) else 1


if __name__ == "__main__":
    sys.exit(main())
