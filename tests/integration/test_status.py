"""`cloudops status` and `cloudops history` on the sandbox, with a crafted state:

    ep/cortex   build 8.5.0 8.6.0   qa 8.5.0 (behind)   preprod 8.5.0   prod 8.5.0
    ep/search   build 2.0           qa 2.0              preprod 2.0 pushed straight into
                                                        the registry, other content (drift)
    ep/batch    build 3.0           qa nothing (missing)
    package     build 8.5.0 8.6.0 (current)             qa 8.5.0 (behind)

and a variant pipeline whose prod credentials are another account's role (unreachable:
the guard refuses to read it under prod's name).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cloudops.package import promote_package, publish_package
from cloudops.pipeline.context import PipelineContext
from cloudops.pipeline.promote import ImageSpec, promote_images
from cloudops.sandbox import world
from tests.support.run import assert_clean_failure, cloudops
from tests.support.sandbox import context_for, init_all, publish, without_approvals

CHROMIUM = shutil.which("chromium")


@dataclass(frozen=True)
class Crafted:
    state: world.SandboxState
    context: PipelineContext
    variant: Path
    """The pipeline with prod's credentials pointing at preprod's account."""
    digests: dict[str, str]


def _package(path: Path, version: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("webapps/cortex.war", f"cortex {version}")
        archive.writestr("database/schema.sql", "create table t (id int);")
        archive.writestr("tools/data-population-cli.jar", f"dpt {version}")
    return path


@pytest.fixture(scope="module")
def crafted(sandbox: world.SandboxState, tmp_path_factory: pytest.TempPathFactory) -> Crafted:
    # Every test here only reads, so the state is built once for the module.
    world.reset(sandbox)
    context = context_for(sandbox.pipeline)  # fresh after the reset: old keys would act elsewhere
    init_all(context)
    digests = {
        "cortex-8.5.0": publish(context, "build", "ep/cortex", "8.5.0"),
        "cortex-8.6.0": publish(context, "build", "ep/cortex", "8.6.0"),
        "search-2.0": publish(context, "build", "ep/search", "2.0"),
        "batch-3.0": publish(context, "build", "ep/batch", "3.0"),
    }
    for stage in ("qa", "preprod", "prod"):  # prod: single images, as a pipeline without approvals
        [done] = promote_images(without_approvals(context), stage, [ImageSpec("ep/cortex", "8.5.0")])
        assert done.status == "promoted", done.error
    [done] = promote_images(context, "qa", [ImageSpec("ep/search", "2.0")])
    assert done.status == "promoted", done.error
    # Straight into preprod's registry, bypassing the tool: same tag, other content.
    digests["search-2.0-preprod"] = publish(context, "preprod", "ep/search", "2.0", scale=0.07)
    [refused] = promote_images(context, "preprod", [ImageSpec("ep/search", "2.0")])
    assert refused.status == "refused"  # and recorded: history shows it

    work = tmp_path_factory.mktemp("packages")
    for version in ("8.5.0", "8.6.0"):
        assert publish_package(context, _package(work / f"{version}.zip", version), version).ok
    assert promote_package(context, "qa", version="8.5.0").ok

    variant = work / "pipeline-prod-unreachable.yaml"
    text = sandbox.pipeline.read_text()
    broken = text.replace(
        'role_arn: "arn:aws:iam::444444444444:role/cloudops"',
        'role_arn: "arn:aws:iam::333333333333:role/cloudops"',
    )
    assert broken != text
    variant.write_text(broken)
    return Crafted(sandbox, context, variant, digests)


def _row(document: dict[str, Any], name: str) -> dict[str, Any]:
    cells: dict[str, Any] = next(r for r in document["rows"] if r["name"] == name)["cells"]
    return cells


def test_json_says_behind_drift_missing_and_unreachable(crafted: Crafted) -> None:
    result = cloudops("status", "--json", "--pipeline", str(crafted.variant))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["stages"] == ["build", "qa", "preprod", "prod"]
    prod = document["accounts"]["prod"]
    assert prod["reachable"] is False and "belong to account 333333333333" in prod["error"]

    cortex = _row(document, "ep/cortex")
    assert [(a["tag"], a["digest"]) for a in cortex["build"]["newest"]] == [
        ("8.6.0", crafted.digests["cortex-8.6.0"]),
        ("8.5.0", crafted.digests["cortex-8.5.0"]),
    ]
    assert cortex["build"]["mark"] == "source"
    assert (cortex["qa"]["mark"], cortex["qa"]["pending"], cortex["qa"]["compared_with"]) == (
        "behind",
        ["8.6.0"],
        "build",
    )
    assert cortex["preprod"]["mark"] == "same"
    assert cortex["prod"]["mark"] == "unreachable" and "333333333333" in cortex["prod"]["reason"]

    search = _row(document, "ep/search")
    assert (search["build"]["mark"], search["qa"]["mark"], search["preprod"]["mark"]) == (
        "source",
        "same",
        "drift",
    )
    assert search["preprod"]["drift"] == [
        {
            "tag": "2.0",
            "digest": crafted.digests["search-2.0-preprod"],
            "upstream_stage": "qa",
            "upstream_digest": crafted.digests["search-2.0"],
        }
    ]

    batch = _row(document, "ep/batch")
    assert (batch["build"]["mark"], batch["qa"]["mark"], batch["qa"]["pending"]) == (
        "source",
        "missing",
        ["3.0"],
    )

    package = _row(document, "deployment package")
    assert (package["build"]["mark"], package["build"]["current"]) == ("source", "8.6.0")
    assert [a["tag"] for a in package["build"]["newest"]] == ["8.6.0", "8.5.0"]
    assert (package["qa"]["mark"], package["qa"]["current"], package["qa"]["pending"]) == (
        "behind",
        "8.5.0",
        ["8.6.0"],
    )
    assert package["preprod"]["mark"] == "missing"
    assert document["summary"]["drift"] == 1 and document["summary"]["unreachable"] == 8


def test_human_matrix_and_strict_exit_code(crafted: Crafted) -> None:
    result = cloudops("status", "--strict", "--pipeline", str(crafted.variant))
    assert result.returncode == 4, result.stderr  # findings: drift, an unreachable account
    assert result.stdout == ""
    for word in ("SOURCE", "BEHIND", "SAME", "DRIFT", "MISSING", "UNREACHABLE", "prod unreachable:"):
        assert word in result.stderr, word
    assert "Traceback" not in result.stderr


def test_every_account_readable_with_a_read_only_role(crafted: Crafted) -> None:
    result = cloudops("status", "--json", "--read-role", "cloudops-readonly")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert all(a["reachable"] for a in document["accounts"].values())
    assert _row(document, "ep/cortex")["prod"]["mark"] == "same"
    assert _row(document, "ep/search")["prod"]["mark"] == "missing"


class _Cells(HTMLParser):
    """(row, stage) -> mark of every matrix cell in a DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "td" and found.get("data-stage"):
            self.cells[(str(found["data-row"]), str(found["data-stage"]))] = str(found["data-mark"])


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing could be fetched even if asked
            f"--user-data-dir={profile}",
            "--window-size=1400,900",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: `apt-get install -y chromium` (make sysdeps does it)"
)
def test_html_page_in_headless_chromium(crafted: Crafted, tmp_path: Path) -> None:
    page = tmp_path / "status.html"
    result = cloudops("status", "--html", str(page), "--pipeline", str(crafted.variant))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    # Self-contained: no external scripts, styles, fonts or images.
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "<script" not in text.lower() and "@import" not in text and "url(" not in text

    shot = tmp_path / "status.png"
    taken = _chromium(f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile-shot")
    assert shot.exists() and shot.stat().st_size > 20_000, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    dumped = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    cells = _Cells()
    cells.feed(dumped.stdout)
    assert cells.cells[("ep/cortex", "qa")] == "behind"
    assert cells.cells[("ep/cortex", "preprod")] == "same"
    assert cells.cells[("ep/search", "preprod")] == "drift"
    assert cells.cells[("ep/batch", "qa")] == "missing"
    assert cells.cells[("deployment package", "qa")] == "behind"
    assert {cells.cells[(row, "prod")] for row, _ in cells.cells} == {"unreachable"}
    dom = dumped.stdout
    assert "8.6.0" in dom and crafted.digests["search-2.0-preprod"][7:19] in dom
    # The timeline of each readable account, failed and refused promotions included.
    assert 'class="timeline" data-account="preprod"' in dom
    assert "refused" in dom and "tags never move" in dom
    assert "history not readable" in dom  # prod's, with the reason


def test_history_filters_show_refused_promotions(crafted: Crafted) -> None:
    result = cloudops("history", "--repository", "ep/search", "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)["records"]
    assert [(r["destination_account"], r["result"]) for r in records] == [
        ("qa", "promoted"),
        ("preprod", "refused"),
    ]
    assert "tags never move" in records[1]["error"]

    human = cloudops("history", "--repository", "ep/search", "--account", "preprod", "--since", "7d")
    assert human.returncode == 0, human.stderr
    assert "refused" in human.stderr and "promoted" not in human.stderr and "ep/cortex" not in human.stderr
    bad = cloudops("history", "--since", "yesterday")
    assert bad.returncode == 2 and "neither an ISO date nor a span" in bad.stderr


def test_history_reads_no_account_whose_credentials_act_in_another(crafted: Crafted) -> None:
    result = cloudops("history", "--json", "--pipeline", str(crafted.variant))
    # What could be read is printed; the guard's refusal of prod is the exit code.
    assert_clean_failure(result, 3, "refused to read the promotion history of prod")
    document = json.loads(result.stdout)
    assert "belong to account 333333333333" in document["unreadable"]["prod"]
    assert {r["destination_account"] for r in document["records"]} <= {"qa", "preprod"}
