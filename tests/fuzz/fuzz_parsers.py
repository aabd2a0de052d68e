"""A fuzz target for the parsers users' input reaches: image references, manifests and
indexes, pipeline.yaml, release files and .env files. Each must answer any bytes with
its own error type (exit 2 material), never another exception.

With atheris installed (`pip install atheris`) this is a coverage-guided libFuzzer target:

    python tests/fuzz/fuzz_parsers.py -runs=100000

Without it, it feeds random mutations of seed inputs for a bounded number of runs:

    python tests/fuzz/fuzz_parsers.py --runs 20000
"""

from __future__ import annotations

import contextlib
import random
import sys
import tempfile
from pathlib import Path

from cloudops.config.envfile import read_env_file
from cloudops.errors import CloudopsError
from cloudops.oci import parse_manifest
from cloudops.pipeline.model import parse_pipeline
from cloudops.refs import parse_reference
from cloudops.release import load_release

SEEDS = [
    b"111111111111.dkr.ecr.us-west-2.amazonaws.com/ep/cortex:8.5.0@sha256:" + b"a" * 64,
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":'
    b'"application/vnd.oci.image.manifest.v1+json","digest":"sha256:' + b"b" * 64 + b'","size":1}]}',
    b'accounts:\n  build: {account_id: "111111111111", region: us-west-2, builds_images: true}\n'
    b"stages: [build]\n",
    b'release: "1"\nimages:\n  - {repository: ep/cortex, tag: "1"}\npackage: {version: "1"}\n',
    b"export EP_DB_HOSTNAME=\"qa-db.internal\"\nEP_DB_PASS='s3cret' # comment\nEP_SMTP_HOST=mail\n",
]


def one_input(data: bytes, workdir: Path) -> None:
    text = data.decode("utf-8", errors="replace")
    for parse in (
        lambda: parse_reference(text),
        lambda: parse_manifest(data),
        lambda: parse_pipeline(text, Path("fuzz.yaml")),
    ):
        with contextlib.suppress(CloudopsError):
            parse()
    release = workdir / "release.yaml"
    release.write_bytes(data)
    with contextlib.suppress(CloudopsError):
        load_release(release)
    env = workdir / "author.env"
    env.write_bytes(data)
    with contextlib.suppress(CloudopsError):
        read_env_file(env)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        position = rng.randrange(len(buffer) + 1)
        if choice < 0.4 and buffer:
            buffer[min(position, len(buffer) - 1)] = rng.randrange(256)
        elif choice < 0.7:
            buffer[position:position] = bytes(
                rng.choice(b"{}[]:\"'\\\n #&*!@") for _ in range(rng.randint(1, 4))
            )
        elif buffer:
            del buffer[position : position + rng.randint(1, 8)]
    return bytes(buffer)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="cloudops-fuzz-"))
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5000
        rng = random.Random(0)
        for _ in range(runs):
            one_input(mutate(rng, rng.choice(SEEDS)), workdir)
        print(f"fuzz: {runs} inputs, no unexpected exception")
        return 0
    atheris.Setup(sys.argv, lambda data: one_input(data, workdir))
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
