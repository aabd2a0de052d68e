"""Backfill's choice of tags (pipeline/backfill.py): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from cloudops.errors import InputError, RefusedError
from cloudops.pipeline.backfill import (
    MAX_PATTERN,
    SourceImage,
    compile_match,
    list_images,
    select_tags,
)

D1, D2, D3 = (f"sha256:{c * 64}" for c in "123")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _source(*tags: str, digest: str = D1, pushed: datetime | None = T0) -> list[SourceImage]:
    return [SourceImage(tag, digest, pushed) for tag in tags]


def test_missing_tags_are_copied_present_ones_are_already_there() -> None:
    plan = select_tags(_source("8.5.0", "8.6.0", "8.4.0"), {"8.5.0": D1})
    assert [(t.tag, t.action) for t in plan.tags] == [
        ("8.6.0", "copy"),
        ("8.5.0", "already-there"),
        ("8.4.0", "copy"),
    ]
    assert [t.tag for t in plan.to_promote] == ["8.6.0", "8.4.0"]


def test_a_tag_naming_another_digest_at_the_destination_is_refused_and_kept_in_the_batch() -> None:
    plan = select_tags(_source("1.0", "1.1"), {"1.0": D2})
    [refused] = plan.of("refused")
    assert (refused.tag, refused.source_digest, refused.destination_digest) == ("1.0", D1, D2)
    assert [t.tag for t in plan.to_promote] == ["1.1", "1.0"]  # refused there, and recorded


def test_newest_first_by_the_version_sort_of_status() -> None:
    tags = ["1.9", "1.10", "1.10-rc1", "v2.0", "latest", "abc123", "1.10-1"]
    plan = select_tags(_source(*tags), {})
    assert [t.tag for t in plan.tags] == ["v2.0", "1.10-1", "1.10", "1.10-rc1", "1.9", "latest", "abc123"]


def test_match_is_a_full_match() -> None:
    source = _source("8.5.0", "8.5.1", "18.5.0", "8.5.0-rc1")
    plan = select_tags(source, {}, match=compile_match(r"8\.5\.\d+"))
    assert [t.tag for t in plan.tags] == ["8.5.1", "8.5.0"]
    assert plan.not_matched == 2


def test_since_keeps_images_pushed_at_or_after_it() -> None:
    source = [
        SourceImage("1", D1, T0 - timedelta(seconds=1)),
        SourceImage("2", D2, T0),
        SourceImage("3", D3, T0 + timedelta(days=1)),
        SourceImage("4", D3, None),  # no push time: cannot be shown to be new enough
    ]
    plan = select_tags(source, {}, since=T0)
    assert [t.tag for t in plan.tags] == ["3", "2"]
    assert plan.older == 2


def test_match_and_since_together_and_the_counts_of_what_they_left_out() -> None:
    source = [*_source("a1", "b1"), SourceImage("a2", D2, T0 - timedelta(days=9))]
    plan = select_tags(source, {"a1": D1}, match=compile_match("a.*"), since=T0 - timedelta(days=7))
    assert [(t.tag, t.action) for t in plan.tags] == [("a1", "already-there")]
    assert (plan.not_matched, plan.older, plan.to_promote) == (1, 1, ())


def test_a_tag_listed_twice_counts_once_and_nothing_chosen_is_an_empty_plan() -> None:
    plan = select_tags([*_source("1.0"), *_source("1.0", digest=D2)], {})
    assert [(t.tag, t.source_digest) for t in plan.tags] == [("1.0", D1)]
    assert select_tags([], {"1.0": D1}).tags == ()


def test_the_plan_as_json() -> None:
    plan = select_tags(_source("2", "1", "0"), {"1": D1, "0": D2})
    document = plan.as_dict()
    assert (document["copy"], document["already_there"], document["refused"]) == (["2"], ["1"], ["0"])
    assert document["tags"][0] == {
        "tag": "2",
        "action": "copy",
        "source_digest": D1,
        "destination_digest": None,
        "pushed_at": "2024-05-01T12:00:00+00:00",
    }


@pytest.mark.parametrize("pattern", ["(", "[a-", "*", "a{2,1}", "(?P<x>a)(?P<x>b)"])
def test_an_invalid_regex_is_input_error(pattern: str) -> None:
    with pytest.raises(InputError, match="not a valid regular expression"):
        compile_match(pattern)


def test_a_long_regex_is_refused_before_it_is_compiled() -> None:
    assert compile_match("a" * MAX_PATTERN) is not None
    with pytest.raises(InputError, match=f"at most {MAX_PATTERN}"):
        compile_match("a" * (MAX_PATTERN + 1))
    assert compile_match(None) is None


class _Paginator:
    def __init__(self, pages: list[dict[str, Any]]):
        self.pages = pages
        self.kwargs: dict[str, Any] = {}

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.kwargs = kwargs
        return self.pages


def _session(pages: list[dict[str, Any]]) -> Any:
    paginator = _Paginator(pages)
    client = SimpleNamespace(get_paginator=lambda name: paginator if name == "describe_images" else None)
    account = SimpleNamespace(account_id="111111111111")
    return SimpleNamespace(name="build", account=account, client=lambda service: client), paginator


def test_listing_reads_every_page_drops_invalid_names_and_keeps_push_times_in_utc() -> None:
    local = datetime(2024, 5, 1, 14, 0, tzinfo=UTC).astimezone()  # boto3 answers in local time
    pages = [
        {"imageDetails": [{"imageDigest": D1, "imageTags": ["1.0", "one"], "imagePushedAt": local}]},
        {
            "imageDetails": [
                {"imageDigest": D2, "imageTags": ["-bad", "2.0"]},
                {"imageDigest": "md5:nope", "imageTags": ["3.0"]},
            ]
        },
    ]
    session, paginator = _session(pages)
    found = list_images(session, "ep/cortex")
    assert [(i.tag, i.digest) for i in found.images] == [("1.0", D1), ("one", D1), ("2.0", D2)]
    assert found.images[0].pushed_at == datetime(2024, 5, 1, 14, 0, tzinfo=UTC)
    assert found.images[0].pushed_at.tzinfo is UTC
    assert found.images[2].pushed_at is None
    assert found.invalid == 2
    assert paginator.kwargs["filter"] == {"tagStatus": "TAGGED"}
    assert paginator.kwargs["registryId"] == "111111111111"


def test_listing_more_tags_than_the_bound_is_refused() -> None:
    details = [{"imageDigest": D1, "imageTags": [f"t{i}"]} for i in range(6)]
    session, _ = _session([{"imageDetails": details[:3]}, {"imageDetails": details[3:]}])
    assert len(list_images(session, "ep/cortex", limit=6).images) == 6
    with pytest.raises(RefusedError, match="more than 5 tags"):
        list_images(session, "ep/cortex", limit=5)
