from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudops.refs import (
    EcrRegistry,
    Reference,
    ReferenceError,
    ecr_host,
    parse_ecr_host,
    parse_reference,
    parse_s3_uri,
    validate_tag,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:5000/ep/cortex:1.0", Reference("localhost:5000", "ep/cortex", "1.0")),
        ("localhost/ep/cortex", Reference("localhost", "ep/cortex", "latest")),
        (
            "111111111111.dkr.ecr.us-west-2.amazonaws.com/ep/a/b/c:v_1.2-rc",
            Reference("111111111111.dkr.ecr.us-west-2.amazonaws.com", "ep/a/b/c", "v_1.2-rc"),
        ),
        (f"reg.example.com/ep/search@{DIGEST}", Reference("reg.example.com", "ep/search", None, DIGEST)),
        (
            f"reg.example.com:443/ep/search:2@{DIGEST}",
            Reference("reg.example.com:443", "ep/search", "2", DIGEST),
        ),
        ("docker://127.0.0.1:5000/x:1", Reference("127.0.0.1:5000", "x", "1")),
        ("[::1]:5000/x:1", Reference("[::1]:5000", "x", "1")),
    ],
)
def test_parses_valid_references(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ep/cortex:1", "names no registry host"),
        ("cortex", "names no registry host"),
        ("", "invalid image reference"),
        ("localhost:5000/EP/cortex:1", "invalid repository"),
        ("localhost:5000/ep/cortex:-bad", "invalid tag"),
        ("localhost:5000/ep/cortex:" + "a" * 129, "invalid tag"),
        ("localhost:5000/ep/cortex@sha256:abc", "invalid digest"),
        ("localhost:99999/ep/cortex:1", "invalid port"),
        ("local host:5000/x:1", "invalid image reference"),
        ("localhost:5000/ep//cortex:1", "invalid repository"),
        ("localhost:5000/", "invalid repository"),
    ],
)
def test_refuses_malformed_references_with_one_error_type(text: str, message: str) -> None:
    with pytest.raises(ReferenceError) as caught:
        parse_reference(text)
    assert message in str(caught.value)
    assert caught.value.kind == "input"


def test_without_default_tag_a_bare_name_has_no_tag() -> None:
    assert parse_reference("localhost:5000/x", default_tag=None).tag is None


def test_ecr_hosts_give_account_and_region() -> None:
    assert parse_ecr_host("111111111111.dkr.ecr.us-west-2.amazonaws.com") == EcrRegistry(
        "111111111111", "us-west-2"
    )
    assert parse_ecr_host("222222222222.dkr.ecr-fips.us-gov-west-1.amazonaws.com") == EcrRegistry(
        "222222222222", "us-gov-west-1"
    )
    assert parse_ecr_host("333333333333.dkr.ecr.cn-north-1.amazonaws.com.cn") == EcrRegistry(
        "333333333333", "cn-north-1"
    )
    assert parse_ecr_host("localhost:5000") is None
    assert parse_ecr_host("11111111111.dkr.ecr.us-west-2.amazonaws.com") is None
    assert ecr_host("111111111111", "eu-central-1") == "111111111111.dkr.ecr.eu-central-1.amazonaws.com"
    with pytest.raises(ReferenceError):
        ecr_host("12345", "us-west-2")


def test_s3_uris() -> None:
    uri = parse_s3_uri("s3://ep-cloudops-111111111111/deployment-package/pkg.zip")
    assert (uri.bucket, uri.key) == ("ep-cloudops-111111111111", "deployment-package/pkg.zip")
    for bad in ("s3://", "s3://Bad_Bucket/k", "http://b/k", "s3://bucket"):
        with pytest.raises(ReferenceError):
            parse_s3_uri(bad)


# --- properties ------------------------------------------------------------------------

alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
separator = st.sampled_from([".", "_", "__", "-", "--"])
component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    alnum,
    st.lists(st.tuples(separator, alnum), max_size=2),
)
repository = st.lists(component, min_size=1, max_size=4).map("/".join)
host = st.one_of(
    st.just("localhost"),
    st.builds(lambda a, b: f"{a}.{b}", alnum, st.sampled_from(["com", "io", "example.org"])),
    st.builds(lambda n: f"111111111111.dkr.ecr.us-west-{n}.amazonaws.com", st.integers(1, 2)),
)
port = st.one_of(st.none(), st.integers(1, 65535))
tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
digest = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@given(host, port, repository, st.one_of(st.none(), tag), st.one_of(st.none(), digest))
def test_reference_round_trips_through_its_text(
    host_: str, port_: int | None, repo: str, tag_: str | None, digest_: str | None
) -> None:
    registry = f"{host_}:{port_}" if port_ else host_
    if len(f"{registry}/{repo}") > 255:
        return
    reference = Reference(registry, repo, tag_, digest_)
    parsed = parse_reference(str(reference), default_tag=None)
    assert parsed == reference
    assert str(parsed) == str(reference)


@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_fails_with_reference_error(text: str) -> None:
    try:
        parsed = parse_reference(text)
    except ReferenceError:
        return
    assert parse_reference(str(parsed)) == parsed


@pytest.mark.parametrize(
    "text", ["localhost:5000/x:1.0\n", "localhost:5000/x\n:1", "localhost:5000/x@sha256:" + "a" * 64 + "\n"]
)
def test_trailing_newlines_are_not_accepted(text: str) -> None:
    with pytest.raises(ReferenceError):
        parse_reference(text)
    with pytest.raises(ReferenceError):
        validate_tag("1.0\n")
