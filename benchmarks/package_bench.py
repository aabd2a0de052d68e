#!/usr/bin/env python3
"""`cloudops promote package` against `aws s3 cp` through a local file, and peak memory.

Brings up the sandbox (moto server for every account, plus the registries) in a temp dir,
initializes the build and qa accounts, builds a synthetic deployment package of
``--size-mib`` (default 1024) and publishes it into build with `cloudops package publish`.
Then per round (``--rounds``, default 3), each starting from a qa bucket without the
package (every version of the version object and of current.json deleted):

* cloudops: `cloudops promote package --to qa --version V --json`, one process. It streams
  one GET of the source into a multipart upload, then reads the new object back (a second
  full GET) and hashes it before moving current.json: that verification is part of its
  honest cost and is included in its time;
* the peer, twice: `aws s3 cp s3://BUILD/KEY FILE` with the build account's assumed-role
  keys, then `aws s3 cp FILE s3://QA/KEY2` with qa's keys (two processes, times summed):
    - "ranged GETs": the AWS CLI's default settings (8 MiB parts, 10 threads). On moto
      every ranged GET re-reads the whole object (ECR-NOTES.md), so this download is
      pathological on moto and says nothing about S3;
    - "one GET": the download runs with ``s3.multipart_threshold`` above the object's
      size, so the AWS CLI fetches it in a single GET; the upload keeps the defaults.

Every copy is checked after its round, outside the timings: qa's object metadata sha256
and current.json must name the source's sha256 and an independent GET of qa's bytes must
hash to it (the peer's downloaded file and uploaded object likewise). A wrong copy stops
the benchmark with exit code 1.

Peak RSS is the kernel's ru_maxrss of each measured process (os.wait4), taken by a small
helper process started first (Linux carries the parent's RSS into a vforked child's
figure across exec). Target from the issue: cloudops under 200 MB.

    python benchmarks/package_bench.py                         # 1 GiB, 3 rounds
    python benchmarks/package_bench.py --size-mib 64 --rounds 1  # smoke run, well under a minute

$CLOUDOPS_MULTIPART_THRESHOLD_MIB, $CLOUDOPS_PART_SIZE_MIB and $CLOUDOPS_S3_WORKERS are
passed through to cloudops (the effective settings are printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import BenchError, Spawner, mib, print_table  # benchmarks/measure.py: run as scripts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.sandbox import assumed_keys, context_for  # noqa: E402

from cloudops.cli.context import transfer_settings  # noqa: E402
from cloudops.pipeline.context import PipelineContext  # noqa: E402
from cloudops.pipeline.init import init_account  # noqa: E402
from cloudops.sandbox import world  # noqa: E402
from cloudops.sandbox.seed import build_package  # noqa: E402

MiB = 1024 * 1024
RSS_TARGET_BYTES = 200 * 1000 * 1000  # "200 MB", read strictly (190.7 MiB)
VERSION = "bench-1.0.0"
AWS = "/usr/bin/aws"
PEER_KEY = "bench/aws-cli/ext-deployment-package.zip"
TUNING_VARS = ("CLOUDOPS_MULTIPART_THRESHOLD_MIB", "CLOUDOPS_PART_SIZE_MIB", "CLOUDOPS_S3_WORKERS")


# -- measured processes -------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system seconds used so far by ``pid`` (moto's own cost of a transfer)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cloudops_command() -> list[str]:
    script = Path(sys.executable).parent / "cloudops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cloudops"]


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 * MiB), b""):
            hasher.update(block)
    return hasher.hexdigest()


# -- the world ----------------------------------------------------------------------------


@dataclass
class World:
    state: world.SandboxState
    context: PipelineContext
    workdir: Path
    env: dict[str, str]  # for cloudops: os.environ + the sandbox's exports
    spawner: Spawner
    package_key: str  # the version object's key (same layout in every bucket)
    size: int
    sha256: str

    def bucket(self, account: str) -> str:
        return self.context.pipeline.bucket(account)

    def s3(self, account: str) -> Any:
        return self.context.session(account).client("s3")

    @property
    def moto_pid(self) -> int:
        return self.state.pids["moto"]


def purge(s3: Any, bucket: str, key: str) -> None:
    """Delete every version and delete marker of ``key`` (the buckets are versioned: a plain
    delete would leave the bytes in moto) and abort unfinished uploads of it."""
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if item["Key"] == key:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=item["VersionId"])
    for upload in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) or []:
        if upload.get("Key") == key:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])


def sha256_object(s3: Any, bucket: str, key: str) -> tuple[str, int]:
    """An independent read of the bytes: one plain GET, hashed here."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    hasher = hashlib.sha256()
    size = 0
    try:
        for block in iter(lambda: body.read(8 * MiB), b""):
            hasher.update(block)
            size += len(block)
    finally:
        body.close()
    return hasher.hexdigest(), size


def current_json(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())  # type: ignore[no-any-return]
    except Exception as exc:  # reported as a failed verification
        raise BenchError(f"s3://{bucket}/{key} is not readable JSON: {exc}") from None


def pointer_key(package_key: str) -> str:
    prefix = package_key.split("/versions/", 1)[0]
    return f"{prefix}/current.json" if prefix else "current.json"


# -- one measurement each -----------------------------------------------------------------


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float  # the tool's own processes
    moto_cpu_seconds: float  # the server's, over the same interval
    max_rss_kib: int
    parts: str = ""  # for the peer: download + upload seconds
    inner_seconds: float = 0.0  # for cloudops: its JSON "seconds" (after start-up and imports)


def run_cloudops(w: World) -> Measured:
    qa = w.s3("qa")
    purge(qa, w.bucket("qa"), w.package_key)
    purge(qa, w.bucket("qa"), pointer_key(w.package_key))
    versions = qa.list_object_versions(Bucket=w.bucket("qa"), Prefix=w.package_key).get("Versions") or []
    # Prefix also matches cloudops' transfer lock (<key>.lock), whose old versions remain.
    if any(v["Key"] == w.package_key for v in versions):
        raise BenchError("the qa copy could not be deleted before the round")
    argv = [*cloudops_command(), "promote", "package", "--to", "qa", "--version", VERSION, "--json"]
    moto_before = process_cpu(w.moto_pid)
    run = w.spawner.run(argv, w.workdir, w.env).check()
    moto_cpu = process_cpu(w.moto_pid) - moto_before
    report = run.json_report()
    if report.get("status") != "promoted" or report.get("bytes_uploaded") != w.size:
        raise BenchError(f"cloudops did not copy the package: {report}")
    verify_cloudops(w)
    inner = float(report.get("seconds") or 0.0)
    return Measured(run.seconds, run.cpu_seconds, moto_cpu, run.max_rss_kib, inner_seconds=inner)


def verify_cloudops(w: World) -> None:
    qa, bucket = w.s3("qa"), w.bucket("qa")
    head = qa.head_object(Bucket=bucket, Key=w.package_key)
    label = head.get("Metadata", {}).get("sha256")
    if label != w.sha256 or int(head["ContentLength"]) != w.size:
        raise BenchError(
            f"qa's object carries sha256 {label!r} and {head['ContentLength']} bytes, "
            f"the source {w.sha256} and {w.size} bytes"
        )
    pointer = current_json(qa, bucket, pointer_key(w.package_key))
    if pointer.get("sha256") != w.sha256 or pointer.get("version") != VERSION:
        raise BenchError(f"qa's current.json names {pointer}, not {VERSION} with sha256 {w.sha256}")
    actual, got = sha256_object(qa, bucket, w.package_key)
    if actual != w.sha256 or got != w.size:
        raise BenchError(f"qa's object reads back as {got} bytes with sha256 {actual}, not {w.sha256}")


def aws_config(path: Path, *, single_get_above: int | None) -> Path:
    lines = ["[default]", f"region = {world.REGION}"]
    if single_get_above is not None:
        # Objects below multipart_threshold are downloaded with one GetObject (s3transfer).
        lines += ["s3 =", f"  multipart_threshold = {single_get_above}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def aws_env(w: World, account: str, config: Path) -> dict[str, str]:
    home = w.workdir / "aws-home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_PAGER": "",
        **assumed_keys(w.state, account),
    }


def run_peer(w: World, download_config: Path, upload_config: Path) -> Measured:
    qa, qa_bucket = w.s3("qa"), w.bucket("qa")
    purge(qa, qa_bucket, PEER_KEY)
    local = w.workdir / "aws-cli-download.zip"
    local.unlink(missing_ok=True)
    common = [AWS, "--endpoint-url", w.state.moto_url, "s3", "cp", "--only-show-errors", "--no-progress"]
    down_argv = [*common, f"s3://{w.bucket('build')}/{w.package_key}", str(local)]
    up_argv = [*common, str(local), f"s3://{qa_bucket}/{PEER_KEY}"]
    down_env = aws_env(w, "build", download_config)  # keys fetched before the clock starts
    up_env = aws_env(w, "qa", upload_config)
    moto_before = process_cpu(w.moto_pid)
    down = w.spawner.run(down_argv, w.workdir, down_env).check()
    up = w.spawner.run(up_argv, w.workdir, up_env).check()
    moto_cpu = process_cpu(w.moto_pid) - moto_before
    if sha256_file(local) != w.sha256:
        raise BenchError(f"aws s3 cp downloaded {local} with another sha256 than the source")
    actual, got = sha256_object(qa, qa_bucket, PEER_KEY)
    if actual != w.sha256 or got != w.size:
        raise BenchError(f"aws s3 cp's qa copy reads back as {got} bytes with sha256 {actual}")
    local.unlink()
    purge(qa, qa_bucket, PEER_KEY)
    return Measured(
        down.seconds + up.seconds,
        down.cpu_seconds + up.cpu_seconds,
        moto_cpu,
        max(down.max_rss_kib, up.max_rss_kib),
        f"{down.seconds:.2f}s + {up.seconds:.2f}s",
    )


# -- reporting ----------------------------------------------------------------------------


def row(name: str, runs: list[Measured]) -> list[str]:
    walls = [r.seconds for r in runs]
    return [
        name,
        f"{min(walls):.2f}s / {statistics.median(walls):.2f}s",
        f"{statistics.median(r.cpu_seconds for r in runs):.2f}s",
        f"{statistics.median(r.moto_cpu_seconds for r in runs):.2f}s",
        mib(max(r.max_rss_kib for r in runs)),
    ]


def ratio_line(label: str, peer: list[Measured], ours: list[Measured]) -> str:
    paired = [p.seconds / c.seconds for p, c in zip(peer, ours, strict=True)]
    ratio = statistics.median(r.seconds for r in peer) / statistics.median(r.seconds for r in ours)
    spread = f", per round {min(paired):.2f}-{max(paired):.2f}x" if len(paired) > 1 else ""
    return f"{label} / cloudops wall (median): {ratio:.2f}x{spread}"


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="package size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--workdir", type=Path, help="parent of the temp dir (default: the system's)")
    parser.add_argument(
        "--keep", action="store_true", help="leave the sandbox up (and its directory) at the end"
    )
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.rounds < 1:
        parser.error("--size-mib and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.access(AWS, os.X_OK):
        print(f"package_bench: {AWS} (AWS CLI) is not installed (make sysdeps installs it)", file=sys.stderr)
        return 2
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cloudops-package-bench-", dir=args.workdir))
    root = workdir / "sandbox"
    spawner = Spawner()
    state: world.SandboxState | None = None
    saved_env = dict(os.environ)
    try:
        floor = spawner.run(["true"], workdir, {"PATH": "/usr/bin:/bin"}).check().max_rss_kib
        aws_version = subprocess.run([AWS, "--version"], capture_output=True, text=True).stdout.strip()
        print(
            f"{aws_version}; cloudops {' '.join(cloudops_command())}; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        started = time.perf_counter()
        # --keep: the servers get their own session so they outlive this process cleanly.
        state = world.up(root, detach=args.keep)
        exports = world.env_exports(state)
        os.environ.update(exports)
        context = context_for(state.pipeline)
        for account in ("build", "qa"):
            init_account(context, account)
        env = {**saved_env, **exports}
        env.pop("CLOUDOPS_DEBUG", None)
        settings = transfer_settings()  # what cloudops will use (same environment)
        print(
            f"sandbox up, build and qa initialized in {time.perf_counter() - started:.1f}s; "
            "cloudops transfer: "
            f"multipart threshold {settings.multipart_threshold / MiB:g} MiB, part "
            f"{settings.part_size_for(args.size_mib * MiB) / MiB:g} MiB, {settings.workers} workers "
            f"({', '.join(f'{v}={os.environ[v]}' for v in TUNING_VARS if v in os.environ) or 'defaults'})",
            flush=True,
        )

        cloudops_start = spawner.run([*cloudops_command(), "--version"], workdir, env).check()
        aws_start = spawner.run([AWS, "--version"], workdir, {"PATH": "/usr/bin:/bin"}).check()
        print(
            f"process start-up (--version): cloudops {cloudops_start.seconds:.2f}s "
            f"(RSS {mib(cloudops_start.max_rss_kib)}), aws {aws_start.seconds:.2f}s "
            f"(RSS {mib(aws_start.max_rss_kib)}); the peer starts two aws processes per copy"
        )

        started = time.perf_counter()
        package = workdir / "ext-deployment-package.zip"
        build_package(package, VERSION, size=args.size_mib * MiB)
        size, sha256 = package.stat().st_size, sha256_file(package)
        built = time.perf_counter() - started
        print(f"package: {size / MiB:.1f} MiB, sha256 {sha256[:16]}…, built in {built:.1f}s")
        publish = spawner.run(
            [*cloudops_command(), "package", "publish", str(package), "--version", VERSION, "--json"],
            workdir,
            env,
        ).check()
        key = context.pipeline.deployment_package.key
        prefix, _, filename = key.rpartition("/")
        package_key = "/".join(p for p in (prefix, "versions", VERSION, filename) if p)
        w = World(state, context, workdir, env, spawner, package_key, size, sha256)
        head = w.s3("build").head_object(Bucket=w.bucket("build"), Key=package_key)
        if head.get("Metadata", {}).get("sha256") != sha256 or int(head["ContentLength"]) != size:
            raise BenchError(f"the published object does not carry the package's sha256/size: {head}")
        print(
            f"published into build in {publish.seconds:.2f}s (cloudops package publish: inspects the zip, "
            f"hashes the file, uploads, reads back), peak RSS {mib(publish.max_rss_kib)}",
            flush=True,
        )
        package.unlink()  # the disk space, before the peer writes its own copy

        ranged = aws_config(workdir / "aws-default.cfg", single_get_above=None)
        single = aws_config(workdir / "aws-single-get.cfg", single_get_above=size + MiB)
        tools = ("cloudops", "aws-ranged", "aws-one-get")
        results: dict[str, list[Measured]] = {t: [] for t in tools}
        for number in range(1, args.rounds + 1):
            order = tools if number % 2 else tuple(reversed(tools))  # alternate who goes first
            for tool in order:
                if tool == "cloudops":
                    measured = run_cloudops(w)
                elif tool == "aws-ranged":
                    measured = run_peer(w, ranged, ranged)
                else:
                    measured = run_peer(w, single, ranged)
                results[tool].append(measured)
            c, r, s = (results[t][-1] for t in tools)
            print(
                f"round {number}: cloudops {c.seconds:.2f}s ({c.inner_seconds:.2f}s in the command; "
                f"RSS {mib(c.max_rss_kib)}; verified) | "
                f"aws ranged GETs {r.seconds:.2f}s ({r.parts}) | aws one GET {s.seconds:.2f}s ({s.parts})",
                flush=True,
            )

        load = os.getloadavg()[0]
        print(f"\nload average at the end {load:.1f} on {os.cpu_count()} CPUs", end="")
        busy = load > (os.cpu_count() or 1)
        print(": the machine was busy, wall times are noisy" if busy else "")
        print()
        rows = [["", "wall min / median", "tool cpu median", "moto cpu median", "peak RSS"]]
        rows.append(row("cloudops promote package", results["cloudops"]))
        rows.append(row("aws s3 cp down+up, ranged GETs (CLI defaults)", results["aws-ranged"]))
        rows.append(row("aws s3 cp down+up, one GET (threshold > size)", results["aws-one-get"]))
        print_table(rows)
        print()
        print(f"{size / MiB:.0f} MiB, {args.rounds} round(s); ratios above 1 mean cloudops is faster:")
        print("  " + ratio_line("aws s3 cp, ranged GETs", results["aws-ranged"], results["cloudops"]))
        print("  " + ratio_line("aws s3 cp, one GET   ", results["aws-one-get"], results["cloudops"]))
        print(
            "  cloudops' time includes its verification: a second full GET of the new object, hashed,\n"
            "  besides hashing the stream and every part; aws s3 cp checks no end-to-end SHA-256.\n"
            "  moto re-reads the whole object for every ranged GET, so the ranged-GET download is\n"
            "  pathological here: these ratios are about moto on this machine, not a statement about real S3."
        )
        inner = statistics.median(r.inner_seconds for r in results["cloudops"])
        print(
            f"  cloudops' own figure (JSON `seconds`: the promotion without interpreter start-up,\n"
            f"  imports and argument parsing): median {inner:.2f}s"
        )
        peak = max(r.max_rss_kib for r in results["cloudops"])
        met = peak * 1024 < RSS_TARGET_BYTES
        print(
            f"peak RSS cloudops promote: {mib(peak)} ({peak * 1024 / 1e6:.0f} MB; target < 200 MB: "
            f"{'PASS' if met else 'FAIL'}); measurement floor {mib(floor)}"
        )
        return 0 if met else 4
    except BenchError as error:
        print(f"package_bench: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        spawner.close()
        os.environ.clear()
        os.environ.update(saved_env)
        if args.keep and state is not None:
            print(
                f"sandbox left up in {root}: stop it with `CLOUDOPS_SANDBOX={root} cloudops sandbox down`, "
                f"then remove {workdir}",
                file=sys.stderr,
            )
        else:
            if state is not None or (root / "state.json").exists():
                world.down(root)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
