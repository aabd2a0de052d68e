#!/usr/bin/env python3
"""`cloudops status` on a full pipeline: 10 repositories x 4 accounts x 500 tags each.

Starts the sandbox (moto + one registry per account behind the ECR-like front), fills it,
then times:

* `cloudops status --json` as users run it (a new process: start-up included), and the
  library call `read_status` in-process; each result is checked (every cell holds every
  tag and says "same" or "source"), a wrong answer fails the run (exit 1);
* the two other honest ways to read the same facts, as ratios to read_status (they are
  why status reads with ECR's ListImages): DescribeImages (the same tags and digests,
  with push times, sizes and scan state per image), and the registry API (one tag list
  plus one manifest HEAD per tag, concurrently and bounded).

Filling 20,000 tags one built image at a time would take most of an hour, so each
repository gets one real image per account (blobs pushed once) and then its other tags
as manifest PUTs that reuse those blobs, each with its own annotation (so each tag is its
own image with its own digest, as with real builds). The front registers every manifest
PUT in moto (ECR's PutImage), so ECR's API lists exactly what the registry holds. Not a
test: nothing asserts on time. moto serves every account from one Python process, so
the figures also move with the machine's load.

    python benchmarks/status_bench.py                        # 10 x 4 x 500, 3 rounds
    python benchmarks/status_bench.py --tags 50 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from cloudops.oci import OCI_MANIFEST  # noqa: E402
from cloudops.package_store import store_for  # noqa: E402
from cloudops.pipeline.context import PipelineContext  # noqa: E402
from cloudops.pipeline.init import init_account  # noqa: E402
from cloudops.pipeline.model import load_pipeline  # noqa: E402
from cloudops.registry import RegistrySession  # noqa: E402
from cloudops.registry.client import RegistryWriter  # noqa: E402
from cloudops.report.clients import SharedClients  # noqa: E402
from cloudops.report.collect import WORKERS, read_status  # noqa: E402
from cloudops.sandbox import world  # noqa: E402
from cloudops.sandbox.seed import build_image, publish_image  # noqa: E402

REPOSITORIES = [
    *world.IMAGES,
    "ep/mysql",
    "ep/tomcat",
    "ep/amazonlinux-java",
]
PACKAGE_VERSIONS = 5


class BenchError(Exception):
    pass


def tag_name(index: int) -> str:
    return f"8.{index // 100}.{index % 100}"


def pipeline_file(state: world.SandboxState, repositories: list[str], workdir: Path) -> Path:
    text = world.pipeline_yaml(state)
    line = next(x for x in text.splitlines() if x.startswith("images:"))
    path = workdir / "pipeline.yaml"
    path.write_text(text.replace(line, f"images: [{', '.join(repositories)}]"))
    return path


async def fill(context: PipelineContext, repositories: list[str], tags: int, concurrency: int) -> int:
    """Every account at once: moto, the front and the registries then all have work."""
    limit = asyncio.Semaphore(concurrency)
    accounts = list(context.pipeline.stages)
    async with RegistrySession(context.keychain(*accounts), context.transport_settings()) as pool:
        counts = await asyncio.gather(
            *(
                fill_account(pool.writer(context.registry_host(a)), limit, repositories, tags)
                for a in accounts
            )
        )
    return sum(counts)


async def fill_account(
    writer: RegistryWriter, limit: asyncio.Semaphore, repositories: list[str], tags: int
) -> int:
    """One real image per repository, then ``tags - 1`` more tags as manifest PUTs."""

    async def put(repository: str, base: dict[str, object], index: int) -> None:
        manifest = dict(base, annotations={"org.opencontainers.image.version": tag_name(index)})
        async with limit:
            await writer.put_manifest(
                repository, tag_name(index), json.dumps(manifest).encode(), OCI_MANIFEST
            )

    puts = []
    for repository in repositories:
        async with limit:
            await publish_image(writer, repository, tag_name(0), scale=0.01)
        base = json.loads(build_image(repository, tag_name(0), scale=0.01)[0])
        puts += [put(repository, base, i) for i in range(1, tags)]
    await asyncio.gather(*puts)
    return len(puts) + len(repositories)


def fill_packages(context: PipelineContext, account: str) -> None:
    """Package versions in the package store's layout (package.py), tiny bodies."""
    store = store_for(context, account)
    for n in range(PACKAGE_VERSIONS):
        version = f"8.{n}.0"
        body = f"package {version}".encode()
        store.client.put_object(
            Bucket=store.bucket.name,
            Key=store.version_key(version),
            Body=body,
            Metadata={"version": version, "sha256": hashlib.sha256(body).hexdigest()},
        )
    store.client.put_object(
        Bucket=store.bucket.name,
        Key=store.pointer_key,
        Body=json.dumps({"version": f"8.{PACKAGE_VERSIONS - 1}.0"}).encode(),
    )


def check(document: dict[str, object], repositories: list[str], tags: int) -> None:
    rows = document["rows"]
    assert isinstance(rows, list)
    for row in rows:
        for stage, cell in row["cells"].items():
            expected = tags if row["kind"] == "image" else PACKAGE_VERSIONS
            if cell["count"] != expected or cell["mark"] not in ("same", "source"):
                raise BenchError(f"{row['name']} in {stage}: {cell['mark']}, {cell['count']} tags")
    if len(rows) != len(repositories) + 1:
        raise BenchError(f"{len(rows)} rows, expected {len(repositories) + 1}")


async def via_registry_api(
    context: PipelineContext, repositories: list[str], concurrency: int
) -> tuple[int, float]:
    """What status would cost through the registry API: list_tags, then HEAD every tag.
    Each registry is pinged first, so tokens are fetched before the clock starts."""
    accounts = list(context.pipeline.stages)
    limit = asyncio.Semaphore(concurrency)
    async with RegistrySession(context.keychain(*accounts), context.transport_settings()) as pool:
        for account in accounts:
            await pool.reader(context.registry_host(account)).ping()

        async def one(account: str, repository: str) -> int:
            reader = pool.reader(context.registry_host(account))
            tags = await reader.list_tags(repository)

            async def head(tag: str) -> str | None:
                async with limit:
                    found = await reader.head_manifest(repository, tag)
                return found.digest if found else None

            digests = await asyncio.gather(*(head(t) for t in tags))
            return sum(1 for d in digests if d)

        started = time.monotonic()
        counts = await asyncio.gather(*(one(a, r) for a in accounts for r in repositories))
        return sum(counts), time.monotonic() - started


def via_ecr_api(context: PipelineContext, repositories: list[str], operation: str) -> tuple[int, float]:
    """Tags read with ListImages or DescribeImages, as concurrently as read_status reads;
    clients are made (and tokens fetched) before the clock starts. Returns (tags, seconds)."""
    shared = SharedClients()
    clients = {a: shared.read_session(context.session(a)).client("ecr") for a in context.pipeline.stages}

    def one(account: str, repository: str) -> int:
        pages = clients[account].get_paginator(operation).paginate(repositoryName=repository)
        if operation == "list_images":
            return sum(1 for page in pages for i in page["imageIds"] if i.get("imageTag"))
        return sum(len(d.get("imageTags") or []) for page in pages for d in page["imageDetails"])

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(one, a, r) for a in clients for r in repositories]
        return sum(f.result() for f in futures), time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tags", type=int, default=500, help="tags per repository per account (default 500)")
    parser.add_argument("--repositories", type=int, default=10, help="repositories (default 10, at most 10)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of status (default 3)")
    parser.add_argument("--fill-concurrency", type=int, default=32, help="manifest PUTs at once (default 32)")
    parser.add_argument(
        "--head-concurrency", type=int, default=32, help="registry-API HEADs at once (default 32)"
    )
    parser.add_argument("--skip-registry-api", action="store_true", help="do not time the registry-API way")
    args = parser.parse_args(argv)
    repositories = REPOSITORIES[: max(1, min(args.repositories, len(REPOSITORIES)))]

    workdir = Path(tempfile.mkdtemp(prefix="status-bench-"))
    state = world.up(workdir / "sandbox", detach=False)
    saved = dict(os.environ)
    try:
        os.environ.update(world.env_exports(state))
        path = pipeline_file(state, repositories, workdir)
        os.environ["CLOUDOPS_PIPELINE"] = str(path)
        context = PipelineContext(load_pipeline(path))
        for account in context.pipeline.stages:
            init_account(context, account)

        started = time.monotonic()
        pushed = asyncio.run(fill(context, repositories, args.tags, args.fill_concurrency))
        for account in context.pipeline.stages:
            fill_packages(context, account)
        print(
            f"filled {len(repositories)} repositories x {len(context.pipeline.stages)} accounts x "
            f"{args.tags} tags ({pushed} manifests) in {time.monotonic() - started:.1f} s",
            flush=True,
        )

        library: list[float] = []
        cli: list[float] = []
        for _ in range(args.rounds):
            started = time.monotonic()
            report = read_status(PipelineContext(load_pipeline(path)))
            library.append(time.monotonic() - started)
            check(report.matrix.as_dict(), repositories, args.tags)

            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "cloudops", "status", "--json"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            cli.append(time.monotonic() - started)
            if result.returncode != 0:
                raise BenchError(f"cloudops status exited {result.returncode}: {result.stderr[-2000:]}")
            check(json.loads(result.stdout), repositories, args.tags)

        for label, values in (
            ("cloudops status --json (new process)", cli),
            ("read_status (in-process)", library),
        ):
            print(f"{label:<37} median {statistics.median(values):.2f} s  {_runs(values)}")

        # The tag reading alone, three honest ways (why status uses ListImages).
        listed, list_seconds = via_ecr_api(context, repositories, "list_images")
        described, describe_seconds = via_ecr_api(context, repositories, "describe_images")
        print(f"reading the tags alone: ListImages {list_seconds:.2f} s ({listed} tags)")
        print(
            f"                        DescribeImages {describe_seconds:.2f} s ({described} tags) "
            f"= {describe_seconds / list_seconds:.1f}x"
        )
        if not args.skip_registry_api:
            heads, seconds = asyncio.run(via_registry_api(context, repositories, args.head_concurrency))
            print(
                f"                        registry API {seconds:.2f} s (tag lists + {heads} manifest HEADs, "
                f"{args.head_concurrency} at once) = {seconds / list_seconds:.1f}x"
            )
        return 0
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
        world.down(workdir / "sandbox")
        shutil.rmtree(workdir, ignore_errors=True)


def _runs(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


if __name__ == "__main__":
    sys.exit(main())
