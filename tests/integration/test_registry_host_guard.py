"""The registry-host guard: an account writes (and reads) only through ITS OWN ECR host.

Every sandbox account is mapped to a local registry in pipeline.yaml, so the ordinary
tests never meet an ECR host at all. Here an account's registry is an ECR-shaped host of
another account (or of its own account in another region). Two rules stand in the way,
and each is shown on its own, on the sandbox, with nothing written anywhere:

- load time (pipeline/model.py): the pipeline file is refused, exit 2;
- run time (aws/guard.py ``require_registry_of``, before any registry request): with the
  load-time rule taken out of the process, the promotion is still refused, exit 3.

The runs go through a dead proxy (127.0.0.1:9): were a guard missing, the fake ECR host
would be unreachable and the run would fail with exit 1, never reach the internet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cloudops.package import publish_package
from cloudops.sandbox import world
from cloudops.sandbox.seed import build_package
from tests.support.sandbox import context_for, init_all, publish

# The cloudops CLI with the load-time ownership rule removed: only the runtime guard is left.
RUNTIME_GUARD_ONLY = """\
import sys
import cloudops.pipeline.model as model
assert hasattr(model, "_ownership_rules"), "the load-time rule moved: update this test"
model._ownership_rules = lambda pipeline: []
from cloudops.cli.main import cli
cli(sys.argv[1:], prog_name="cloudops")
"""
DEAD_PROXY = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "CLOUDOPS_RETRY_ATTEMPTS": "1",
}
OTHER_REGION = "eu-central-1"

# (account whose registry is replaced, the ECR-shaped host it gets, whose ECR that is)
CASES = [
    ("qa", f"{world.ACCOUNTS['build']}.dkr.ecr.{world.REGION}.amazonaws.com", "another account's"),
    ("qa", f"999999999999.dkr.ecr.{world.REGION}.amazonaws.com", "an account outside the pipeline"),
    ("qa", f"{world.ACCOUNTS['qa']}.dkr.ecr.{OTHER_REGION}.amazonaws.com", "its own account, another region"),
    ("qa", f"{world.ACCOUNTS['prod']}.dkr-ecr.{world.REGION}.on.aws", "another account's (dual-stack)"),
    ("build", f"{world.ACCOUNTS['qa']}.dkr.ecr.{world.REGION}.amazonaws.com", "the source, mapped to qa's"),
    (
        "build",
        f"{world.ACCOUNTS['build']}.dkr.ecr-fips.{OTHER_REGION}.amazonaws.com",
        "the source, other region",
    ),
]
IDS = [
    "dst-other-account",
    "dst-unknown-account",
    "dst-other-region",
    "dst-dual-stack",
    "src-other-account",
    "src-fips-other-region",
]


def _pipeline_with(sandbox: world.SandboxState, tmp_path: Path, account: str, host: str) -> Path:
    text = sandbox.pipeline.read_text()
    mapping = f'{account}: "{sandbox.registries[account]}"'
    assert mapping in text
    # TLS stays on: the insecure rule would refuse any real ECR host on its own.
    text = text.replace(mapping, f'{account}: "{host}"').replace(
        "insecure_registries: true", "insecure_registries: false"
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def _run(*args: str, runtime_guard_only: bool) -> subprocess.CompletedProcess[str]:
    prefix = ["-c", RUNTIME_GUARD_ONLY] if runtime_guard_only else ["-m", "cloudops"]
    env = {**os.environ, **DEAD_PROXY}
    env.pop("CLOUDOPS_DEBUG", None)
    return subprocess.run(
        [sys.executable, *prefix, *args], capture_output=True, text=True, env=env, timeout=180
    )


def _world(ctx: Any) -> dict[str, Any]:
    """What every account holds, read straight from ECR and S3 (not from cloudops)."""
    seen: dict[str, Any] = {}
    for account in ctx.pipeline.accounts:
        ecr = ctx.session(account).client("ecr")
        for repo in ecr.describe_repositories()["repositories"]:
            name = repo["repositoryName"]
            images = ecr.describe_images(repositoryName=name).get("imageDetails", [])
            seen[f"{account}/ecr/{name}"] = sorted(
                (i["imageDigest"], tuple(sorted(i.get("imageTags", [])))) for i in images
            )
        s3 = ctx.session(account).client("s3")
        listing = s3.list_objects_v2(Bucket=ctx.pipeline.bucket(account))
        seen[f"{account}/s3"] = sorted((o["Key"], o["ETag"]) for o in listing.get("Contents", []))
    return seen


@pytest.fixture(scope="module")
def seeded(sandbox: world.SandboxState, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """ep/cortex:1.0 and package 1.0 in the build account, ready to promote into qa. Once
    for the module: every test below proves it changed nothing."""
    world.reset(sandbox)
    ctx = context_for(sandbox.pipeline)
    init_all(ctx)
    tmp_path = tmp_path_factory.mktemp("seeded")
    digest = publish(ctx, "build", "ep/cortex", "1.0")
    package = tmp_path / "pkg.zip"
    build_package(package, "1.0", size=64 * 1024)
    publish_package(ctx, package, "1.0")
    release = tmp_path / "release.yaml"
    release.write_text(
        'release: "r1"\nimages:\n  - {repository: ep/cortex, tag: "1.0"}\npackage: {version: "1.0"}\n'
    )
    seeded = _world(ctx)
    assert seeded["build/ecr/ep/cortex"] == [(digest, ("1.0",))]
    assert seeded["qa/ecr/ep/cortex"] == []
    return ctx, release


def _commands(pipeline: Path, release: Path) -> list[list[str]]:
    return [
        [
            "promote",
            "image",
            "--to",
            "qa",
            "--repository",
            "ep/cortex",
            "--tag",
            "1.0",
            "--pipeline",
            str(pipeline),
        ],
        [
            "promote",
            "release",
            "--to",
            "qa",
            "--release",
            str(release),
            "--json",
            "--pipeline",
            str(pipeline),
        ],
    ]


@pytest.mark.parametrize(("account", "host", "whose"), CASES, ids=IDS)
def test_an_ecr_host_of_another_account_or_region_is_refused_at_load_time(
    sandbox: world.SandboxState, seeded: Any, tmp_path: Path, account: str, host: str, whose: str
) -> None:
    ctx, release = seeded
    before = _world(ctx)
    pipeline = _pipeline_with(sandbox, tmp_path, account, host)
    for args in _commands(pipeline, release):
        result = _run(*args, runtime_guard_only=False)
        assert result.returncode == 2, (whose, result.returncode, result.stderr)
        assert "is the ECR of account" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert _world(ctx) == before, "something was written"


@pytest.mark.parametrize(("account", "host", "whose"), CASES, ids=IDS)
def test_the_runtime_guard_refuses_an_ecr_host_of_another_account_or_region_on_its_own(
    sandbox: world.SandboxState, seeded: Any, tmp_path: Path, account: str, host: str, whose: str
) -> None:
    ctx, release = seeded
    before = _world(ctx)
    pipeline = _pipeline_with(sandbox, tmp_path, account, host)
    owner = host.split(".", 1)[0]
    region = OTHER_REGION if OTHER_REGION in host else world.REGION
    for args in _commands(pipeline, release):
        result = _run(*args, runtime_guard_only=True)
        assert result.returncode == 3, (whose, result.returncode, result.stderr)
        assert (
            f"registry {host} belongs to account {owner} ({region}), not to {account!r}" in result.stderr
        ), result.stderr
        assert "Traceback" not in result.stderr
    assert _world(ctx) == before, "something was written"
