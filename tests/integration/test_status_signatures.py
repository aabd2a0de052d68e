"""`cloudops status` with pipeline.yaml's ``verify:`` keys, on the sandbox:

    ep/cortex 1.0   signed with the pipeline's key in build, promoted to qa, preprod, prod
    ep/search 2.0   unsigned, in build and qa (preprod refuses it); build also holds two
                    referrer tags (sha256-<hex>, sha256-<hex>.sig), which are not versions
    ep/batch  3.0   signed with another key, in build and qa

Each shown tag is marked signed / unsigned / invalid per account (table, --json, --html);
the referrer tags the signatures live under never show as versions; without ``verify:``
no registry is contacted at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudops.cli.main import cli
from cloudops.pipeline import signatures
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.promote import ImageSpec, promote_images
from cloudops.pipeline.sign_images import Target, sign_images
from cloudops.referrers import cosign_tags, fallback_tag, is_referrer_tag
from cloudops.report import collect
from cloudops.sandbox import world
from cloudops.signing.keys import generate_key_pair, parse_private_key
from tests.support.sandbox import context_for, ecr_tags, init_all, publish, without_approvals

IMAGES = "images: [ep/cortex, ep/search, ep/batch]"
PASSWORD = b"test-password"


def cloudops(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@dataclass(frozen=True)
class Signed:
    context: PipelineContext
    plain: Path
    """The same world's pipeline without verify: (no signature checks)."""
    variant: Path
    digests: dict[str, str]


def _key(directory: Path, name: str) -> tuple[Any, Path]:
    """A cosign key pair in ``directory`` (scrypt lowered: a test key); the private key
    and the public key's path."""
    private_pem, public_pem = generate_key_pair(PASSWORD, scrypt_n=1024)
    directory.mkdir(exist_ok=True)
    public = directory / f"{name}.pub"
    public.write_bytes(public_pem)
    return parse_private_key(private_pem, PASSWORD, name), public


@pytest.fixture(scope="module")
def signed(sandbox: world.SandboxState, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    # Every test here only reads: the state is built once for the module.
    folder = tmp_path_factory.mktemp("signed")
    trusted, _ = _key(folder / "keys", "cosign")
    other, _ = _key(folder / "other-keys", "other")
    text = re.sub(r"^images: .*$", IMAGES, sandbox.pipeline.read_text(), flags=re.M)
    plain = folder / "pipeline-plain.yaml"
    plain.write_text(text)
    variant = folder / "pipeline.yaml"  # the key relative to the pipeline file's folder
    variant.write_text(text + "verify: {keys: [keys/cosign.pub], required_for: [preprod, prod]}\n")

    world.reset(sandbox)
    context = context_for(variant)  # fresh after the reset: old keys would act elsewhere
    init_all(context)
    digests = {
        "cortex": publish(context, "build", "ep/cortex", "1.0"),
        "search": publish(context, "build", "ep/search", "2.0"),
        "batch": publish(context, "build", "ep/batch", "3.0"),
    }
    assert [r.status for r in sign_images(context, [Target("ep/cortex", "1.0")], trusted)] == ["signed"]
    assert [r.status for r in sign_images(context, [Target("ep/batch", "3.0")], other)] == ["signed"]
    for stage in ("qa", "preprod", "prod"):  # the signature gate of preprod and prod passes
        [done] = promote_images(without_approvals(context), stage, [ImageSpec("ep/cortex", "1.0")])
        assert done.status == "promoted", done.error
    for repository, tag in (("ep/search", "2.0"), ("ep/batch", "3.0")):
        [done] = promote_images(context, "qa", [ImageSpec(repository, tag)])
        assert done.status == "promoted", done.error
    [refused] = promote_images(context, "preprod", [ImageSpec("ep/search", "2.0")])
    assert refused.status == "refused", refused.error
    # The sandbox's registry serves the referrers API; a registry without it keeps
    # referrers under tags (the referrers tag schema, cosign's .sig): two such tags in ECR.
    elsewhere = "sha256:" + "ab" * 32
    for tag in (fallback_tag(elsewhere), cosign_tags(elsewhere)[0]):
        publish(context, "build", "ep/search", tag)
    assert sum(is_referrer_tag(t) for t in ecr_tags(context, "build", "ep/search")) == 2
    return Signed(context, plain, variant, digests)


def _cells(document: dict[str, Any], name: str) -> dict[str, Any]:
    cells: dict[str, Any] = next(r for r in document["rows"] if r["name"] == name)["cells"]
    return cells


def _no_referrer_tags(document: dict[str, Any]) -> None:
    for row in document["rows"]:
        for stage, cell in row["cells"].items():
            tags = [a["tag"] for a in cell["newest"]] + cell["pending"] + cell["not_upstream"]
            assert not [t for t in tags if is_referrer_tag(t)], (row["name"], stage, tags)


def test_json_marks_signed_unsigned_and_invalid(signed: Signed) -> None:
    result = cloudops("status", "--json", "--pipeline", str(signed.variant))
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    _no_referrer_tags(document)

    cortex = _cells(document, "ep/cortex")
    for stage in ("build", "qa", "preprod", "prod"):
        [artifact] = cortex[stage]["newest"]  # the signature's tags are not versions
        assert (artifact["tag"], artifact["digest"]) == ("1.0", signed.digests["cortex"])
        assert artifact["signature"]["state"] == "signed", (stage, artifact)
        assert artifact["signature"]["key"].endswith("keys/cosign.pub")
        assert (cortex[stage]["signature"], cortex[stage]["count"]) == ("signed", 1)
    assert (cortex["qa"]["mark"], cortex["prod"]["mark"]) == ("same", "same")  # no drift from the index tag

    search = _cells(document, "ep/search")
    batch = _cells(document, "ep/batch")
    assert [a["tag"] for a in search["build"]["newest"]] == ["2.0"] and search["build"]["count"] == 1
    assert search["qa"]["mark"] == "same"
    for stage in ("build", "qa"):
        assert search[stage]["signature"] == "unsigned"
        assert search[stage]["newest"][0]["signature"]["reason"] == "no cosign signature refers to it"
        assert batch[stage]["signature"] == "invalid"
        assert batch[stage]["newest"][0]["signature"]["key"] is None
    assert (search["preprod"]["mark"], search["preprod"].get("signature")) == ("missing", None)
    assert "signature" not in _cells(document, "deployment package")["build"]

    assert document["signatures"]["keys"][0].endswith("keys/cosign.pub")
    assert document["signatures"]["summary"] == {"invalid": 2, "unsigned": 2, "unchecked": 0, "signed": 4}


def test_table_and_html_show_the_states(signed: Signed, tmp_path: Path) -> None:
    page = tmp_path / "status.html"
    result = cloudops("status", "--html", str(page), "--pipeline", str(signed.variant))
    assert result.exit_code == 0, result.stderr
    for word in ("SIGNED", "UNSIGNED", "INVALID", "signatures: 2 invalid, 2 unsigned, 4 signed"):
        assert word in result.stderr, word
    assert "sha256-" not in result.stderr

    cells = _SignatureCells()
    cells.feed(page.read_text())
    assert cells.cells[("ep/cortex", "prod")] == "signed"
    assert cells.cells[("ep/search", "qa")] == "unsigned"
    assert cells.cells[("ep/batch", "build")] == "invalid"
    assert cells.badges.count("signed") == 4 and cells.badges.count("invalid") == 2
    assert "signatures checked against" in page.read_text()


def test_without_verify_no_registry_is_read(signed: Signed, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a registry was read without verify keys")

    monkeypatch.setattr(collect, "verify_many", refuse)
    monkeypatch.setattr(signatures, "verify_image", refuse)
    monkeypatch.setattr(signatures, "RegistrySession", refuse)
    report = collect.read_status(context_for(signed.plain))
    document = report.matrix.as_dict()
    assert "signatures" not in document
    assert "signature" not in json.dumps(document)
    _no_referrer_tags(document)
    cortex = _cells(document, "ep/cortex")
    assert [a["tag"] for a in cortex["qa"]["newest"]] == ["1.0"] and cortex["qa"]["mark"] == "same"


class _SignatureCells(HTMLParser):
    """(row, stage) -> the cell's data-signature, and every tag's badge, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.badges: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "td" and found.get("data-signature"):
            self.cells[(str(found["data-row"]), str(found["data-stage"]))] = str(found["data-signature"])
        elif tag == "span" and found.get("data-signature"):
            self.badges.append(str(found["data-signature"]))
