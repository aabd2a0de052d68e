"""The credential rule (registry/trust.py), table-driven: where a request carrying a
registry's credentials may go. The integration side is
tests/integration/test_credential_boundaries.py."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from cloudops.registry.auth import Credentials, MultiKeychain, StaticKeychain
from cloudops.registry.errors import CredentialTargetRefused
from cloudops.registry.http import HttpRequest, HttpResponse
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.transport import RegistryTransport
from cloudops.registry.trust import describe, is_insecure, on_host, refusal
from tests.support.fake_http import FakeRoundTripper, answer

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
LOCAL = "127.0.0.1:5000"

# (url, registry host, insecure hosts, purpose, expected reason or None)
CASES = [
    # the registry's own host
    (f"https://{ECR}/v2/ep/cortex/blobs/uploads/abc", ECR, (), "registry", None),
    (f"https://{ECR}:443/v2/", ECR, (), "registry", None),
    (f"HTTPS://{ECR.upper()}/v2/", ECR, (), "registry", None),
    (f"https://{ECR}:8443/v2/", ECR, (), "registry", "other-host"),
    (f"http://{ECR}/v2/ep/cortex/blobs/uploads/abc", ECR, (), "registry", "plain-http"),
    (f"http://{LOCAL}/v2/", LOCAL, (LOCAL,), "registry", None),
    (f"https://{LOCAL}/v2/", LOCAL, (LOCAL,), "registry", None),
    (f"http://{LOCAL}/v2/", LOCAL, (), "registry", "plain-http"),
    ("http://127.0.0.1:5001/v2/", LOCAL, (LOCAL,), "registry", "other-host"),
    ("http://localhost:5000/v2/", LOCAL, (LOCAL,), "registry", "other-host"),
    ("http://[::1]:5000/v2/", "[::1]:5000", ("[::1]:5000",), "registry", None),
    ("http://myreg/v2/", "myreg", ("myreg",), "registry", None),
    ("http://myreg:80/v2/", "myreg", ("myreg",), "registry", None),
    ("https://myreg:443/v2/", "myreg:443", (), "registry", None),
    # another host: refused for registry requests whatever the scheme
    ("http://127.0.0.2:5000/v2/ep/x/blobs/uploads/1", LOCAL, (LOCAL,), "registry", "other-host"),
    ("https://attacker.example/v2/ep/x/blobs/uploads/1", ECR, (), "registry", "other-host"),
    ("https://127.0.0.2:5000/v2/ep/x/tags/list?last=1", LOCAL, (LOCAL,), "registry", "other-host"),
    # parser tricks: userinfo, backslashes, whitespace, odd schemes
    (f"https://{ECR}@attacker.example/v2/", ECR, (), "registry", "malformed"),
    (f"https://attacker.example\\@{ECR}/v2/", ECR, (), "registry", "malformed"),
    (f"https://{ECR}/v2/\r\nX: y", ECR, (), "registry", "malformed"),
    (f"https://{ECR} /v2/", ECR, (), "registry", "malformed"),
    (f"https://{ECR}:99999/v2/", ECR, (), "registry", "malformed"),
    ("ftp://127.0.0.1:5000/v2/", LOCAL, (LOCAL,), "registry", "scheme"),
    ("/token", LOCAL, (LOCAL,), "token", "scheme"),
    # token realms: HTTPS anywhere, plain HTTP only on a host the user named insecure
    ("https://auth.docker.io/token", "registry-1.docker.io", (), "token", None),
    ("https://127.0.0.2:8443/token", LOCAL, (LOCAL,), "token", None),
    ("http://127.0.0.2:8080/token", LOCAL, (LOCAL,), "token", "plain-http"),
    ("http://127.0.0.2:8080/token", LOCAL, (LOCAL, "127.0.0.2:8080"), "token", None),
    ("http://127.0.0.2:8081/token", LOCAL, (LOCAL, "127.0.0.2:8080"), "token", "plain-http"),
    ("http://127.0.0.2/token", LOCAL, (LOCAL, "127.0.0.2:8080"), "token", "plain-http"),
    (f"http://{LOCAL}/token", LOCAL, (LOCAL,), "token", None),
    (f"http://{ECR}/token", ECR, (), "token", "plain-http"),
]


@pytest.mark.parametrize(("url", "registry", "insecure", "purpose", "expected"), CASES)
def test_where_credentials_may_go(
    url: str, registry: str, insecure: tuple[str, ...], purpose: str, expected: str | None
) -> None:
    found = refusal(url, registry_host=registry, insecure_hosts=insecure, purpose=purpose)  # type: ignore[arg-type]
    assert (found.reason if found else None) == expected, found


def test_a_refusal_names_the_host_and_the_fix() -> None:
    found = refusal(
        "http://127.0.0.2:8080/token", registry_host=LOCAL, insecure_hosts=(LOCAL,), purpose="token"
    )
    assert found is not None and found.host == "127.0.0.2:8080"
    message, hint = describe(found, registry_host=LOCAL, what="its bearer token realm")
    assert "127.0.0.2:8080" in message and "plain HTTP" in message and "nothing was sent" in message
    assert "--insecure-registry 127.0.0.2:8080" in hint

    other = refusal("https://evil.example/v2/x", registry_host=ECR, insecure_hosts=(), purpose="registry")
    assert other is not None
    message, _ = describe(other, registry_host=ECR, what="the Location of a blob upload")
    assert "another host, evil.example" in message


def test_a_malformed_url_is_not_echoed() -> None:
    found = refusal("https://a\x1b]8;;x\x07@b/", registry_host=ECR, insecure_hosts=(), purpose="registry")
    assert found is not None
    message, hint = describe(found, registry_host=ECR, what="a request")
    assert "\x1b" not in message + hint and "\x07" not in message + hint


def test_host_helpers() -> None:
    assert on_host("https://127.0.0.1:5000/x", LOCAL) and not on_host("https://127.0.0.1:5001/x", LOCAL)
    assert is_insecure("http://127.0.0.1:5000/x", [LOCAL]) and not is_insecure(
        "http://127.0.0.2:5000/x", [LOCAL]
    )


# --- the transport applies it before anything is sent ----------------------------------------


def _transport(http: FakeRoundTripper, *, insecure: bool = True) -> RegistryTransport:
    return RegistryTransport(
        LOCAL,
        http,
        MultiKeychain([StaticKeychain({LOCAL: Credentials("robot", "s3cret")})]),
        RetryPolicy(attempts=1),
        insecure=insecure,
    )


def test_transport_url_refuses_other_hosts_and_resolves_paths() -> None:
    transport = _transport(FakeRoundTripper(lambda r: answer(200)))
    assert transport.url("/v2/ep/x/tags/list?n=1") == f"https://{LOCAL}/v2/ep/x/tags/list?n=1"
    # Resolved as a reference, never glued to the base URL ("https://h:5000" + "@evil/"
    # would name the host evil).
    assert transport.url("@127.0.0.2/v2/") == f"https://{LOCAL}/@127.0.0.2/v2/"
    for hostile in ("//127.0.0.2:5000/v2/", "http://127.0.0.2:5000/v2/", "https://127.0.0.1:5001/v2/"):
        with pytest.raises(CredentialTargetRefused):
            transport.url(hostile, what="the Location of a blob upload")


def test_a_plain_http_realm_on_another_host_gets_no_request_at_all() -> None:
    def handle(request: HttpRequest) -> HttpResponse:
        return answer(401, {"WWW-Authenticate": 'Bearer realm="http://127.0.0.2:9/token",service="x"'})

    http = FakeRoundTripper(handle)
    transport = _transport(http)
    with pytest.raises(CredentialTargetRefused) as refused:
        asyncio.run(transport.request("GET", "/v2/", what="the API version check"))
    assert refused.value.kind == "input" and refused.value.host == "127.0.0.2:9"
    assert [urlsplit(r.url).hostname for r in http.sent] == ["127.0.0.1"]
