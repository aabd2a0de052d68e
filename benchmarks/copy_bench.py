#!/usr/bin/env python3
"""cloudops copy vs skopeo: bulk copy and no-op re-copy of a release, one image per
process, peak memory.

Starts a source registry (Debian's docker-registry), builds a release of 8 images x 6
layers (2 base layers shared by all, 4 unique each; random, incompressible bytes) with the
test suite's independent pusher, then per round:

* bulk: a FRESH destination registry per tool; `cloudops copy --batch FILE -q --json` (one
  process, every image) against `skopeo copy --all --preserve-digests` once per image,
  one after the other (what a Jenkins job does);
* no-op: both again, against the destination they just filled.

Then the single-image section, one image per process as the Jenkins job runs it: an image
of 4 random layers (64 MiB in all, --single-mib) copied by `cloudops copy SRC DST` against
one `skopeo copy`, each into a fresh destination registry, then the same command again
(no-op). Targets: skopeo/cloudops >= 1.0 for the fresh copy, cloudops/skopeo <= 2.0 for
the no-op. --single-only runs only it, --no-single skips it.

Every copy is verified by reading the destination back with plain httpx (tag digest equals
the source digest, every blob present): a benchmark that copies wrongly fails, exit 1.

skopeo keeps a BoltDB blob-info cache (as root /var/lib/containers/cache, which no flag
moves). It is pointed at a new empty directory each round, shared by the images of that
round, so later rounds are not turned into mounts by earlier ones. See README.md here.

    python benchmarks/copy_bench.py                       # full run, 3 rounds
    python benchmarks/copy_bench.py --scale 0.1 --rounds 1  # smoke run, ~30 s
    python benchmarks/copy_bench.py --big-layer           # + a 1 GiB layer, cloudops alone
    python benchmarks/copy_bench.py --single-only --single-mib 8 --rounds 1  # smoke, single
    python benchmarks/copy_bench.py --importtime          # cloudops' import times, no copy
    python benchmarks/copy_bench.py --referrers --no-single  # + what carrying referrers costs

--referrers: every release image gets a signature and an SBOM (OCI 1.1 artifacts with a
subject, in the referrers tag schema: distribution 2.8 has no referrers API), and the
release is copied by cloudops with them and with --no-referrers, each into a fresh
destination, twice per round in ABBA order; target: carrying them adds < 10 %
(with/without <= 1.10, the median of the rounds' ratios).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from measure import BenchError, Run, Spawner, mib, print_table  # benchmarks/measure.py: run as scripts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.images import (  # noqa: E402
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    Blob,
    Pusher,
    TestImage,
    make_image,
    random_layer,
)

from cloudops.sandbox.processes import ServerProcess, start_registry  # noqa: E402

MiB = 1024 * 1024
TAG = "v1.0"
BASE_LAYER_MIB = (24.0, 12.0)  # shared by every image
UNIQUE_LAYER_MIB = (14.0, 8.0, 5.0, 2.0)  # per image, each jittered by +-20 %
BULK_TARGET = 1.3  # skopeo / cloudops, at least
NOOP_TARGET = 1.0
RSS_TARGET_MIB = 150.0
SINGLE_REPOSITORY = "single/app"
SINGLE_LAYERS = 4
SINGLE_FRESH_TARGET = 1.0  # skopeo / cloudops, at least: cloudops at least as fast
SINGLE_NOOP_TARGET = 2.0  # cloudops / skopeo, at most
IMPORTTIME_TOP = 15
SKOPEO_CACHE_FILE = Path("containers/cache/blob-info-cache-v1.boltdb")


# -- the release ------------------------------------------------------------------------


@dataclass
class ReleaseImage:
    repository: str
    image: TestImage


@dataclass
class Release:
    images: list[ReleaseImage]

    def unique_blobs(self) -> dict[str, int]:
        blobs: dict[str, int] = {}
        for item in self.images:
            for blob in item.image.all_blobs():
                blobs[blob.digest] = len(blob.data)
        return blobs

    @property
    def unique_bytes(self) -> int:
        return sum(self.unique_blobs().values())


def build_release(images: int, scale: float, seed: int) -> Release:
    rng = random.Random(seed)

    def size(mib: float, jitter: bool) -> int:
        factor = rng.uniform(0.8, 1.2) if jitter else 1.0
        return max(1024, int(mib * MiB * scale * factor))

    base = [random_layer(size(m, False)) for m in BASE_LAYER_MIB]
    release = []
    for number in range(images):
        unique = [random_layer(size(m, True)) for m in UNIQUE_LAYER_MIB]
        image = make_image([*base, *unique], label=f"svc-{number}")
        release.append(ReleaseImage(f"release/svc-{number}", image))
    return Release(release)


# -- measuring one process --------------------------------------------------------------


def run_measured(argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Run:
    if SPAWN is None:
        raise RuntimeError("the spawner is not started")
    return SPAWN.run(argv, workdir, env)


SPAWN: Spawner | None = None


def cloudops_command() -> list[str]:
    script = Path(sys.executable).parent / "cloudops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cloudops"]


def compile_cloudops() -> None:
    """Byte-compile cloudops as pip does when it installs a package. The editable install
    `make` sets up skips that, and where PYTHONDONTWRITEBYTECODE is set (CI images often
    set it) every run would compile its ~85 modules again: start-up no installed cloudops
    pays. py_compile writes the files whatever that variable says."""
    import cloudops

    compileall.compile_dir(str(Path(cloudops.__file__).parent), quiet=1)


def copy_command(src: ServerProcess, dst: ServerProcess, concurrency: int, *what: str) -> list[str]:
    """`cloudops copy WHAT -q --json` between the two loopback registries."""
    return [
        *cloudops_command(),
        "copy",
        *what,
        "-q",
        "--json",
        "--insecure-registry",
        host_of(src),
        "--insecure-registry",
        host_of(dst),
        "--concurrency",
        str(concurrency),
    ]


def host_of(server: ServerProcess) -> str:
    return server.url.split("://", 1)[1]


def cloudops_env() -> dict[str, str]:
    """The environment without $CLOUDOPS_* settings: cloudops runs with its defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLOUDOPS_")}


# -- the two tools ----------------------------------------------------------------------


@dataclass
class ToolRun:
    seconds: float
    cpu_seconds: float
    max_rss_kib: int
    processes: int
    report: dict[str, object] = field(default_factory=dict)


def run_cloudops(
    release: Release,
    src: ServerProcess,
    dst: ServerProcess,
    workdir: Path,
    concurrency: int,
    *extra: str,
) -> ToolRun:
    batch = workdir / "batch.txt"
    batch.write_text(
        "".join(
            f"{host_of(src)}/{i.repository}:{TAG} {host_of(dst)}/{i.repository}:{TAG}\n"
            for i in release.images
        )
    )
    argv = copy_command(src, dst, concurrency, "--batch", str(batch), *extra)
    run = run_measured(argv, workdir, cloudops_env()).check()
    report = run.json_report()
    return ToolRun(run.seconds, run.cpu_seconds, run.max_rss_kib, 1, report)


def skopeo_env(cache_home: Path) -> dict[str, str]:
    """skopeo 1.9 (containers/image) puts its blob-info cache in
    /var/lib/containers/cache when the effective uid is 0, else under $XDG_DATA_HOME.
    No flag moves it; `_CONTAINERS_ROOTLESS_UID` (read by containers/storage's
    GetRootlessUID) makes a root process take the $XDG_DATA_HOME branch."""
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(cache_home)
    if os.geteuid() == 0:
        env["_CONTAINERS_ROOTLESS_UID"] = "65534"
    return env


def run_skopeo(
    release: Release, src: ServerProcess, dst: ServerProcess, workdir: Path, cache_home: Path
) -> ToolRun:
    env = skopeo_env(cache_home)
    cpu, peak = 0.0, 0
    started = time.perf_counter()
    for item in release.images:
        argv = [
            "skopeo",
            "copy",
            "-q",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{host_of(src)}/{item.repository}:{TAG}",
            f"docker://{host_of(dst)}/{item.repository}:{TAG}",
        ]
        run = run_measured(argv, workdir, env).check()
        peak = max(peak, run.max_rss_kib)
        cpu += run.cpu_seconds
    seconds = time.perf_counter() - started
    if not (cache_home / SKOPEO_CACHE_FILE).exists():
        raise BenchError(
            f"skopeo did not use the fresh blob-info cache under {cache_home}: "
            "the comparison would not be fair (did containers/image change how it finds it?)"
        )
    return ToolRun(seconds, cpu, peak, len(release.images))


# -- verification -----------------------------------------------------------------------


def verify_destination(release: Release, dst: ServerProcess, who: str) -> None:
    reader = Pusher(dst.url)
    try:
        for item in release.images:
            digest = reader.manifest_digest(item.repository, TAG)
            if digest != item.image.digest:
                raise BenchError(
                    f"{who}: {item.repository}:{TAG} at the destination is {digest}, "
                    f"source is {item.image.digest}"
                )
            for blob in item.image.all_blobs():
                if not reader.blob_exists(item.repository, blob.digest):
                    raise BenchError(f"{who}: blob {blob.digest[:19]} missing in {item.repository}")
    finally:
        reader.client.close()


def verify_cloudops_report(report: dict[str, object], release: Release, *, noop: bool) -> None:
    images = report.get("images")
    if report.get("ok") is not True or not isinstance(images, list) or len(images) != len(release.images):
        raise BenchError(f"cloudops report is not a success for every image: {json.dumps(report)[:2000]}")
    wanted = "up-to-date" if noop else "copied"
    statuses = {str(i.get("status")) for i in images if isinstance(i, dict)}
    if statuses != {wanted}:
        raise BenchError(f"cloudops image statuses {sorted(statuses)}, expected only {wanted!r}")
    if noop and report.get("bytes_uploaded") != 0:
        raise BenchError(f"cloudops no-op re-copy uploaded {report.get('bytes_uploaded')} bytes")


# -- the big layer ----------------------------------------------------------------------


def push_big_image(src: ServerProcess, workdir: Path, size: int) -> tuple[str, str]:
    """A one-layer image whose layer is streamed from disk (never held in memory here)."""
    path = workdir / "big-layer.bin"
    hasher = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            hasher.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    layer_digest = "sha256:" + hasher.hexdigest()
    repository = "release/big"
    config = Blob(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            },
            sort_keys=True,
        ).encode(),
        DOCKER_CONFIG,
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.descriptor(),
            "layers": [{"mediaType": DOCKER_LAYER, "digest": layer_digest, "size": size}],
        },
        indent=3,
    ).encode()

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as data:
            while chunk := data.read(MiB):
                yield chunk

    pusher = Pusher(src.url)
    try:
        pusher.push_blob(repository, config)
        started = pusher.client.post(f"/v2/{repository}/blobs/uploads/")
        if started.status_code != 202:
            raise BenchError(f"source registry refused an upload: {started.status_code}")
        url = httpx.URL(started.headers["location"]).copy_merge_params({"digest": layer_digest})
        done = pusher.client.put(
            url,
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=600,
        )
        if done.status_code != 201:
            raise BenchError(f"source registry refused the big layer: {done.status_code} {done.text[:500]}")
        pusher.push_manifest(repository, TAG, manifest, DOCKER_MANIFEST)
    finally:
        pusher.client.close()
    path.unlink()
    return repository, "sha256:" + hashlib.sha256(manifest).hexdigest()


def bench_big_layer(src: ServerProcess, workdir: Path, size: int, concurrency: int) -> tuple[float, int]:
    started = time.perf_counter()
    repository, digest = push_big_image(src, workdir, size)
    print(f"big layer: {size / MiB:.0f} MiB pushed to the source in {time.perf_counter() - started:.1f}s")
    dst = start_registry(workdir / "big-dst")
    try:
        argv = copy_command(
            src, dst, concurrency, f"{host_of(src)}/{repository}:{TAG}", f"{host_of(dst)}/{repository}:{TAG}"
        )
        run = run_measured(argv, workdir).check()
        reader = Pusher(dst.url)
        try:
            got = reader.manifest_digest(repository, TAG)
        finally:
            reader.client.close()
        if got != digest:
            raise BenchError(f"big layer image: destination has {got}, source {digest}")
    finally:
        dst.stop()
        shutil.rmtree(workdir / "big-dst", ignore_errors=True)
    return run.seconds, run.max_rss_kib


# -- the rounds -------------------------------------------------------------------------


@dataclass
class RoundFigures:
    bulk: dict[str, ToolRun] = field(default_factory=dict)
    noop: dict[str, ToolRun] = field(default_factory=dict)


def one_round(
    number: int, release: Release, src: ServerProcess, workdir: Path, concurrency: int
) -> RoundFigures:
    here = workdir / f"round-{number}"
    here.mkdir()
    figures = RoundFigures()
    servers = {
        "cloudops": start_registry(here / "dst-cloudops"),
        "skopeo": start_registry(here / "dst-skopeo"),
    }
    cache_home = here / "skopeo-data"  # fresh blob-info cache, shared by this round's images
    # Alternate who goes first, so a drifting machine does not always favour one tool.
    order = ["cloudops", "skopeo"] if number % 2 else ["skopeo", "cloudops"]

    def run(tool: str) -> ToolRun:
        if tool == "cloudops":
            return run_cloudops(release, src, servers[tool], here, concurrency)
        return run_skopeo(release, src, servers[tool], here, cache_home)

    try:
        for tool in order:
            figures.bulk[tool] = run(tool)
            verify_destination(release, servers[tool], f"{tool} bulk copy, round {number}")
        verify_cloudops_report(figures.bulk["cloudops"].report, release, noop=False)
        for tool in order:
            figures.noop[tool] = run(tool)
            verify_destination(release, servers[tool], f"{tool} no-op re-copy, round {number}")
        verify_cloudops_report(figures.noop["cloudops"].report, release, noop=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(here, ignore_errors=True)
    return figures


# -- referrers ---------------------------------------------------------------------------

REFERRERS_TARGET = 1.10


def sign_release(release: Release, src: ServerProcess) -> int:
    """A signature and an SBOM for every image, as oras/cosign push them to a registry
    without the referrers API; the number of referrers pushed."""
    from tests.support.referrers import SBOM_TYPE, SIG_TYPE, make_referrer, push_referrer

    pusher = Pusher(src.url)
    try:
        for item in release.images:
            for kind, body in (
                (SIG_TYPE, b'{"critical":{}}'),
                (SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}' * 200),
            ):
                push_referrer(
                    pusher, item.repository, make_referrer(item.image, kind, body), item.image.digest
                )
    finally:
        pusher.client.close()
    return 2 * len(release.images)


def bench_referrers(
    release: Release, src: ServerProcess, workdir: Path, rounds: int, concurrency: int
) -> tuple[list[str], bool]:
    """cloudops with referrers against cloudops --no-referrers, each run into a fresh
    destination. A round runs both twice, in ABBA order (with, without, without, with;
    the next round starts with the other), and its ratio is the sum of the two runs with
    referrers over the sum of the two without: on a 2-core machine one run's wall time
    varies by +-10 %, more than the effect measured."""
    pushed = sign_release(release, src)
    ratios: list[float] = []
    lines: list[str] = []
    for number in range(1, rounds + 1):
        here = workdir / f"referrers-{number}"
        here.mkdir()
        first, second = ("with", "without") if number % 2 else ("without", "with")
        seconds: dict[str, list[float]] = {"with": [], "without": []}
        try:
            for run_number, mode in enumerate((first, second, second, first)):
                server = start_registry(here / f"{mode}-{run_number}")
                try:
                    extra = () if mode == "with" else ("--no-referrers",)
                    run = run_cloudops(release, src, server, here, concurrency, *extra)
                    verify_destination(release, server, f"cloudops {mode} referrers, round {number}")
                finally:
                    server.stop()
                if mode == "with":
                    images = run.report.get("images")
                    carried = sum(
                        len(image.get("referrers") or ())
                        for image in (images if isinstance(images, list) else ())
                        if isinstance(image, dict)
                    )
                    if carried != pushed:
                        raise BenchError(
                            f"referrers round {number}: {carried} referrers carried, {pushed} pushed"
                        )
                seconds[mode].append(run.seconds)
        finally:
            shutil.rmtree(here, ignore_errors=True)
        ratio = sum(seconds["with"]) / sum(seconds["without"])
        ratios.append(ratio)
        lines.append(
            f"referrers round {number}: with {' + '.join(f'{t:.2f}s' for t in seconds['with'])}, "
            f"--no-referrers {' + '.join(f'{t:.2f}s' for t in seconds['without'])}: x{ratio:.3f}"
        )
    median = statistics.median(ratios)
    met = median <= REFERRERS_TARGET
    lines.append(
        f"referrers: {pushed} referrers carried with the release; with/without median x{median:.3f} "
        f"(target <= {REFERRERS_TARGET:.2f}: {'met' if met else 'MISSED'})"
    )
    return lines, met


# -- one image per process --------------------------------------------------------------


def build_single(total_mib: int) -> Release:
    """One image of SINGLE_LAYERS equal random layers, `total_mib` MiB in all, as a
    one-image Release: the bulk section's skopeo runner and verification apply as they are."""
    size = max(1024, total_mib * MiB // SINGLE_LAYERS)
    image = make_image([random_layer(size) for _ in range(SINGLE_LAYERS)], label="single")
    return Release([ReleaseImage(SINGLE_REPOSITORY, image)])


def single_refs(src: ServerProcess, dst: ServerProcess, repository: str) -> tuple[str, str]:
    return f"{host_of(src)}/{repository}:{TAG}", f"{host_of(dst)}/{repository}:{TAG}"


def run_cloudops_single(
    single: Release, src: ServerProcess, dst: ServerProcess, workdir: Path, concurrency: int
) -> ToolRun:
    """`cloudops copy SRC DST`: one process, one image, the bulk section's flags."""
    argv = copy_command(src, dst, concurrency, *single_refs(src, dst, single.images[0].repository))
    run = run_measured(argv, workdir, cloudops_env()).check()
    return ToolRun(run.seconds, run.cpu_seconds, run.max_rss_kib, 1, run.json_report())


def verify_no_shortcuts(report: dict[str, object], single: Release, who: str) -> None:
    """A fresh copy must upload every blob: no mount, no skip made cloudops' job easier.
    (skopeo's side: a fresh registry and an empty blob-info cache, so it has nothing to
    mount from or to skip.)"""
    images = report.get("images")
    first = images[0] if isinstance(images, list) and images else None
    blobs = first.get("blobs") if isinstance(first, dict) else None
    wanted = {"uploaded": len(single.images[0].image.all_blobs()), "mounted": 0, "skipped": 0}
    if blobs != wanted:
        raise BenchError(f"{who}: cloudops reports blobs {blobs}, a fresh copy needs {wanted}")


@dataclass
class SingleFigures:
    fresh: dict[str, ToolRun] = field(default_factory=dict)
    noop: dict[str, ToolRun] = field(default_factory=dict)


def single_round(
    number: int, single: Release, src: ServerProcess, workdir: Path, concurrency: int
) -> SingleFigures:
    here = workdir / f"single-{number}"
    here.mkdir()
    figures = SingleFigures()
    # A fresh destination registry per tool and round: nothing there to mount or skip.
    servers = {
        "cloudops": start_registry(here / "dst-cloudops"),
        "skopeo": start_registry(here / "dst-skopeo"),
    }
    cache_home = here / "skopeo-data"  # a fresh, empty blob-info cache for this round
    order = ["cloudops", "skopeo"] if number % 2 else ["skopeo", "cloudops"]

    def run(tool: str) -> ToolRun:
        if tool == "cloudops":
            return run_cloudops_single(single, src, servers[tool], here, concurrency)
        return run_skopeo(single, src, servers[tool], here, cache_home)

    try:
        for tool in order:
            figures.fresh[tool] = run(tool)
            verify_destination(single, servers[tool], f"{tool} single fresh copy, round {number}")
        verify_cloudops_report(figures.fresh["cloudops"].report, single, noop=False)
        verify_no_shortcuts(figures.fresh["cloudops"].report, single, f"single fresh copy, round {number}")
        for tool in order:
            figures.noop[tool] = run(tool)
            verify_destination(single, servers[tool], f"{tool} single no-op re-copy, round {number}")
        verify_cloudops_report(figures.noop["cloudops"].report, single, noop=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(here, ignore_errors=True)
    return figures


def single_ratio(runs: dict[str, ToolRun], over: str) -> float:
    """`over` / the other tool, wall seconds."""
    under = "skopeo" if over == "cloudops" else "cloudops"
    return runs[over].seconds / runs[under].seconds


def single_summary(
    name: str, runs: list[dict[str, ToolRun]], over: str, target: float, *, at_most: bool
) -> tuple[list[str], str, bool]:
    """Like summary(), for a ratio `over` / the other tool whose target is a floor
    (skopeo/cloudops >= target) or a ceiling (cloudops/skopeo <= target)."""
    ours = [r["cloudops"].seconds for r in runs]
    theirs = [r["skopeo"].seconds for r in runs]
    paired = [single_ratio(r, over) for r in runs]
    under = "skopeo" if over == "cloudops" else "cloudops"
    ratio = statistics.median(ours if over == "cloudops" else theirs) / statistics.median(
        theirs if over == "cloudops" else ours
    )
    met = ratio <= target if at_most else ratio >= target
    bound = f"{'<=' if at_most else '>='} {target:.1f}x"
    row = [
        name,
        f"{min(ours):.2f}s / {statistics.median(ours):.2f}s",
        f"{statistics.median(r['cloudops'].cpu_seconds for r in runs):.2f}s",
        f"{min(theirs):.2f}s / {statistics.median(theirs):.2f}s",
        f"{statistics.median(r['skopeo'].cpu_seconds for r in runs):.2f}s",
        f"{over}/{under}",
        f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})",
        bound,
    ]
    line = (
        f"single {name}: cloudops {statistics.median(ours):.2f}s vs skopeo {statistics.median(theirs):.2f}s "
        f"-> {over}/{under} {ratio:.2f}x (target {bound}: {'met' if met else 'MISSED'})"
    )
    return row, line, met


def bench_single(
    src: ServerProcess, workdir: Path, total_mib: int, rounds: int, concurrency: int
) -> tuple[list[list[str]], list[str], bool]:
    started = time.perf_counter()
    single = build_single(total_mib)
    pusher = Pusher(src.url)
    try:
        pusher.push(SINGLE_REPOSITORY, TAG, single.images[0].image)
    finally:
        pusher.client.close()
    print(
        f"single image: {SINGLE_REPOSITORY}:{TAG}, {SINGLE_LAYERS} layers, "
        f"{single.unique_bytes / MiB:.0f} MiB; built and pushed in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    figures: list[SingleFigures] = []
    for number in range(1, rounds + 1):
        got = single_round(number, single, src, workdir, concurrency)
        figures.append(got)
        f, n = got.fresh, got.noop
        print(
            f"single round {number}: fresh cloudops {f['cloudops'].seconds:.2f}s "
            f"(RSS {mib(f['cloudops'].max_rss_kib)}) skopeo {f['skopeo'].seconds:.2f}s "
            f"-> skopeo/cloudops {single_ratio(f, 'skopeo'):.2f}x | "
            f"no-op cloudops {n['cloudops'].seconds:.2f}s skopeo {n['skopeo'].seconds:.2f}s "
            f"-> cloudops/skopeo {single_ratio(n, 'cloudops'):.2f}x",
            flush=True,
        )
    rows = [
        [
            f"single image, {total_mib} MiB",
            "cloudops wall min / median",
            "cpu median",
            "skopeo wall min / median",
            "cpu median",
            "ratio",
            "per round (min-max)",
            "target",
        ]
    ]
    fresh_row, fresh_line, fresh_met = single_summary(
        "fresh copy", [f.fresh for f in figures], "skopeo", SINGLE_FRESH_TARGET, at_most=False
    )
    noop_row, noop_line, noop_met = single_summary(
        "no-op re-copy", [f.noop for f in figures], "cloudops", SINGLE_NOOP_TARGET, at_most=True
    )
    rows += [fresh_row, noop_row]
    peak = max(max(f.fresh["cloudops"].max_rss_kib, f.noop["cloudops"].max_rss_kib) for f in figures)
    skopeo_peak = max(max(f.fresh["skopeo"].max_rss_kib, f.noop["skopeo"].max_rss_kib) for f in figures)
    lines = [
        fresh_line,
        noop_line,
        f"single peak RSS: cloudops {mib(peak)}, skopeo {mib(skopeo_peak)}",
    ]
    return rows, lines, fresh_met and noop_met


# -- import times -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportEntry:
    self_us: int
    cumulative_us: int
    module: str


def parse_importtime(stderr: str) -> list[ImportEntry]:
    """`import time: SELF | CUMULATIVE | MODULE` lines of `python -X importtime`."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line, or another program's output
        entries.append(ImportEntry(int(fields[0]), int(fields[1]), fields[2].strip()))
    return entries


def import_times(mode: str, workdir: Path, total_mib: int, concurrency: int) -> None:
    """`python -X importtime -m cloudops copy --help` (mode "help") or a real single copy
    between two fresh loopback registries (mode "copy"), with this interpreter (the venv's
    when run as `.venv/bin/python benchmarks/copy_bench.py`). A first `copy --help`, not
    reported, warms the page cache."""
    python = [sys.executable, "-X", "importtime", "-m", "cloudops"]
    env = cloudops_env()
    subprocess.run([*python, "copy", "--help"], capture_output=True, env=env, check=False)
    servers: list[ServerProcess] = []
    copied: tuple[Release, ServerProcess] | None = None  # what a real copy must have written
    try:
        if mode == "copy":
            src = start_registry(workdir / "importtime-src")
            servers.append(src)
            dst = start_registry(workdir / "importtime-dst")
            servers.append(dst)
            single = build_single(total_mib)
            pusher = Pusher(src.url)
            try:
                pusher.push(SINGLE_REPOSITORY, TAG, single.images[0].image)
            finally:
                pusher.client.close()
            tail = copy_command(src, dst, concurrency, *single_refs(src, dst, SINGLE_REPOSITORY))
            tail = tail[tail.index("copy") :]
            copied = single, dst
        else:
            tail = ["copy", "--help"]
        started = time.perf_counter()
        done = subprocess.run([*python, *tail], capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            said = "".join(x for x in done.stderr.splitlines(True) if not x.startswith("import time:"))
            raise BenchError(f"cloudops {' '.join(tail)} exited {done.returncode}\n{said[-4000:]}")
        if copied is not None:
            verify_destination(*copied, "cloudops copy under -X importtime")
    finally:
        for server in servers:
            server.stop()
    entries = parse_importtime(done.stderr)
    if not entries:
        raise BenchError(f"no -X importtime output from {sys.executable}")
    print(
        f"import times: python -X importtime -m cloudops {' '.join(tail)}\n"
        f"interpreter {sys.executable}; process wall {seconds:.2f}s\n"
    )
    rows = [["cumulative", "self", "module"]]
    for entry in sorted(entries, key=lambda e: e.cumulative_us, reverse=True)[:IMPORTTIME_TOP]:
        rows.append([f"{entry.cumulative_us / 1000:.1f} ms", f"{entry.self_us / 1000:.1f} ms", entry.module])
    print_table(rows)
    total = sum(e.self_us for e in entries)
    cloudops_self = sum(e.self_us for e in entries if e.module.split(".")[0] == "cloudops")
    print(
        f"\ntotal: {total / 1000:.1f} ms importing {len(entries)} modules (sum of self times; "
        f"cloudops' own modules {cloudops_self / 1000:.1f} ms)"
    )


# -- output -----------------------------------------------------------------------------


def uploaded_bytes(report: dict[str, object]) -> int:
    value = report.get("bytes_uploaded")
    return value if isinstance(value, int) else 0


def summary(name: str, rounds: list[dict[str, ToolRun]], target: float) -> tuple[list[str], str, bool]:
    ours = [r["cloudops"].seconds for r in rounds]
    theirs = [r["skopeo"].seconds for r in rounds]
    paired = [s / c for c, s in zip(ours, theirs, strict=True)]
    ratio = statistics.median(theirs) / statistics.median(ours)
    ours_cpu = statistics.median(r["cloudops"].cpu_seconds for r in rounds)
    theirs_cpu = statistics.median(r["skopeo"].cpu_seconds for r in rounds)
    row = [
        name,
        f"{min(ours):.2f}s / {statistics.median(ours):.2f}s",
        f"{ours_cpu:.2f}s",
        f"{min(theirs):.2f}s / {statistics.median(theirs):.2f}s",
        f"{theirs_cpu:.2f}s",
        f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})",
        f">= {target:.1f}x",
    ]
    met = ratio >= target
    line = (
        f"{name}: cloudops {statistics.median(ours):.2f}s vs skopeo {statistics.median(theirs):.2f}s "
        f"-> {ratio:.2f}x (target >= {target:.1f}x: {'met' if met else 'MISSED'})"
    )
    return row, line, met


def tool_versions() -> str:
    try:
        skopeo = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchError(f"skopeo is not usable: {exc}") from None
    return skopeo.stdout.strip()


# -- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of bulk + no-op (default 3)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="layer size factor; 1.0 is ~280 MB unique, 0.1 a smoke run"
    )
    parser.add_argument("--images", type=int, default=8, help="images in the release (default 8)")
    parser.add_argument("--concurrency", type=int, default=8, help="cloudops --concurrency (default 8)")
    parser.add_argument(
        "--big-layer", action="store_true", help="also copy a one-layer image, cloudops alone"
    )
    parser.add_argument("--big-layer-mib", type=int, default=1024, help="its size (default 1024 MiB)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the layer sizes")
    parser.add_argument(
        "--referrers", action="store_true", help="also measure carrying a signature and an SBOM per image"
    )
    parser.add_argument("--workdir", type=Path, help="where registries store data (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--check", action="store_true", help="exit 4 when a target is missed")
    sections = parser.add_mutually_exclusive_group()
    sections.add_argument(
        "--single-only", action="store_true", help="run only the single-image section (no release)"
    )
    sections.add_argument("--no-single", action="store_true", help="skip the single-image section")
    parser.add_argument(
        "--single-mib", type=int, default=64, help="size of the single image, 4 equal layers (default 64)"
    )
    parser.add_argument(
        "--importtime",
        nargs="?",
        const="help",
        choices=["help", "copy"],
        help="only print cloudops' import times (python -X importtime) for `copy --help` (default) "
        "or a real single copy (`--importtime copy`), then exit",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.images < 1 or args.scale <= 0 or args.big_layer_mib < 1 or args.single_mib < 1:
        parser.error("--rounds, --images, --scale, --big-layer-mib and --single-mib must be positive")
    if args.single_only and args.big_layer:
        parser.error("--big-layer belongs to the bulk section, which --single-only skips")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.importtime is None and shutil.which("skopeo") is None:
        print("copy_bench: skopeo is not installed (make sysdeps installs it)", file=sys.stderr)
        return 2
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cloudops-bench-", dir=args.workdir))
    src: ServerProcess | None = None
    global SPAWN
    SPAWN = Spawner()  # first, while this process is small
    try:
        floor = run_measured(["true"], workdir).check().max_rss_kib
        compile_cloudops()
        if args.importtime is not None:
            import_times(args.importtime, workdir, args.single_mib, args.concurrency)
            return 0
        print(
            f"{tool_versions()}; cloudops {' '.join(cloudops_command())}; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        rows: list[list[str]] = []
        lines: list[str] = []
        bulk_met = noop_met = rss_met = single_met = referrers_met = True
        referrer_lines: list[str] = []
        if not args.single_only:
            started = time.perf_counter()
            release = build_release(args.images, args.scale, args.seed)
            src = start_registry(workdir / "src")
            pusher = Pusher(src.url)
            try:
                for item in release.images:
                    pusher.push(item.repository, TAG, item.image)
            finally:
                pusher.client.close()
            blobs = release.unique_blobs()
            print(
                f"release: {len(release.images)} images x {len(UNIQUE_LAYER_MIB) + len(BASE_LAYER_MIB)} "
                f"layers ({len(BASE_LAYER_MIB)} shared), {len(blobs)} unique blobs, "
                f"{release.unique_bytes / 1e6:.0f} MB unique; "
                f"built and pushed in {time.perf_counter() - started:.1f}s"
            )

            rounds: list[RoundFigures] = []
            for number in range(1, args.rounds + 1):
                figures = one_round(number, release, src, workdir, args.concurrency)
                rounds.append(figures)
                b, n = figures.bulk, figures.noop
                print(
                    f"round {number}: bulk cloudops {b['cloudops'].seconds:.2f}s "
                    f"(RSS {mib(b['cloudops'].max_rss_kib)}, "
                    f"{uploaded_bytes(b['cloudops'].report) / 1e6:.0f} MB uploaded)"
                    f" skopeo {b['skopeo'].seconds:.2f}s | no-op cloudops {n['cloudops'].seconds:.2f}s "
                    f"(RSS {mib(n['cloudops'].max_rss_kib)}) skopeo {n['skopeo'].seconds:.2f}s",
                    flush=True,
                )
            if args.referrers:
                referrer_lines, referrers_met = bench_referrers(
                    release, src, workdir, args.rounds, args.concurrency
                )
            del release  # the layers, before measuring the big one

            rows = [
                [
                    "",
                    "cloudops wall min / median",
                    "cpu median",
                    "skopeo wall min / median",
                    "cpu median",
                    "skopeo/cloudops wall, per round",
                    "target",
                ]
            ]
            bulk_row, bulk_line, bulk_met = summary("bulk copy", [r.bulk for r in rounds], BULK_TARGET)
            noop_row, noop_line, noop_met = summary("no-op re-copy", [r.noop for r in rounds], NOOP_TARGET)
            rows += [bulk_row, noop_row]
            peak = max(max(r.bulk["cloudops"].max_rss_kib, r.noop["cloudops"].max_rss_kib) for r in rounds)
            skopeo_peak = max(max(r.bulk["skopeo"].max_rss_kib, r.noop["skopeo"].max_rss_kib) for r in rounds)
            rss_met = peak / 1024 < RSS_TARGET_MIB
            lines = [
                bulk_line,
                noop_line,
                f"peak RSS: cloudops {mib(peak)} (one process, whole batch; "
                f"target < {RSS_TARGET_MIB:.0f} MiB: {'met' if rss_met else 'MISSED'}), "
                f"skopeo {mib(skopeo_peak)} (largest single image run); measurement floor {mib(floor)}",
            ]
            if args.big_layer:
                size = args.big_layer_mib * MiB
                seconds, rss = bench_big_layer(src, workdir, size, args.concurrency)
                big_met = rss / 1024 < RSS_TARGET_MIB
                rss_met = rss_met and big_met
                lines.append(
                    f"big layer: cloudops {size / MiB:.0f} MiB in {seconds:.2f}s "
                    f"({size / MiB / seconds:.0f} MiB/s), peak RSS {mib(rss)} "
                    f"(target < {RSS_TARGET_MIB:.0f} MiB: {'met' if big_met else 'MISSED'})"
                )
        lines.extend(referrer_lines)
        single_rows: list[list[str]] = []
        single_lines: list[str] = []
        if not args.no_single:
            if src is None:
                src = start_registry(workdir / "src")
            single_rows, single_lines, single_met = bench_single(
                src, workdir, args.single_mib, args.rounds, args.concurrency
            )
        load = os.getloadavg()[0]
        print(f"\nload average at the end {load:.1f} on {os.cpu_count()} CPUs", end="")
        if load > (os.cpu_count() or 1):
            print(": the machine was busy, wall times are noisy; the cpu columns are steadier")
        else:
            print()
        for table, table_lines in ((rows, lines), (single_rows, single_lines)):
            if table:
                print()
                print_table(table)
                print()
                for line in table_lines:
                    print(line)
        met = bulk_met and noop_met and rss_met and single_met and referrers_met
        return 4 if args.check and not met else 0
    except BenchError as error:
        print(f"copy_bench: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        SPAWN.close()
        if src is not None:
            src.stop()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
