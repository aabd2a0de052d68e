#!/usr/bin/env python3
"""`cloudops history` on a long promotion log: 10,000 records in one account's bucket.

Starts the sandbox (moto), writes the records into qa's bucket as cloudops writes them
(one object per record under cloudops/history/YYYY/MM/<id>.json, spread over the last
year), then compacts every past day once, with the function the append path calls after
each record (history_daily.compact; there in steps of COMPACT_BUDGET records, here the whole
backlog at once: one daily object per day under cloudops/history-daily/), and times:

* `cloudops history --account qa --json` as users run it (a new process: start-up,
  the account guard, listing, the GETs, validation and the JSON), checked to return
  every record (a wrong answer fails the run, exit 1), with the daily objects, and once
  without them (they are deleted at the end: this sandbox is thrown away), as a ratio;
* the library read of the same account in-process: with the daily objects (one GET per
  day), without them (READ_WORKERS GETs in flight, one per record), and one GET after
  another (what it did before issue 12), as ratios; each checked to return the same
  records.

Not a test: nothing asserts on time. moto serves every account from one Python process,
so the figures also move with the machine's load.

    python benchmarks/history_bench.py                        # 10,000 records, 3 rounds
    python benchmarks/history_bench.py --records 500 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from measure import BenchError, Spawner, mib, print_table  # noqa: E402  (benchmarks/measure.py)

from cloudops.aws.s3 import AccountBucket  # noqa: E402
from cloudops.pipeline.context import PipelineContext  # noqa: E402
from cloudops.pipeline.history import read_account  # noqa: E402
from cloudops.pipeline.history_daily import READ_WORKERS, compact  # noqa: E402
from cloudops.pipeline.init import init_account  # noqa: E402
from cloudops.pipeline.model import load_pipeline  # noqa: E402
from cloudops.pipeline.records import DAILY_PREFIX, HISTORY_PREFIX, PromotionRecord  # noqa: E402
from cloudops.sandbox import world  # noqa: E402

ACCOUNT = "qa"


def seed(context: PipelineContext, count: int, concurrency: int) -> None:
    """``count`` records in the account's bucket, dated over the last year, as cloudops
    writes them (AccountBucket.append_record), many at once on one client."""
    pipeline = context.pipeline
    bucket = AccountBucket(context.session(ACCOUNT), pipeline.bucket(ACCOUNT))
    now = datetime.now(UTC)

    def write(n: int) -> None:
        moment = now - timedelta(minutes=53 * (count - n))
        record = PromotionRecord(
            id=f"{moment:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}",
            when=moment.isoformat(timespec="seconds"),
            who="arn:aws:sts::222222222222:assumed-role/cloudops/jenkins (jenkins)",
            source_account="build",
            source_account_id=pipeline.account("build").account_id,
            destination_account=ACCOUNT,
            destination_account_id=pipeline.account(ACCOUNT).account_id,
            repository=world.IMAGES[n % len(world.IMAGES)],
            tag=f"8.{n // 100}.{n % 100}",
            source_digest="sha256:" + f"{n:064x}",
            bytes=1_000_000 + n,
            seconds=12.5,
            result="promoted" if n % 10 else "already-promoted",
        )
        bucket.append_record(HISTORY_PREFIX + record.key, record.model_dump(mode="json"))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(write, range(count)))


def library_read(context: PipelineContext, workers: int, expected: int, *, daily: bool) -> float:
    bucket = AccountBucket(context.session(ACCOUNT), context.pipeline.bucket(ACCOUNT))
    account_id = context.pipeline.account(ACCOUNT).account_id
    started = time.monotonic()
    found = read_account(bucket, ACCOUNT, account_id, limit=expected, workers=workers, daily=daily)
    seconds = time.monotonic() - started
    if len(found.records) != expected or found.unreadable:
        raise BenchError(f"read {len(found.records)} records, {len(found.unreadable)} unreadable")
    return seconds


def cli_read(spawner: Spawner, workdir: Path, expected: int, label: str) -> tuple[float, list[str]]:
    argv = [sys.executable, "-m", "cloudops", "history", "--account", ACCOUNT, "--json"]
    run = spawner.run(argv, workdir).check()
    records = run.json_report().get("records")
    count = len(records) if isinstance(records, list) else 0
    if count != expected:
        raise BenchError(f"history returned {count} records, not {expected}")
    row = [
        label,
        f"{run.seconds:.2f}",
        f"{run.cpu_seconds:.2f}",
        mib(run.max_rss_kib),
        f"{expected / run.seconds:,.0f}",
    ]
    return run.seconds, row


def drop_daily_objects(context: PipelineContext) -> None:
    """The benchmark's own throwaway bucket only: cloudops never deletes history objects."""
    bucket = AccountBucket(context.session(ACCOUNT), context.pipeline.bucket(ACCOUNT))
    keys = [{"Key": s.key} for s in bucket.list_records(prefix=DAILY_PREFIX)]
    for start in range(0, len(keys), 1000):
        bucket.client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys[start : start + 1000]})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000, help="records in qa's bucket (default 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--fill-concurrency", type=int, default=32, help="PUTs at once (default 32)")
    parser.add_argument(
        "--skip-sequential", action="store_true", help="do not time one GET after another (slow)"
    )
    parser.add_argument(
        "--skip-cli-without-daily",
        action="store_true",
        help="do not time the command without daily objects (slow: one GET per record)",
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="history-bench-"))
    state = world.up(workdir / "sandbox", detach=False)
    saved = dict(os.environ)
    spawner = Spawner()
    try:
        os.environ.update(world.env_exports(state))
        os.environ["CLOUDOPS_PIPELINE"] = str(state.pipeline)
        context = PipelineContext(load_pipeline(state.pipeline))
        init_account(context, ACCOUNT)
        started = time.monotonic()
        seed(context, args.records, args.fill_concurrency)
        print(f"wrote {args.records} records into {ACCOUNT}'s bucket in {time.monotonic() - started:.1f} s")

        bucket = AccountBucket(context.session(ACCOUNT), context.pipeline.bucket(ACCOUNT))
        started = time.monotonic()
        written = compact(bucket, budget=None)
        print(f"compacted {len(written)} past days into daily objects in {time.monotonic() - started:.1f} s")

        rows = [["cloudops history --account qa --json", "seconds", "cpu s", "peak RSS", "records/s"]]
        cli: list[float] = []
        for number in range(args.rounds):
            seconds, row = cli_read(spawner, workdir, args.records, f"round {number + 1}, daily objects")
            cli.append(seconds)
            rows.append(row)
        print_table(rows)
        median = statistics.median(cli)
        print(f"cloudops history --json, daily objects: median {median:.2f} s for {args.records} records")

        with_daily = statistics.median(
            library_read(context, READ_WORKERS, args.records, daily=True) for _ in range(args.rounds)
        )
        print(f"read_account, daily objects ({READ_WORKERS} GETs in flight, in-process): {with_daily:.2f} s")
        without = library_read(context, READ_WORKERS, args.records, daily=False)
        print(
            f"read_account, one GET per record ({READ_WORKERS} in flight, in-process): {without:.2f} s "
            f"= {without / with_daily:.1f}x the read with daily objects"
        )
        if not args.skip_sequential:
            sequential = library_read(context, 1, args.records, daily=False)
            print(
                f"read_account, one GET after another (in-process): {sequential:.2f} s "
                f"= {sequential / with_daily:.1f}x the read with daily objects"
            )
        if not args.skip_cli_without_daily:
            drop_daily_objects(context)
            seconds, row = cli_read(spawner, workdir, args.records, "no daily objects")
            print_table([rows[0], row])
            print(
                f"cloudops history --json, no daily objects: {seconds:.2f} s "
                f"= {seconds / median:.1f}x the command with daily objects"
            )
        return 0
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        spawner.close()
        os.environ.clear()
        os.environ.update(saved)
        world.down(workdir / "sandbox")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
