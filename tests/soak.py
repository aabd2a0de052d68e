"""`make soak`: repeat fault injection and kill -9 against promotions on the sandbox for a
set number of rounds, then print what happened. Inconsistencies must be 0: a tag or
package pointer that names content not fully present, a wrong digest or checksum, a run
that claimed success for something it skipped, a releases/current.json that names a
release whose content is not all there, or a traceback.

Each round, on one world kept from round to round (every round publishes new tags and a
new package version):

* `promote image` and `promote package` into qa, each under one fault and perhaps a
  kill -9, then again without faults;
* a release (two images and the package) planned with `cloudops plan --out` into preprod
  (no approval there; a stage of its own, so the round's qa promotions never move its
  package pointer) and `cloudops apply`-ed under faults on its registry and S3 and
  perhaps a kill -9, then planned afresh and applied without faults until it completes.
  current.json moves from the last round's release to this one. After every apply,
  killed or not, preprod itself (boto3, its registry) must hold all that current.json
  names (tests/support/release_check.py).

    python -m tests.soak --rounds 20 [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudops.release_current import CURRENT_KEY
from cloudops.sandbox import world
from tests.integration.test_faults_pipeline import SMALL_PARTS, _pointer_is_sound, _qa_state, _tag_is_sound
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.release_check import current_release_is_whole
from tests.support.sandbox import context_for, init_all, publish, running_sandbox

FAST = {"CLOUDOPS_RETRY_ATTEMPTS": "4", "CLOUDOPS_RETRY_SECONDS": "20", "AWS_MAX_ATTEMPTS": "4"}
MiB = 1024 * 1024
HUNG = 900  # seconds: a run this long (retries included) has hung, it is not just slow
RELEASE_TO = "preprod"
"""Where the releases go: no approval guards it (only the last stage's does), and nothing
else is promoted into it, so its current.json and package pointer move only by releases."""
PACKAGE_SIZE = 18 * MiB
"""Above apply's multipart threshold (16 MiB; it does not read $CLOUDOPS_MULTIPART_*), so
the release's package is copied in parts too; `promote package` copies it in 5 MiB parts."""
RELEASE_ATTEMPTS = 3
"""Clean plan + apply pairs after the faulty apply before a release counts as stuck."""


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


@dataclass(frozen=True)
class Release:
    """One round's release: its images (repository -> digest in build) and its package,
    all under one tag (the package version is the tag too)."""

    name: str
    images: dict[str, str]
    tag: str
    sha256: str

    def write(self, directory: Path) -> Path:
        path = directory / f"release-{self.name}.yaml"
        images = [f'  - {{repository: {r}, tag: "{self.tag}"}}' for r in sorted(self.images)]
        path.write_text(
            "\n".join(
                [f'release: "{self.name}"', "images:", *images, f'package: {{version: "{self.tag}"}}', ""]
            )
        )
        return path


class Tally:
    def __init__(self) -> None:
        self.faults = self.completed = self.failed_cleanly = self.killed = self.inconsistent = 0
        self.applies = self.applies_killed = self.release_checks = self.release_violations = 0
        self.notes: list[str] = []
        self.last_error = ""
        """The end of the last run's stderr."""

    def note(self, text: str) -> None:
        self.inconsistent += 1
        self.notes.append(text)

    def run(
        self, args: list[str], env: dict[str, str], *, kill_at: tuple[FaultProxy, int] | None
    ) -> int | None:
        """Run cloudops: its exit code, None when it was killed (or hung). With ``kill_at``
        (proxy, index): the index-th request through that proxy stalls, and the process is
        killed -9 while it waits there, a point in the protocol rather than a moment in
        time; a run that ends before reaching it counts as an ordinary run."""
        self.last_error = ""
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
                    return None
            try:
                process.wait(timeout=HUNG)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self.note(f"{args[:2]} still running after {HUNG}s: killed")
                return None
            stderr.seek(0)
            err = stderr.read()
        self.last_error = " ".join(err.split())[-300:]
        if "Traceback" in err:
            self.note(f"traceback from {args[:2]}")
        elif process.returncode == 0:
            self.completed += 1
        elif process.returncode in (1, 2, 3):
            self.failed_cleanly += 1  # documented codes: failed, refused input, guard rail
        else:
            self.note(f"exit {process.returncode} from {args[:2]}: {err.strip()[-200:]}")
        return process.returncode


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
        fault_proxy(f"http://{state.registries[RELEASE_TO]}") as released,
    ):
        pipeline = Path(tmp) / "pipeline.yaml"
        text = state.pipeline.read_text().replace(f'aws: "{state.moto_url}"', f'aws: "{s3.url}"')
        text = text.replace(f'qa: "{state.registries["qa"]}"', f'qa: "{qa.host}"')
        text = text.replace(
            f'{RELEASE_TO}: "{state.registries[RELEASE_TO]}"', f'{RELEASE_TO}: "{released.host}"'
        )
        # Releases go from build straight into RELEASE_TO (qa is the image and package
        # promotions' own): the same plan and apply as from qa, with no release into qa first.
        assert text.count(s3.url) == 1 and text.count(qa.host) == text.count(released.host) == 1
        pipeline.write_text(text + "allow_stage_skip: true\n")
        # One world for every round: current.json moves from one round's release to the next.
        world.reset(state)
        ctx = context_for(state.pipeline)  # reads the accounts directly, not through the proxies
        init_all(ctx)
        previous: str | None = None
        for round_ in range(options.rounds):
            tag = f"r{round_}"
            digest = publish(ctx, "build", "ep/cortex", tag, scale=0.2)
            from cloudops.package import publish_package
            from cloudops.sandbox.seed import build_package

            package = Path(tmp) / f"{tag}.zip"
            build_package(package, tag, size=PACKAGE_SIZE)
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
                tally.note(
                    f"round {round_}: a clean re-run did not complete the promotion (tag names "
                    f"{tagged}, want {digest}; current.json {pointer}; open uploads {len(uploads)})"
                )
            release = Release(
                name=f"soak-{round_}",
                images={"ep/cortex": digest, "ep/search": publish(ctx, "build", "ep/search", tag, scale=0.2)},
                tag=tag,
                sha256=hashlib.sha256(package.read_bytes()).hexdigest(),
            )
            _release_round(tally, rng, ctx, pipeline, Path(tmp), release, previous, s3=s3, registry=released)
            previous = _current(ctx).get("release")  # this release, unless it could not complete
            print(f"round {round_ + 1}/{options.rounds} done", file=sys.stderr)
    rows = [
        ("faults injected", tally.faults),
        ("runs killed (kill -9)", tally.killed),
        ("runs completed", tally.completed),
        ("runs failed cleanly (exit 1/2/3)", tally.failed_cleanly),
        ("applies run", tally.applies),
        ("applies killed (kill -9)", tally.applies_killed),
        ("current.json checks", tally.release_checks),
        ("current.json violations", tally.release_violations),
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
        tally.note(str(error))


def _release_round(
    tally: Tally,
    rng: random.Random,
    ctx: Any,
    pipeline: Path,
    directory: Path,
    release: Release,
    previous: str | None,
    *,
    s3: FaultProxy,
    registry: FaultProxy,
) -> None:
    """Plan ``release`` into RELEASE_TO, apply it under one registry fault, one S3 fault
    and perhaps a kill -9, then plan afresh and apply without faults until current.json
    names it. After every apply, RELEASE_TO must hold all its current.json names, and
    current.json may name only ``previous`` or ``release``."""
    release_file = release.write(directory)

    def plan(attempt: int) -> Path | None:
        out = directory / f"plan-{release.name}-{attempt}.json"
        args = ["plan", "--to", RELEASE_TO, "--from", "build", "--release", str(release_file)]
        code = tally.run([*args, "--out", str(out), "--pipeline", str(pipeline)], FAST, kill_at=None)
        if code != 0:
            tally.note(f"{release.name}: a clean plan (attempt {attempt}) exited {code}: {tally.last_error}")
            return None
        return out

    def apply(plan_file: Path, attempt: int) -> None:
        faulty = attempt == 0
        rules: list[Rule] = []
        kill_at = None
        if faulty:
            rules = [registry.add(rng.choice(registry_faults())), s3.add(rng.choice(s3_faults()))]
            # A whole apply makes about 50 requests to S3 (STS and ECR included; the package
            # pointer, the release log and current.json come last) and 30-42 to the registry.
            kill_at = rng.choice([None, (registry, rng.randrange(36)), (s3, rng.randrange(50))])
        killed = tally.killed
        code = tally.run(["apply", str(plan_file), "--pipeline", str(pipeline)], FAST, kill_at=kill_at)
        tally.applies += 1
        tally.applies_killed += tally.killed - killed
        tally.faults += sum(rule.hits for rule in rules)
        registry.clear()  # releases the stalled request too (it never reaches the account)
        s3.clear()
        how = "killed" if tally.killed > killed else f"exit {code}"
        if faulty:
            proxy = "the registry" if kill_at is not None and kill_at[0] is registry else "S3"
            where = "no kill" if kill_at is None else f"kill -9 at request {kill_at[1]} to {proxy}"
            faults = ", ".join(f"{r.action} {r.method} {r.path} ({r.hits} hit)" for r in rules)
            print(f"  {release.name} apply: {faults}; {where}: {how}", file=sys.stderr)
        named = _check_release(tally, ctx, release, previous, f"apply attempt {attempt} ({how})")
        if code == 0 and named != release.name:
            tally.note(f"{release.name}: apply attempt {attempt} exited 0 but current.json names {named}")
        elif not faulty and code != 0:
            tally.note(
                f"{release.name}: a clean apply of a fresh plan (attempt {attempt}) ended {how}: "
                + tally.last_error
            )

    planned = plan(0)
    if planned is None:
        return
    apply(planned, 0)
    # A partial apply changed the world: its plan is refused now, a fresh one completes it.
    attempt = 0
    while _current(ctx).get("release") != release.name and attempt < RELEASE_ATTEMPTS:
        attempt += 1
        planned = plan(attempt)
        if planned is None:
            break
        apply(planned, attempt)
    current = _current(ctx)
    package = current.get("package") or {}
    images = {i["repository"]: i["digest"] for i in current.get("images", [])}
    if (
        current.get("release") != release.name
        or images != release.images
        or (package.get("version"), package.get("sha256")) != (release.tag, release.sha256)
    ):
        tally.note(
            f"{release.name}: clean plans and applies did not complete the release "
            f"(current.json names {current.get('release')}, images {images}, package {package})"
        )
    uploads = _open_uploads(ctx, RELEASE_TO)
    if uploads:
        tally.note(f"{release.name}: {len(uploads)} multipart uploads left open in {RELEASE_TO}: {uploads}")


def _current(ctx: Any) -> dict[str, Any]:
    """RELEASE_TO's releases/current.json as it is (boto3), {} when there is none."""
    s3 = ctx.session(RELEASE_TO).client("s3")
    try:
        body = s3.get_object(Bucket=ctx.pipeline.bucket(RELEASE_TO), Key=CURRENT_KEY)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return {}
    try:
        found = json.loads(body)
    except ValueError:
        return {"release": "(not JSON)"}
    return found if isinstance(found, dict) else {"release": "(not an object)"}


def _open_uploads(ctx: Any, account: str) -> list[str]:
    s3 = ctx.session(account).client("s3")
    return [
        u["Key"] for u in s3.list_multipart_uploads(Bucket=ctx.pipeline.bucket(account)).get("Uploads", [])
    ]


def _check_release(tally: Tally, ctx: Any, release: Release, previous: str | None, after: str) -> str | None:
    """Count what is wrong with RELEASE_TO's current.json after a run: content it names
    that is not all there, or a release it should not name. The release it names."""
    tally.release_checks += 1
    try:
        killed = "killed" in after  # a run killed -9 may leave the pointer one release ahead
        problems = current_release_is_whole(ctx, RELEASE_TO, in_flight=release.tag if killed else None)
        named = _current(ctx).get("release")
    except Exception as error:  # an account that cannot be read is a finding too
        problems, named = [f"could not be checked: {error!r}"], None
    if named not in (previous, release.name):
        problems.append(f"current.json names {named!r}, neither {previous!r} nor {release.name!r}")
    for problem in problems:
        tally.release_violations += 1
        tally.note(f"{release.name}, after {after}: {problem}")
    return named


if __name__ == "__main__":
    sys.exit(main())
