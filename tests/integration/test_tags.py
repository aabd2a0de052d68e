"""`cloudops tags` against real distribution registries: order, JSON, pagination, errors."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from cloudops.refs import parse_reference
from cloudops.registry import RegistrySession, TransportSettings
from cloudops.report.tags import TagList, list_repository_tags
from tests.conftest import Registry
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.images import Pusher, make_image, random_layer
from tests.support.run import assert_clean_failure, cloudops

SHA = "3f2a9c1"
PUSHED = ["8.5.0", "8.10.0", "8.6.0-rc1", "latest", SHA, "8.6.0"]
# Numbers compare as numbers and above words (report/matrix.py version_key), so a SHA
# that starts with a digit sorts as a small version: the order says nothing about its age.
NEWEST_FIRST = ["8.10.0", "8.6.0", "8.6.0-rc1", "8.5.0", SHA, "latest"]


def _push_tags(
    registry: Registry, repository: str, tags: list[str], auth: tuple[str, str] | None = None
) -> None:
    pusher = Pusher(registry.url, auth=auth)
    image = make_image([random_layer(1024, seed=7)])
    pusher.push(repository, tags[0], image)
    for tag in tags[1:]:
        pusher.push_manifest(repository, tag, image.manifest, image.media_type)


def _list(host: str, ref: str, **kwargs: int) -> TagList:
    async def go() -> TagList:
        async with RegistrySession(None, TransportSettings.build([host])) as pool:
            return await list_repository_tags(pool, parse_reference(ref, default_tag=None), **kwargs)

    return asyncio.run(go())


def test_tags_are_listed_newest_first_by_the_status_version_sort(registry: Registry) -> None:
    _push_tags(registry, "ep/cortex", PUSHED)

    result = cloudops("tags", f"{registry.host}/ep/cortex", "--insecure-registry", registry.host, check=True)

    lines = result.stderr.splitlines()
    assert lines[: len(NEWEST_FIRST)] == NEWEST_FIRST, result.stderr
    assert f"6 tags in {registry.host}/ep/cortex, newest first" in result.stderr
    assert result.stdout == ""


def test_json_is_one_document_on_stdout(registry: Registry) -> None:
    _push_tags(registry, "ep/cortex", PUSHED)

    # A tag (or digest) on the reference is accepted and ignored: the repository's tags.
    result = cloudops(
        "tags", f"{registry.host}/ep/cortex:8.5.0", "--json", "--insecure-registry", registry.host, check=True
    )

    assert json.loads(result.stdout) == {
        "repository": f"{registry.host}/ep/cortex",
        "tags": NEWEST_FIRST,
        "referrer_tags": [],
        "invalid_tags": 0,
        "truncated": False,
    }
    assert "8.10.0" not in result.stderr  # the tags themselves only on stdout with --json


def _page(proxy: FaultProxy, query: str, tags: list[str], next_query: str | None, times: int = 1) -> None:
    """The proxy answers ``tags/list?QUERY`` with one page of ``tags`` linking ``next_query``."""
    headers = {"Content-Type": "application/json"}
    if next_query is not None:
        headers["Link"] = f'</v2/ep/search/tags/list?{next_query}>; rel="next"'
    body = json.dumps({"name": "ep/search", "tags": tags}).encode()
    proxy.add(
        Rule(
            "body",
            path=re.escape(f"/tags/list?{query}") + "$",
            method="GET",
            status=200,
            headers=headers,
            body=body,
            times=times,
        )
    )


def test_every_page_is_read_when_the_registry_paginates(registry: Registry) -> None:
    # docker-registry 2.8 ignores n= and answers every tag at once; a proxy in front of it
    # answers the first two pages, linking the registry's own (last) page.
    _push_tags(registry, "ep/search", ["1.0.0", "1.1.0"])
    with fault_proxy(registry.url) as proxy:
        _page(proxy, "n=1000", ["1.10.0", "1.2.0"], "n=1000&last=1.2.0")
        _page(proxy, "n=1000&last=1.2.0", ["1.9.0"], "n=1000&last=1.9.0")
        result = cloudops(
            "tags", f"{proxy.host}/ep/search", "--json", "--insecure-registry", proxy.host, check=True
        )

    assert json.loads(result.stdout)["tags"] == ["1.10.0", "1.9.0", "1.2.0", "1.1.0", "1.0.0"]


def test_reading_stops_at_the_bound_and_says_so(registry: Registry) -> None:
    _push_tags(registry, "ep/search", ["1.0"])
    with fault_proxy(registry.url) as proxy:
        # A registry that pages forever: every page links itself.
        _page(proxy, "n=4", ["2.0", "2.1", "2.2", "2.3"], "n=4", times=50)
        found = _list(proxy.host, f"{proxy.host}/ep/search", page_size=4, limit=10)
        pages = sum(1 for entry in proxy.log if "/tags/list" in entry.path)

    assert found.truncated and found.tags == ("2.3", "2.2", "2.1", "2.0")
    assert pages == 3  # 12 tags read > 10: stopped


def test_a_page_without_tags_ends_the_list(registry: Registry) -> None:
    _push_tags(registry, "ep/search", ["1.0"])
    with fault_proxy(registry.url) as proxy:
        _page(proxy, "n=4", [], "n=4", times=50)
        found = _list(proxy.host, f"{proxy.host}/ep/search", page_size=4)
        pages = sum(1 for entry in proxy.log if "/tags/list" in entry.path)

    assert found.tags == () and not found.truncated and pages == 1


def test_names_that_are_not_tags_are_counted_never_printed(registry: Registry) -> None:
    _push_tags(registry, "ep/search", ["1.0"])
    hostile = ["\x1b]52;c;aGk=\x07", "[link=http://evil]x", ".hidden", "x" * 129, "a b", "1.0\n2.0"]
    with fault_proxy(registry.url) as proxy:
        _page(proxy, "n=1000", ["2.0", *hostile, "2.0"], None, times=2)
        human = cloudops("tags", f"{proxy.host}/ep/search", "--insecure-registry", proxy.host, check=True)
        as_json = cloudops(
            "tags", f"{proxy.host}/ep/search", "--json", "--insecure-registry", proxy.host, check=True
        )

    assert human.stderr.splitlines()[0] == "2.0"
    assert "6 invalid tags not shown" in human.stderr
    for name in hostile:
        assert name not in human.stderr and name not in human.stdout
    assert "\x1b" not in human.stderr and "evil" not in human.stderr
    doc = json.loads(as_json.stdout)
    assert doc["tags"] == ["2.0"] and doc["invalid_tags"] == 6
    assert "6 invalid tags not shown" in as_json.stderr


def test_a_missing_repository_exits_2_with_a_fix(registry: Registry) -> None:
    _push_tags(registry, "ep/cortex", ["1.0"])

    result = cloudops("tags", f"{registry.host}/ep/nosuch", "--insecure-registry", registry.host)

    assert_clean_failure(result, 2, f"{registry.host}/ep/nosuch does not exist", "fix:")
    assert result.stdout == ""


@pytest.mark.parametrize("password", ["wrong-Password-9", None])
def test_wrong_or_missing_credentials_exit_2(make_registry, password: str | None) -> None:  # type: ignore[no-untyped-def]
    auth = ("builder", "right-Password-1")
    registry: Registry = make_registry(auth=auth)
    _push_tags(registry, "ep/cortex", ["1.0"], auth=auth)
    env = {
        "CLOUDOPS_SRC_CREDS": f"builder:{password}" if password else "",
        "REGISTRY_AUTH_FILE": "/nonexistent",
    }

    result = cloudops("tags", f"{registry.host}/ep/cortex", "--insecure-registry", registry.host, env=env)

    assert_clean_failure(result, 2, "fix:")
    assert "right-Password-1" not in result.stderr
    if password:
        assert password not in result.stderr

    env["CLOUDOPS_SRC_CREDS"] = "builder:right-Password-1"
    ok = cloudops(
        "tags", f"{registry.host}/ep/cortex", "--json", "--insecure-registry", registry.host, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tags"] == ["1.0"]


def test_an_unreachable_registry_exits_1(registry: Registry) -> None:
    host = registry.host
    registry.process.stop()

    result = cloudops(
        "tags",
        f"{host}/ep/cortex",
        "--insecure-registry",
        host,
        env={"CLOUDOPS_RETRY_ATTEMPTS": "1", "CLOUDOPS_RETRY_SECONDS": "2"},
    )

    assert_clean_failure(result, 1, host)
