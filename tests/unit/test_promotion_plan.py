"""The promotion plan (issue 14) is pure: facts in, a hashed plan out, no registry or AWS."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.errors import InputError
from cloudops.pipeline.plan import (
    MAX_IMAGES,
    ImageFacts,
    PackageFacts,
    PlanRoute,
    PromotionFacts,
    PromotionPlan,
    build_plan,
    changes_since,
    plan_rows,
)

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
WHO = "arn:aws:sts::222222222222:assumed-role/cloudops/jenkins"
ROUTE = PlanRoute(
    release="2026.11",
    source="build",
    source_id="111111111111",
    destination="qa",
    destination_id="222222222222",
)
GUARDS = (
    "stage order build -> qa",
    "account guard qa: arn:aws:sts::222222222222:assumed-role/cloudops/jenkins",
    "account guard build: arn:aws:sts::111111111111:assumed-role/cloudops/reader",
)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def sha(n: int) -> str:
    return f"{n:064x}"


def image(repository: str = "ep/cortex", tag: str = "8.5.0", **kw: Any) -> ImageFacts:
    fields: dict[str, Any] = {"source": digest(1), "destination": None, "bytes": 0, **kw}
    return ImageFacts(repository, tag, **fields)


def facts(*images: ImageFacts, package: PackageFacts | None = None, **kw: Any) -> PromotionFacts:
    return PromotionFacts(kw.pop("route", ROUTE), images, package, kw.pop("checks", GUARDS))


def plan_of(f: PromotionFacts, *, at: datetime = WHEN, by: str = WHO) -> PromotionPlan:
    return build_plan(f, planned_at=at, planned_by=by)


def release() -> PromotionFacts:
    """A realistic release: one image of each status and a package to copy."""
    return facts(
        image("ep/cortex", source=digest(1), bytes=200 * 1024 * 1024),
        image("ep/search", source=digest(2), destination=digest(2), bytes=5),
        image("ep/batch", source=digest(3), destination=None, bytes=1024),
        package=PackageFacts("8.5.0", sha(10), 3 * 1024 * 1024, None),
    )


def refused(document: object) -> str:
    with pytest.raises(InputError) as caught:
        PromotionPlan.from_json(document)
    assert caught.value.kind == "input"
    return str(caught.value)


# -- statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pinned", "source", "destination", "status"),
    [
        (None, digest(1), digest(1), "present"),
        (None, digest(1), None, "copy"),
        (None, digest(1), digest(2), "refused-tag-move"),
        (None, None, None, "refused-missing"),
        (None, None, digest(1), "refused-missing"),
        (digest(2), digest(1), None, "refused-pin-mismatch"),
        (digest(2), digest(1), digest(1), "refused-pin-mismatch"),  # the release file is wrong
        (digest(1), digest(1), None, "copy"),
        (digest(1), None, None, "refused-missing"),
    ],
)
def test_every_image_status(
    pinned: str | None, source: str | None, destination: str | None, status: str
) -> None:
    plan = plan_of(facts(image(pinned=pinned, source=source, destination=destination)))
    assert plan.images[0].status == status
    assert plan.ok is (status in ("present", "copy"))


@pytest.mark.parametrize(
    ("source", "destination", "status"),
    [
        (sha(1), sha(1), "present"),
        (sha(1), None, "copy"),
        (None, None, "refused-missing"),
        (sha(1), sha(2), "refused-version-conflict"),
    ],
)
def test_every_package_status(source: str | None, destination: str | None, status: str) -> None:
    package = PackageFacts("8.5.0", source, 10 if source else None, destination)
    plan = plan_of(facts(package=package))
    assert plan.package is not None and plan.package.status == status
    assert plan.ok is (status in ("present", "copy"))


def test_bytes_to_move_counts_only_what_is_copied() -> None:
    plan = plan_of(release())
    assert plan.ok and plan.refusals == []
    assert plan.bytes_to_move == 200 * 1024 * 1024 + 1024 + 3 * 1024 * 1024  # not ep/search's 5


def test_refusals_name_the_item_and_the_fix() -> None:
    plan = plan_of(
        facts(
            image("ep/cortex", source=digest(1), destination=digest(2)),
            image("ep/search", source=None),
            image("ep/batch", source=digest(3), pinned=digest(4)),
            package=PackageFacts("8.5.0", sha(1), 10, sha(2)),
        )
    )
    assert not plan.ok
    text = "\n".join(plan.refusals)
    assert len(plan.refusals) == 4
    assert "ep/cortex:8.5.0 in qa already names sha256:000000000000…" in text and "tags never move" in text
    assert "ep/search:8.5.0 does not exist in build" in text
    assert "ep/batch:8.5.0 in build is" in text and "fix the digest in the release file" in text
    assert "package 8.5.0 in qa" in text and "publish a new version" in text
    missing = plan_of(facts(package=PackageFacts("8.6.0", None, None, None)))
    assert "package 8.6.0 is not in build's bucket" in missing.refusals[0]
    assert "cloudops package publish" in missing.refusals[0]


def test_each_check_is_listed_once() -> None:
    guard = "account guard qa: arn:aws:sts::222222222222:assumed-role/cloudops/jenkins"
    many = facts(image("ep/cortex"), image("ep/search"), checks=["stage order build -> qa"] + [guard] * 2)
    assert plan_of(many).checks == ("stage order build -> qa", guard)


def test_images_are_listed_in_name_order() -> None:
    plan = plan_of(facts(image("ep/search"), image("ep/cortex", "9"), image("ep/cortex", "10")))
    assert [i.name for i in plan.images] == ["ep/cortex:10", "ep/cortex:9", "ep/search:8.5.0"]


# -- the hash ---------------------------------------------------------------------------


def test_the_hash_is_of_the_canonical_content() -> None:
    """Pinned: a change to what is hashed changes every stored plan's hash (bump FORMAT)."""
    plan = plan_of(
        facts(image("ep/cortex", bytes=99), package=PackageFacts("8.5.0", sha(10), 7, None), checks=["x"])
    )
    canonical = (
        '{"format":1,"images":[{"destination":null,"pinned":null,"repository":"ep/cortex",'
        f'"source":"{digest(1)}","status":"copy","tag":"8.5.0"}}],'
        f'"package":{{"destination_sha256":null,"source_sha256":"{sha(10)}","status":"copy","version":"8.5.0"}},'
        '"route":{"destination":"qa","destination_id":"222222222222","release":"2026.11",'
        '"source":"build","source_id":"111111111111"}}'
    )
    assert plan.plan_hash == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert plan.plan_hash == plan.content_hash()


def test_the_same_facts_in_another_order_give_the_same_hash() -> None:
    f = release()
    shuffled = list(f.images)
    random.Random(7).shuffle(shuffled)
    reversed_ = replace(f, images=tuple(reversed(f.images)), checks=tuple(reversed(f.checks)))
    hashes = {plan_of(x).plan_hash for x in (f, replace(f, images=shuffled), reversed_)}
    assert len(hashes) == 1


def test_times_identities_checks_and_estimates_do_not_change_the_hash() -> None:
    f = release()
    first = plan_of(f)
    other_bytes = replace(f, images=[replace(i, bytes=i.bytes + 1) for i in f.images], checks=["other"])
    package = f.package
    assert package is not None
    other_bytes = replace(other_bytes, package=replace(package, source_size=1))
    later = plan_of(other_bytes, at=WHEN + timedelta(days=3), by="arn:aws:iam::222222222222:user/someone")
    assert later.plan_hash == first.plan_hash
    assert later != first  # the plan itself records them


@pytest.mark.parametrize(
    "change",
    [
        lambda f: replace(f, images=[replace(f.images[0], source=digest(9)), *f.images[1:]]),
        lambda f: replace(f, images=[replace(f.images[0], destination=digest(1)), *f.images[1:]]),
        lambda f: replace(f, images=[replace(f.images[0], pinned=digest(1)), *f.images[1:]]),
        lambda f: replace(f, images=[replace(f.images[0], tag="8.5.1"), *f.images[1:]]),
        lambda f: replace(f, images=f.images[1:]),
        lambda f: replace(f, package=replace(f.package, source_sha256=sha(11))),
        lambda f: replace(f, package=replace(f.package, destination_sha256=sha(10))),
        lambda f: replace(f, package=replace(f.package, version="8.5.1")),
        lambda f: replace(f, package=None),
        lambda f: replace(f, route=ROUTE.model_copy(update={"release": "2026.12"})),
        lambda f: replace(f, route=ROUTE.model_copy(update={"destination_id": "333333333333"})),
        lambda f: replace(f, route=ROUTE.model_copy(update={"source": "dev"})),
    ],
)
def test_what_apply_would_do_differently_changes_the_hash(change: Any) -> None:
    f = release()
    assert plan_of(change(f)).plan_hash != plan_of(f).plan_hash


# -- the plan file ----------------------------------------------------------------------


def as_file(plan: PromotionPlan) -> dict[str, Any]:
    """What a plan file holds: the JSON text written and read back."""
    loaded: dict[str, Any] = json.loads(json.dumps(plan.to_json()))
    return loaded


def test_to_json_from_json_round_trip() -> None:
    plan = plan_of(
        facts(
            image("ep/cortex"),
            image("ep/search", source=None),
            package=PackageFacts("8.5.0", sha(1), 9, None),
        )
    )
    document = as_file(plan)
    assert document["format"] == 1
    assert document["ok"] is False and document["bytes_to_move"] == 9 and len(document["refusals"]) == 1
    back = PromotionPlan.from_json(document)
    assert back == plan and back.plan_hash == plan.plan_hash


def test_a_hand_edited_plan_is_refused() -> None:
    document = as_file(plan_of(release()))
    document["images"][0]["source"] = digest(99)
    document["images"][0]["destination"] = digest(99)
    document["images"][0]["status"] = "present"
    message = refused(document)
    assert "does not match its plan_hash" in message and "cloudops plan" in message


def test_a_status_that_does_not_follow_from_its_digests_is_refused() -> None:
    document = as_file(plan_of(facts(image(source=digest(1), destination=digest(2)))))
    document["images"][0]["status"] = "copy"  # a tag move passed off as a copy
    assert "status 'copy' does not follow from its digests" in refused(document)


@pytest.mark.parametrize(("key", "value"), [("ok", True), ("bytes_to_move", 1), ("refusals", [])])
def test_an_edited_summary_is_refused(key: str, value: object) -> None:
    document = as_file(plan_of(facts(image(source=None))))
    document[key] = value
    assert "it was edited" in refused(document)


@pytest.mark.parametrize("where", [(), ("route",), ("images", 0), ("package",)])
def test_an_unknown_field_is_refused(where: tuple[Any, ...]) -> None:
    document = as_file(plan_of(release()))
    target: Any = document
    for step in where:
        target = target[step]
    target["approved"] = True
    message = refused(document)
    assert "approved: unknown field" in message


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
        "a" * 64,
        12,
    ],
)
def test_a_bad_digest_is_refused(bad: object) -> None:
    document = as_file(plan_of(release()))
    document["images"][0]["source"] = bad
    message = refused(document)
    assert "images.0.source" in message
    assert "\n" not in message and "AAAA" not in message  # the value itself is never echoed


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("images", 0, "repository"), "EP/Cortex"),
        (("images", 0, "repository"), "ep/\x1b[31mcortex"),
        (("images", 0, "tag"), ".hidden"),
        (("images", 0, "tag"), "t" * 129),
        (("images", 0, "bytes"), -1),
        (("images", 0, "bytes"), True),
        (("route", "source_id"), "11111111111"),
        (("route", "destination"), "QA"),
        (("route", "release"), "2026\x1b]8;;evil\x07"),
        (("package", "source_sha256"), "sha256:" + "a" * 64),
        (("package", "version"), "../8.5.0"),
        (("planned_at",), "2026-11-02T09:30:00"),
        (("planned_by",), "x" * 513),
        (("checks",), ["ok"] * 65),
    ],
)
def test_bad_fields_are_refused(path: tuple[Any, ...], bad: object) -> None:
    document = as_file(plan_of(release()))
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = bad
    message = refused(document)
    assert ".".join(str(p) for p in path) in message
    assert "\x1b" not in message


def test_more_images_than_the_bound_are_refused_before_validation() -> None:
    document = as_file(plan_of(release()))
    document["images"] = [{"junk": i} for i in range(MAX_IMAGES + 1)]
    assert f"the plan lists {MAX_IMAGES + 1} images, more than {MAX_IMAGES}" in refused(document)


def test_the_bound_itself_is_accepted() -> None:
    many = [image("ep/cortex", f"t{n}", source=digest(n + 1)) for n in range(MAX_IMAGES)]
    plan = plan_of(facts(*many))
    assert PromotionPlan.from_json(as_file(plan)) == plan
    with pytest.raises(InputError, match="images"):
        plan_of(facts(*many, image("ep/cortex", "one-more")))


@pytest.mark.parametrize(
    "document",
    [[], "plan", None, {"format": 2}, {"format": True}, {}],
)
def test_what_is_not_a_plan_is_refused(document: object) -> None:
    assert "cloudops plan" in refused(document)


def test_a_plan_with_an_image_twice_is_refused() -> None:
    with pytest.raises(InputError, match="an image is listed twice"):
        plan_of(facts(image(), image()))
    document = as_file(plan_of(facts(image())))
    document["images"] *= 2
    assert "an image is listed twice" in refused(document)


def test_facts_that_cannot_be_planned_are_refused() -> None:
    with pytest.raises(InputError, match=r"images\.0\.source"):
        plan_of(facts(image(source="latest")))
    with pytest.raises(InputError, match="source_sha256 and source_size"):
        plan_of(facts(package=PackageFacts("8.5.0", sha(1), None, None)))
    with pytest.raises(ValueError, match="time zone"):
        plan_of(facts(image()), at=datetime(2026, 11, 2))


# -- changes since the plan ------------------------------------------------------------


def test_the_same_world_is_no_change() -> None:
    f = release()
    plan = plan_of(f)
    again = replace(f, images=[replace(i, bytes=i.bytes * 2) for i in reversed(f.images)], checks=["y"])
    assert changes_since(plan, again) == []


def one_change(f: PromotionFacts, changed: PromotionFacts) -> str:
    found = changes_since(plan_of(f), changed)
    assert len(found) == 1, found
    return found[0]


def test_a_source_tag_that_moved() -> None:
    f = facts(image(source="sha256:" + "1234" * 16))
    moved = facts(image(source="sha256:" + "abcd" * 16))
    assert one_change(f, moved) == (
        "ep/cortex:8.5.0 at build now names sha256:abcdabcdabcd… (the plan has sha256:123412341234…)"
    )


def test_a_source_tag_that_went_away() -> None:
    assert one_change(facts(image()), facts(image(source=None))) == (
        "ep/cortex:8.5.0 at build no longer exists (the plan has sha256:000000000000…)"
    )


def test_a_destination_that_now_holds_the_tag() -> None:
    assert one_change(facts(image()), facts(image(destination=digest(1)))) == (
        "qa now holds ep/cortex:8.5.0 as sha256:000000000000… (the plan expected none)"
    )


def test_a_destination_that_no_longer_holds_the_tag() -> None:
    present = facts(image(destination=digest(1)))
    assert one_change(present, facts(image())) == (
        "qa no longer holds ep/cortex:8.5.0 (the plan expected sha256:000000000000…)"
    )


def test_a_new_pin() -> None:
    assert "the release file now pins ep/cortex:8.5.0 to sha256:" in one_change(
        facts(image()), facts(image(pinned=digest(1)))
    )
    assert "the release file no longer pins ep/cortex:8.5.0" in one_change(
        facts(image(pinned=digest(1))), facts(image())
    )


def test_images_added_or_removed() -> None:
    two = facts(image("ep/cortex"), image("ep/search"))
    assert (
        one_change(facts(image("ep/cortex")), two)
        == "the release now lists ep/search:8.5.0 (the plan does not)"
    )
    assert (
        one_change(two, facts(image("ep/cortex")))
        == "the release no longer lists ep/search:8.5.0 (the plan has it)"
    )


def test_package_changes() -> None:
    f = facts(package=PackageFacts("8.5.0", sha(1), 10, None))
    assert one_change(f, facts(package=PackageFacts("8.5.0", sha(2), 10, None))) == (
        "package 8.5.0 at build now has sha256:000000000000… (the plan has sha256:000000000000…)"
    )
    assert "package 8.5.0 at build no longer exists" in one_change(
        f, facts(package=PackageFacts("8.5.0", None, None, None))
    )
    assert one_change(f, facts(package=PackageFacts("8.5.0", sha(1), 10, sha(1)))) == (
        "qa now holds package 8.5.0 as sha256:000000000000… (the plan expected none)"
    )
    assert one_change(f, facts(package=PackageFacts("8.6.0", sha(1), 10, None))) == (
        "the release now names package 8.6.0 (the plan has 8.5.0)"
    )
    assert one_change(f, facts()) == "the release now names package none (the plan has 8.5.0)"
    assert one_change(facts(), f) == "the release now names package 8.5.0 (the plan has none)"


def test_another_route() -> None:
    other = ROUTE.model_copy(update={"destination": "prod", "destination_id": "444444444444"})
    assert one_change(facts(image()), facts(image(), route=other)).startswith(
        "the route is now release 2026.11: build (111111111111) -> prod (444444444444) (the plan is for"
    )


def test_every_change_is_listed() -> None:
    f = release()
    changed = replace(
        f,
        images=[
            replace(i, source=digest(50 + n), destination=digest(60 + n)) for n, i in enumerate(f.images)
        ],
    )
    assert len(changes_since(plan_of(f), changed)) == 6


# -- the table ------------------------------------------------------------------------


def test_plan_rows() -> None:
    plan = plan_of(
        facts(
            image("ep/cortex", source=digest(1), bytes=int(123.4 * 1024 * 1024)),
            image("ep/search", source=digest(2), destination=digest(2)),
            image("ep/batch", source=digest(3), destination=digest(4)),
            image("ep/cm", source=None, pinned=digest(5)),
            image("ep/tomcat", source=digest(6), pinned=digest(7)),
            package=PackageFacts("8.5.0", sha(8), 2048, None),
        )
    )
    rows = plan_rows(plan)
    assert rows == [
        ("image", "ep/batch:8.5.0", "refused: tag would move", "sha256:000000000000…"),
        ("image", "ep/cm:8.5.0", "refused: missing at build", "sha256:000000000000…"),
        ("image", "ep/cortex:8.5.0", "copy 123.4 MiB", "sha256:000000000000…"),
        ("image", "ep/search:8.5.0", "already there", "sha256:000000000000…"),
        ("image", "ep/tomcat:8.5.0", "refused: not the pinned digest", "sha256:000000000000…"),
        ("package", "8.5.0", "copy 2.0 KiB", "sha256:000000000000…"),
    ]
    conflict = plan_of(facts(package=PackageFacts("8.5.0", sha(1), 1, sha(2))))
    assert plan_rows(conflict)[0][2] == "refused: version exists with other content"
    assert plan_rows(plan_of(facts(package=PackageFacts("8.5.0", None, None, None)))) == [
        ("package", "8.5.0", "refused: missing at build", "-")
    ]


# -- property ---------------------------------------------------------------------------

_digests = st.one_of(st.none(), st.integers(0, 3).map(digest))
_images = st.lists(
    st.builds(
        ImageFacts,
        repository=st.sampled_from(["ep/cortex", "ep/search", "ep/batch", "ep/data-pop-tool"]),
        tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        source=_digests,
        destination=_digests,
        bytes=st.integers(0, 2**40),
        pinned=_digests,
    ),
    max_size=8,
    unique_by=lambda i: (i.repository, i.tag),
)
_packages = st.one_of(
    st.none(),
    st.builds(
        lambda src, dst, size: PackageFacts("8.5.0", src, size if src else None, dst),
        st.one_of(st.none(), st.integers(0, 2).map(sha)),
        st.one_of(st.none(), st.integers(0, 2).map(sha)),
        st.integers(0, 2**40),
    ),
)


@given(images=_images, package=_packages, seed=st.integers(0, 1000))
def test_any_plan_round_trips_through_its_file_and_keeps_its_hash(
    images: list[ImageFacts], package: PackageFacts | None, seed: int
) -> None:
    plan = plan_of(facts(*images, package=package))
    back = PromotionPlan.from_json(as_file(plan))
    assert back == plan and back.plan_hash == back.content_hash() == plan.plan_hash
    shuffled = copy.copy(images)
    random.Random(seed).shuffle(shuffled)
    assert plan_of(facts(*shuffled, package=package)).plan_hash == plan.plan_hash
    assert changes_since(back, facts(*shuffled, package=package)) == []
