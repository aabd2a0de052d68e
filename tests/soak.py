"""`make soak`: repeat fault injection and kill -9 against promotions on the sandbox for a
set number of rounds, then print what happened. Inconsistencies must be 0: a tag or
package pointer that names content not fully present, a wrong digest or checksum, a run
that claimed success for something it skipped, or a traceback.

    python -m tests.soak --rounds 20 [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cloudops.sandbox import world
from tests.integration.test_faults_pipeline import SMALL_PARTS, _pointer_is_sound, _qa_state, _tag_is_sound
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.sandbox import context_for, init_all, publish, running_sandbox

FAST = {"CLOUDOPS_RETRY_ATTEMPTS": "4", "CLOUDOPS_RETRY_SECONDS": "20", "AWS_MAX_ATTEMPTS": "4"}
MiB = 1024 * 1024
HUNG = 900  # seconds: a run this long (retries included) has hung, it is not just slow


def registry_faults() -> list[Rule]:
    return [
        Rule("status", path="/blobs/uploads/", method="POST", status=429, retry_after="0.3", times=2),
        Rule("status", path="/manifests/", method="PUT", status=503, times=1),
        Rule("status", path="/blobs/sha256", method="HEAD", status=500, times=2),
        Rule("drop_request", path="/blobs/uploads/.+digest=", method="PUT", after_bytes=200_000, times=1),
        Rule("status", path="/blobs/uploads/", method="POST", status=503, times=-1),  # never ends: must fail
        # ECR answers 401 until credentials are sent; an expired token is met after that.
        Rule("expired", path="/manifests/", method="HEAD", skip=1, times=1),
    ]


def s3_faults() -> list[Rule]:
    return [
        Rule("status", path="partNumber=", method="PUT", status=503, times=2),
        Rule("drop_response", path=r"/versions/.*\.zip$", method="GET", after_bytes=2 * MiB, times=1),
        Rule("drop_request", path="partNumber=", method="PUT", after_bytes=MiB, times=1),
        Rule("status", path="partNumber=", method="PUT", status=500, times=-1),  # never ends: must fail
    ]


class Tally:
    def __init__(self) -> None:
        self.faults = self.completed = self.failed_cleanly = self.killed = self.inconsistent = 0
        self.notes: list[str] = []

    def run(self, args: list[str], env: dict[str, str], *, kill_at: tuple[FaultProxy, int] | None) -> None:
        """Run cloudops. With ``kill_at`` (proxy, index): the index-th request through that
        proxy stalls, and the process is killed -9 while it waits there, a point in the
        protocol rather than a moment in time; a run that ends before reaching it counts
        as an ordinary run."""
        stall = None
        if kill_at is not None:
            proxy, index = kill_at
            stall = proxy.add(Rule("stall", skip=index, times=1, seconds=600))
        # stderr to a file, not a pipe: nothing reads a pipe while the run is watched, and a
        # full one would block the run before it reaches the stall.
        with tempfile.TemporaryFile("w+") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "cloudops", *args],
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
            if stall is not None:
                while stall.hits == 0 and process.poll() is None:
                    time.sleep(0.01)
                if process.poll() is None:  # waiting in the stalled request
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    self.killed += 1
                    return
            try:
                process.wait(timeout=HUNG)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self.inconsistent += 1
                self.notes.append(f"{args[:2]} still running after {HUNG}s: killed")
                return
            stderr.seek(0)
            err = stderr.read()
        if "Traceback" in err:
            self.inconsistent += 1
            self.notes.append(f"traceback from {args[:2]}")
        elif process.returncode == 0:
            self.completed += 1
        elif process.returncode in (1, 2, 3):
            self.failed_cleanly += 1  # documented codes: failed, refused input, guard rail
        else:
            self.inconsistent += 1
            self.notes.append(f"exit {process.returncode} from {args[:2]}: {err.strip()[-200:]}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    options = parser.parse_args()
    rng = random.Random(options.seed)
    tally = Tally()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_sandbox(Path(tmp) / "sandbox") as state,
        fault_proxy(state.moto_url) as s3,
        fault_proxy(f"http://{state.registries['qa']}") as qa,
    ):
        pipeline = Path(tmp) / "pipeline.yaml"
        text = state.pipeline.read_text().replace(f'aws: "{state.moto_url}"', f'aws: "{s3.url}"')
        pipeline.write_text(text.replace(f'qa: "{state.registries["qa"]}"', f'qa: "{qa.host}"'))
        for round_ in range(options.rounds):
            world.reset(state)
            ctx = context_for(state.pipeline)
            init_all(ctx)
            tag = f"r{round_}"
            digest = publish(ctx, "build", "ep/cortex", tag, scale=0.2)
            from cloudops.package import publish_package
            from cloudops.sandbox.seed import build_package

            package = Path(tmp) / f"{tag}.zip"
            build_package(package, tag, size=12 * MiB)
            publish_package(ctx, package, tag)
            for proxy, rules, args, env in (
                (
                    qa,
                    registry_faults(),
                    ["promote", "image", "--to", "qa", "--repository", "ep/cortex", "--tag", tag],
                    FAST,
                ),
                (
                    s3,
                    s3_faults(),
                    ["promote", "package", "--to", "qa", "--version", tag],
                    {**FAST, **SMALL_PARTS},
                ),
            ):
                proxy.clear()
                rule = proxy.add(rng.choice(rules))
                # Kill -9 at a request picked at random (about the first 30 a run makes).
                kill_at = rng.choice([None, (proxy, rng.randrange(30))])
                tally.run([*args, "--pipeline", str(pipeline)], env, kill_at=kill_at)
                tally.faults += rule.hits
                proxy.release_stalls()
                _check(tally, ctx, digest, tag)
                proxy.clear()  # the re-run is clean and must complete
                tally.run([*args, "--pipeline", str(pipeline)], env, kill_at=None)
                _check(tally, ctx, digest, tag)
            pointer, uploads = _qa_state(ctx)
            tagged = _tag_is_sound(ctx, "ep/cortex", tag)
            if tagged != digest or pointer is None or pointer["version"] != tag or uploads:
                tally.inconsistent += 1
                tally.notes.append(
                    f"round {round_}: a clean re-run did not complete the promotion (tag names "
                    f"{tagged}, want {digest}; current.json {pointer}; open uploads {len(uploads)})"
                )
            print(f"round {round_ + 1}/{options.rounds} done", file=sys.stderr)
    rows = [
        ("faults injected", tally.faults),
        ("runs killed (kill -9)", tally.killed),
        ("runs completed", tally.completed),
        ("runs failed cleanly (exit 1/2/3)", tally.failed_cleanly),
        ("inconsistencies found", tally.inconsistent),
    ]
    print(f"soak: {options.rounds} rounds, seed {options.seed}")
    for name, value in rows:
        print(f"  {name:32} {value:6}")
    for note in tally.notes:
        print(f"  ! {note}")
    print(json.dumps(dict(rows)))
    return 1 if tally.inconsistent else 0


def _check(tally: Tally, ctx: object, digest: str, tag: str) -> None:
    try:
        tagged = _tag_is_sound(ctx, "ep/cortex", tag)
        if tagged not in (None, digest):
            raise AssertionError(f"tag names {tagged}")
        _pointer_is_sound(ctx)
    except AssertionError as error:
        tally.inconsistent += 1
        tally.notes.append(str(error))


if __name__ == "__main__":
    sys.exit(main())
