"""An --insecure-registry host is tried over HTTPS first and switched to plain HTTP when
it does not speak TLS; a batch must find that out once, not once per request."""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from urllib3.exceptions import SSLError

from cloudops.registry.auth import MultiKeychain
from cloudops.registry.http import HttpRequest, HttpResponse, _failure
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.transport import RegistryTransport
from tests.support.fake_http import FakeRoundTripper, answer


def _transport(http: FakeRoundTripper, *, insecure: bool) -> RegistryTransport:
    return RegistryTransport(
        "registry.test:5000", http, MultiKeychain([]), RetryPolicy(attempts=1), insecure=insecure
    )


def _plain_http_server(schemes: list[str]) -> FakeRoundTripper:
    async def handle(request: HttpRequest) -> HttpResponse:
        scheme = urlsplit(request.url).scheme
        schemes.append(scheme)
        await asyncio.sleep(0.01)  # a network: the other requests of the batch start meanwhile
        if scheme == "https":
            # What urllib3 raises when the server answers a ClientHello in plain HTTP,
            # mapped to a typed error by its exception types (registry/http.py).
            handshake = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
            handshake.reason = "WRONG_VERSION_NUMBER"
            raise _failure(SSLError(handshake), request.url, None)
        return answer(200)

    return FakeRoundTripper(handle)


def test_concurrent_requests_to_an_insecure_plain_http_host_probe_tls_once() -> None:
    schemes: list[str] = []
    transport = _transport(_plain_http_server(schemes), insecure=True)

    async def batch() -> list[int]:
        responses = await asyncio.gather(
            *(transport.request("HEAD", f"/v2/ep/{n}/manifests/1", what="manifest") for n in range(16))
        )
        return [r.status for r in responses]

    assert asyncio.run(batch()) == [200] * 16
    assert schemes.count("https") == 1 and schemes.count("http") == 16
    assert transport.base_url == "http://registry.test:5000"


def test_a_host_not_named_insecure_is_never_switched_to_plain_http() -> None:
    schemes: list[str] = []
    transport = _transport(_plain_http_server(schemes), insecure=False)

    async def one() -> None:
        await transport.request("GET", "/v2/", what="the API version check")

    try:
        asyncio.run(one())
    except Exception as error:
        assert "does not speak HTTPS" in str(error) and "--insecure-registry" in str(error)
    else:
        raise AssertionError("a plain-HTTP host was used without --insecure-registry")
    assert schemes == ["https"]
