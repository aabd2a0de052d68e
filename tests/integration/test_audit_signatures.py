"""`cloudops audit`'s signature rule on the sandbox: with ``verify.required_for: [preprod,
prod]`` every image held in those stages must carry a signature that verifies under the
pipeline's key. Clean when all are signed; an image promoted unsigned (before the
pipeline required signatures) and one signed by another key are errors naming the
account, the image, its digest and why. A pipeline without ``verify:`` has no such rule."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudops.audit import run_audit
from cloudops.audit.findings import AuditReport
from cloudops.cli.main import cli
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.promote import ImageSpec, promote_images
from cloudops.pipeline.sign_images import Target, sign_images
from cloudops.sandbox import config_seed, world
from cloudops.signing.keys import generate_key_pair, parse_private_key
from tests.support.sandbox import context_for, init_all, publish, without_approvals

IMAGES = "images: [ep/cortex, ep/search]"
PASSWORD = b"test-password"


def cloudops(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _key(directory: Path, name: str) -> Any:
    private_pem, public_pem = generate_key_pair(PASSWORD, scrypt_n=1024)
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.pub").write_bytes(public_pem)
    return parse_private_key(private_pem, PASSWORD, name)


@pytest.fixture
def world_with_keys(sandbox: world.SandboxState, tmp_path: Path) -> tuple[PipelineContext, PipelineContext]:
    """A clean world; the context of a pipeline requiring signatures in preprod and prod
    (its key absolute), and of the same pipeline without verify:."""
    text = re.sub(r"^images: .*$", IMAGES, sandbox.pipeline.read_text(), flags=re.M)
    plain = tmp_path / "pipeline-plain.yaml"
    plain.write_text(text)
    verified = tmp_path / "pipeline.yaml"
    verified.write_text(
        text + f'verify: {{keys: ["{tmp_path}/keys/cosign.pub"], required_for: [preprod, prod]}}\n'
    )
    world.reset(sandbox)
    context = context_for(verified)  # after the reset: keys assumed earlier act elsewhere
    init_all(context)
    config_seed.seed(context)
    return context, context_for(plain)


def _errors(report: AuditReport) -> list[tuple[str, str | None]]:
    return [(f.rule, f.account) for f in report.findings if f.counts]


def test_signed_images_audit_clean_and_unsigned_ones_are_errors(
    world_with_keys: tuple[PipelineContext, PipelineContext], tmp_path: Path
) -> None:
    context, plain = world_with_keys
    trusted = _key(tmp_path / "keys", "cosign")
    other = _key(tmp_path / "other", "other")
    cortex = publish(context, "build", "ep/cortex", "1.0")
    search = publish(context, "build", "ep/search", "2.0")
    sign_images(context, [Target("ep/cortex", "1.0")], trusted)
    for stage in ("qa", "preprod", "prod"):
        [done] = promote_images(without_approvals(context), stage, [ImageSpec("ep/cortex", "1.0")])
        assert done.status == "promoted", done.error

    report = run_audit(context)
    assert _errors(report) == [], [f.what for f in report.findings]
    [result] = [r for r in report.rules if r.rule == "signatures"]
    assert (result.status, result.note) == ("passed", "2 images in preprod, prod checked against 1 keys")
    assert "signatures" not in {r.rule for r in run_audit(plain).rules}  # no verify: nothing to say

    # Promoted into preprod before the pipeline required signatures: unsigned.
    [done] = promote_images(plain, "qa", [ImageSpec("ep/search", "2.0")])
    assert done.status == "promoted", done.error
    [done] = promote_images(plain, "preprod", [ImageSpec("ep/search", "2.0")])
    assert done.status == "promoted", done.error
    # And one signed by a key the pipeline does not trust.
    cortex_2 = publish(context, "build", "ep/cortex", "2.0")
    sign_images(context, [Target("ep/cortex", "2.0")], other)
    for stage in ("qa", "preprod"):
        [done] = promote_images(plain, stage, [ImageSpec("ep/cortex", "2.0")])
        assert done.status == "promoted", done.error

    result_cli = cloudops("audit", "--json", "--pipeline", str(context.pipeline.path))
    assert result_cli.exit_code == 4, result_cli.stderr
    document = json.loads(result_cli.stdout)
    found = [f for f in document["findings"] if f["severity"] != "info"]
    assert [(f["rule"], f["account"], f["severity"]) for f in found] == [
        ("signatures", "preprod", "error"),
        ("signatures", "preprod", "error"),
    ], found
    by_where = {f["where"]: f for f in found}
    unsigned = by_where[f"ep/search@{search}"]
    assert f"image ep/search@{search} (tags 2.0) in preprod is not signed" in unsigned["what"]
    assert "no cosign signature refers to it" in unsigned["what"]
    assert "cloudops sign ep/search:2.0" in unsigned["fix"]
    invalid = by_where[f"ep/cortex@{cortex_2}"]
    assert "has no signature that verifies under the pipeline's keys" in invalid["what"]
    assert f"ep/cortex@{cortex}" not in by_where  # signed with the pipeline's key
    rules = {r["rule"]: r for r in document["rules"]}
    assert rules["signatures"]["status"] == "failed"
    assert rules["signatures"]["title"].startswith("every image in a stage that requires signatures")
    assert all(r["status"] != "failed" for name, r in rules.items() if name != "signatures")


def test_missing_key_file_is_a_finding(world_with_keys: tuple[PipelineContext, PipelineContext]) -> None:
    context, _ = world_with_keys  # no key written under tmp_path/keys
    report = run_audit(context)
    [finding] = [f for f in report.findings if f.rule == "signatures"]
    assert finding.severity == "error" and "cannot be loaded" in finding.what
    assert {r.rule: r.status for r in report.rules}["signatures"] == "failed"
