"""The status matrix (pure): marks, newest order, JSON shape, the HTML page, history filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.errors import InputError
from cloudops.pipeline.history import HistoryRead, filter_records, parse_since
from cloudops.pipeline.records import PromotionRecord, ReadRecord
from cloudops.report.html import render_html
from cloudops.report.matrix import compute_matrix, newest_first, version_key
from cloudops.report.model import PACKAGE_ROW, AccountStatus, Artifact, Holding, Observation

STAGES = ("build", "qa", "preprod", "prod")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def digest(name: str) -> str:
    return "sha256:" + (name.encode().hex() * 64)[:64]


def held(*tags: str, other: str = "") -> Holding:
    return Holding(tuple(Artifact(t, digest(t + other)) for t in tags))


def accounts(**errors: str) -> dict[str, AccountStatus]:
    return {
        name: AccountStatus(name, str(n) * 12, "us-west-2", errors.get(name))
        for n, name in enumerate(STAGES, start=1)
    }


def matrix(holdings: dict[str, Holding], **errors: str):  # type: ignore[no-untyped-def]
    observation = Observation(STAGES, accounts(**errors), (("image", "ep/cortex", holdings),), NOW)
    return compute_matrix(observation)


def marks(holdings: dict[str, Holding], **errors: str) -> dict[str, str]:
    return {c.stage: c.mark for c in matrix(holdings, **errors).rows[0].cells}


def test_versions_sort_like_versions() -> None:
    tags = ["1.10", "1.9", "v1.2", "1.0-rc1", "1.0", "1.0-1", "latest", "2.0.0-SNAPSHOT", "2.0.0"]
    ordered = sorted(tags, key=version_key)
    assert ordered == ["latest", "1.0-rc1", "1.0", "1.0-1", "v1.2", "1.9", "1.10", "2.0.0-SNAPSHOT", "2.0.0"]
    assert [a.tag for a in newest_first([Artifact("8.5.0", "d1"), Artifact("8.10.0", "d2")])] == [
        "8.10.0",
        "8.5.0",
    ]


def test_same_behind_missing_and_source() -> None:
    found = marks({"build": held("1.0", "1.1"), "qa": held("1.0"), "preprod": held("1.0"), "prod": held()})
    assert found == {"build": "source", "qa": "behind", "preprod": "same", "prod": "missing"}
    qa = matrix({"build": held("1.0", "1.1"), "qa": held("1.0"), "preprod": held(), "prod": held()}).rows[0]
    assert qa.cell("qa").pending == ("1.1",) and qa.cell("qa").compared_with == "build"
    assert qa.cell("preprod").pending == ("1.0",)  # missing, with what waits upstream


def test_a_skipped_older_version_is_not_behind() -> None:
    cell = matrix({"build": held("1.0", "1.1", "1.2"), "qa": held("1.0", "1.2")}).rows[0].cell("qa")
    assert (cell.mark, cell.pending) == ("same", ())


def test_drift_is_loudest_and_found_against_any_earlier_stage() -> None:
    holdings = {
        "build": held("2.0"),
        "qa": held("2.0", "2.1"),  # 2.1 was pushed into qa directly: not upstream
        "preprod": held("2.0", other="x"),  # same tag, other content
        "prod": held("2.1", other="y"),  # qa has 2.1 with another digest, preprod lacks it
    }
    row = matrix(holdings).rows[0]
    assert {c.stage: c.mark for c in row.cells} == {
        "build": "source",
        "qa": "same",
        "preprod": "drift",
        "prod": "drift",
    }
    [drift] = row.cell("preprod").drift
    assert (drift.tag, drift.upstream_stage, drift.upstream_digest) == ("2.0", "qa", digest("2.0"))
    assert row.cell("prod").drift[0].upstream_stage == "qa"  # skipped preprod, which lacks 2.1
    assert row.cell("qa").not_upstream == ("2.1",)


def test_unreachable_accounts_say_why_and_the_next_stage_compares_further_up() -> None:
    row = matrix(
        {"build": held("1.0", "1.1"), "qa": held("1.0"), "preprod": held("1.0"), "prod": held("1.0")},
        preprod="refusing to read: credentials belong to account 222222222222",
    ).rows[0]
    assert row.cell("preprod").mark == "unreachable"
    assert "222222222222" in (row.cell("preprod").reason or "")
    prod = row.cell("prod")
    assert (prod.mark, prod.compared_with) == ("same", "qa")
    assert "preprod unreadable: compared with qa" in (prod.reason or "")


def test_nothing_readable_upstream_is_unknown_not_same() -> None:
    found = marks({"qa": held("1.0")}, build="no credentials")
    assert found["build"] == "unreachable" and found["qa"] == "unknown"


def test_a_repository_that_could_not_be_listed_is_unreachable_alone() -> None:
    found = marks(
        {"build": held("1.0"), "qa": Holding(error="AccessDeniedException"), "preprod": held("1.0")}
    )
    assert found["qa"] == "unreachable" and found["preprod"] == "same"


def test_package_row_marks_the_current_version() -> None:
    holdings = {
        "build": Holding((Artifact("8.5.0", digest("a")), Artifact("8.6.0", digest("b"), current=True))),
        "qa": Holding((Artifact("8.5.0", digest("a"), current=True),)),
    }
    observation = Observation(STAGES, accounts(), (("package", PACKAGE_ROW, holdings),), NOW)
    row = compute_matrix(observation).rows[0]
    assert row.cell("build").current == "8.6.0"
    assert (row.cell("qa").mark, row.cell("qa").current, row.cell("qa").pending) == (
        "behind",
        "8.5.0",
        ("8.6.0",),
    )


def test_json_shape() -> None:
    document = matrix(
        {"build": held("1.0", "1.1"), "qa": held("1.0"), "preprod": held()}, prod="gone"
    ).as_dict()
    assert document["stages"] == list(STAGES)
    assert document["accounts"]["prod"] == {
        "account_id": "444444444444",
        "region": "us-west-2",
        "reachable": False,
        "error": "gone",
    }
    qa = document["rows"][0]["cells"]["qa"]
    assert qa["mark"] == "behind" and qa["pending"] == ["1.1"] and qa["pending_count"] == 1
    assert qa["newest"] == [{"tag": "1.0", "digest": digest("1.0")}]
    assert document["summary"]["behind"] == 1 and document["summary"]["unreachable"] == 1


tag_text = st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}", fullmatch=True)


@given(st.sets(tag_text, min_size=1, max_size=12))
def test_a_stage_holding_what_upstream_holds_is_same_and_one_newer_upstream_tag_is_behind(
    tags: set[str],
) -> None:
    newest = max(tags, key=version_key)
    assert marks({"build": held(*tags), "qa": held(*tags)})["qa"] == "same"
    newer = newest + ".1"  # sorts above every tag of the set
    cell = matrix({"build": held(*tags, newer), "qa": held(*tags)}).rows[0].cell("qa")
    assert (cell.mark, cell.pending) == ("behind", (newer,))


def _record(when: datetime, repository: str | None, result: str = "promoted") -> PromotionRecord:
    return PromotionRecord(
        id=f"{when:%Y%m%dT%H%M%S}-{repository}",
        kind="image" if repository else "package",
        when=when.isoformat(timespec="seconds"),
        who="arn:aws:sts::222222222222:assumed-role/cloudops/x (jenkins)",
        source_account="build",
        source_account_id="111111111111",
        destination_account="qa",
        destination_account_id="222222222222",
        repository=repository,
        tag="1.0" if repository else None,
        version=None if repository else "8.5.0",
        result=result,  # type: ignore[arg-type]
        error="tags never move" if result == "refused" else None,
    )


def test_html_escapes_everything_and_fetches_nothing() -> None:
    evil = '<script>alert("x")</script>'
    holdings = {"build": held(evil, "1.0"), "qa": held("1.0")}
    observation = Observation(
        STAGES, accounts(prod=f"error {evil}"), (("image", "ep/cortex", holdings),), NOW
    )
    records = [_record(NOW, "ep/cortex"), _record(NOW, "ep/<b>x</b>", "refused")]
    history = HistoryRead(
        records=[ReadRecord(r, r.destination_account, "cloudops/history/" + r.key, NOW) for r in records],
        unreadable={"prod": "unreachable & gone"},
    )
    page = render_html(compute_matrix(observation), history, title="status <of> pipeline")
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<b>x</b>" not in page and "status &lt;of&gt; pipeline" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert 'data-row="ep/cortex" data-stage="qa" data-mark="same"' in page
    assert 'data-stage="prod" data-mark="unreachable"' in page
    assert "unreachable &amp; gone" in page and "tags never move" in page


def test_since_accepts_dates_and_spans() -> None:
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("12h", NOW) == NOW - timedelta(hours=12)
    assert parse_since("2w", NOW) == NOW - timedelta(weeks=2)
    assert parse_since("2024-04-01") == datetime(2024, 4, 1, tzinfo=UTC)
    assert parse_since("2024-04-01T10:00:00Z") == datetime(2024, 4, 1, 10, tzinfo=UTC)
    with pytest.raises(InputError, match="neither an ISO date nor a span"):
        parse_since("last tuesday")


def test_history_filters_keep_failed_and_refused_records() -> None:
    records = [
        _record(NOW - timedelta(days=10), "ep/cortex"),
        _record(NOW - timedelta(days=1), "ep/cortex", "refused"),
        _record(NOW - timedelta(days=1), "ep/search", "failed"),
        _record(NOW - timedelta(days=1), None),
    ]
    recent = filter_records(records, since=NOW - timedelta(days=7))
    assert [(r.repository, r.result) for r in recent] == [
        ("ep/cortex", "refused"),
        ("ep/search", "failed"),
        (None, "promoted"),
    ]
    cortex = filter_records(records, repositories=["ep/cortex"])
    assert [r.result for r in cortex] == ["promoted", "refused"]
