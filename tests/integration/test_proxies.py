"""Registry traffic goes through the proxy the environment names, read as urllib.request
and botocore read it: HTTPS_PROXY for https registries (a CONNECT tunnel), HTTP_PROXY for
plain-HTTP ones (forwarded requests), NO_PROXY bypasses both; lower-case names too. A
proxy that refuses or does not answer fails the copy cleanly, naming the proxy; the
proxy's credentials are never printed.

The proxy is a real tinyproxy (tests/support/forward_proxy.py); what went through it is
read from its log. Each test's environment holds exactly the proxy variables it sets:
the session drops inherited ones (tests/conftest.py) and so does each test here."""

from __future__ import annotations

import re
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROXY_VARIABLES, Registry
from tests.support.certs import write_self_signed
from tests.support.forward_proxy import ForwardProxy, ProxyStartError, closed_port, start_forward_proxy
from tests.support.images import Pusher, TestImage, make_image, random_layer
from tests.support.run import cloudops

REPOSITORY = "ep/cortex"
PASSWORD = "s3cret-proxy-pw"
WRONG_PASSWORD = "wr0ng-proxy-pw"
# Failures through a broken proxy need not wait out the default five tries.
FEW_RETRIES = {"CLOUDOPS_RETRY_ATTEMPTS": "2", "CLOUDOPS_RETRY_SECONDS": "10"}

MakeProxy = Callable[..., ForwardProxy]
MakeRegistry = Callable[[], Registry]


@pytest.fixture(autouse=True)
def _only_the_proxy_variables_a_test_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not empty strings: urllib lets an empty https_proxy cancel a set HTTPS_PROXY.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeProxy]:
    started: list[ForwardProxy] = []

    def make(*, basic_auth: tuple[str, str] | None = None, refusing: bool = False) -> ForwardProxy:
        try:
            proxy = start_forward_proxy(
                tmp_path_factory.mktemp("proxy"), basic_auth=basic_auth, refusing=refusing
            )
        except ProxyStartError as error:
            pytest.fail(str(error), pytrace=False)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def ca_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key; every TLS registry of a test
    serves it, so it is also the --ca-bundle."""
    return write_self_signed(tmp_path)


@pytest.fixture
def make_tls_registry(make_registry: Callable[..., Registry], ca_bundle: tuple[Path, Path]) -> MakeRegistry:
    return lambda: make_registry(tls=ca_bundle)


def _is_tls(registry: Registry) -> bool:
    return registry.url.startswith("https://")


def _pusher(registry: Registry, ca: Path) -> Pusher:
    """Reads and writes ``registry`` directly (never through a proxy)."""
    pusher = Pusher(registry.url)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if _is_tls(registry) else True
    pusher.client = httpx.Client(base_url=registry.url, verify=verify, trust_env=False, timeout=60)
    return pusher


def _source_image(source: Registry, ca: Path) -> TestImage:
    image = make_image([random_layer(64 * 1024), random_layer(20 * 1024)])
    _pusher(source, ca).push(REPOSITORY, "1", image)
    return image


def _copy(
    source: Registry, destination: Registry, ca: Path, env: dict[str, str], tag: str = "1"
) -> subprocess.CompletedProcess[str]:
    args = ["copy", f"{source.host}/{REPOSITORY}:1", f"{destination.host}/{REPOSITORY}:{tag}"]
    for registry in (source, destination):
        if not _is_tls(registry):
            args += ["--insecure-registry", registry.host]
    if _is_tls(source) or _is_tls(destination):
        args += ["--ca-bundle", str(ca)]
    assert not set(env) - set(PROXY_VARIABLES) - set(FEW_RETRIES), env
    return cloudops(*args, env=env, timeout=90)


def _assert_copied(
    result: subprocess.CompletedProcess[str],
    destination: Registry,
    ca: Path,
    image: TestImage,
    tag: str = "1",
) -> None:
    assert result.returncode == 0, result.stderr
    assert _pusher(destination, ca).manifest_digest(REPOSITORY, tag) == image.digest


def _assert_fails_naming(result: subprocess.CompletedProcess[str], host_port: str, *never: str) -> None:
    """The contract for a proxy that fails: exit 1 or 2 (not decided which), one clean
    message naming the proxy's host:port, no traceback, none of ``never`` printed."""
    output = result.stdout + result.stderr
    assert result.returncode in (1, 2), (result.returncode, result.stderr)
    assert "Traceback" not in output, output
    assert re.search(rf"{re.escape(host_port)}(?!\d)", result.stderr), (host_port, result.stderr)
    for text in never:
        assert text not in output, (text, output)


def _refusals(proxy: ForwardProxy) -> int:
    return sum("Unauthorized connection" in line for line in proxy.log_lines())


def _methods(proxy: ForwardProxy, registry: Registry) -> set[str]:
    return {request.method for request in proxy.requests_to(registry.host)}


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_registries_are_reached_through_a_connect_tunnel_of_https_proxy(
    variable: str, make_proxy: MakeProxy, make_tls_registry: MakeRegistry, ca_bundle: tuple[Path, Path]
) -> None:
    ca = ca_bundle[0]
    source, destination = make_tls_registry(), make_tls_registry()
    image = _source_image(source, ca)
    proxy = make_proxy()

    result = _copy(source, destination, ca, {variable: proxy.url})

    _assert_copied(result, destination, ca, image)
    assert _methods(proxy, source) == {"CONNECT"}, proxy.log_lines()
    assert _methods(proxy, destination) == {"CONNECT"}, proxy.log_lines()


def test_each_scheme_goes_through_its_own_proxy(
    make_proxy: MakeProxy,
    make_tls_registry: MakeRegistry,
    registry: Registry,
    ca_bundle: tuple[Path, Path],
) -> None:
    ca = ca_bundle[0]
    source = make_tls_registry()
    image = _source_image(source, ca)
    https_proxy, http_proxy = make_proxy(), make_proxy()

    result = _copy(source, registry, ca, {"HTTPS_PROXY": https_proxy.url, "HTTP_PROXY": http_proxy.url})

    _assert_copied(result, registry, ca, image)
    # An --insecure-registry host is tried over HTTPS once before plain HTTP (as docker
    # and skopeo do): that one TLS attempt is a CONNECT through HTTPS_PROXY, nothing more.
    assert len(https_proxy.requests_to(registry.host)) <= 1, https_proxy.log_lines()
    assert _methods(https_proxy, registry) <= {"CONNECT"}, https_proxy.log_lines()
    assert not http_proxy.requests_to(source.host), http_proxy.log_lines()
    assert _methods(https_proxy, source) == {"CONNECT"}, https_proxy.log_lines()
    assert "PUT" in _methods(http_proxy, registry), http_proxy.log_lines()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_plain_http_registries_are_reached_through_http_proxy(
    variable: str,
    make_proxy: MakeProxy,
    registry: Registry,
    registry2: Registry,
    ca_bundle: tuple[Path, Path],
) -> None:
    ca = ca_bundle[0]
    image = _source_image(registry, ca)
    proxy = make_proxy()

    result = _copy(registry, registry2, ca, {variable: proxy.url})

    _assert_copied(result, registry2, ca, image)
    assert _methods(proxy, registry) & {"GET", "HEAD"}, proxy.log_lines()
    assert "CONNECT" not in _methods(proxy, registry), proxy.log_lines()
    assert "PUT" in _methods(proxy, registry2), proxy.log_lines()


@pytest.mark.parametrize(
    ("variable", "value"), [("NO_PROXY", "127.0.0.1"), ("no_proxy", "localhost,127.0.0.1")]
)
def test_no_proxy_bypasses_the_proxy(
    variable: str,
    value: str,
    make_proxy: MakeProxy,
    make_tls_registry: MakeRegistry,
    registry: Registry,
    ca_bundle: tuple[Path, Path],
) -> None:
    ca = ca_bundle[0]
    source = make_tls_registry()
    image = _source_image(source, ca)
    proxy = make_proxy()

    env = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, variable: value}
    result = _copy(source, registry, ca, env)

    _assert_copied(result, registry, ca, image)
    assert proxy.requests() == [], proxy.log_lines()
    # The proxy did work and log: a request sent through it on purpose shows up.
    through = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
    with through.open(f"{registry.url}/v2/", timeout=10) as answer:
        assert answer.status == 200
    assert [r.method for r in proxy.requests_to(registry.host)] == ["GET"], proxy.log_lines()


@pytest.mark.parametrize(("scheme", "how"), [("https", "refusing"), ("https", "closed"), ("http", "closed")])
def test_a_proxy_that_refuses_or_is_not_there_fails_the_copy_naming_the_proxy(
    scheme: str,
    how: str,
    make_proxy: MakeProxy,
    make_tls_registry: MakeRegistry,
    make_registry: Callable[[], Registry],
    ca_bundle: tuple[Path, Path],
) -> None:
    ca = ca_bundle[0]
    make = make_tls_registry if scheme == "https" else make_registry
    source, destination = make(), make()
    _source_image(source, ca)
    variable = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"

    if how == "refusing":
        proxy = make_proxy(refusing=True)
        refusals = _refusals(proxy)  # the start-up's own readiness probe is one
        result = _copy(source, destination, ca, {variable: proxy.url, **FEW_RETRIES})
        _assert_fails_naming(result, proxy.host_port)
        assert _refusals(proxy) > refusals, proxy.log_lines()
    else:
        with closed_port() as port:
            result = _copy(source, destination, ca, {variable: f"http://127.0.0.1:{port}", **FEW_RETRIES})
        _assert_fails_naming(result, f"127.0.0.1:{port}")
    assert _pusher(destination, ca).manifest_digest(REPOSITORY, "1") is None


def test_proxy_credentials_from_the_proxy_url_are_used_and_never_printed(
    make_proxy: MakeProxy, make_tls_registry: MakeRegistry, ca_bundle: tuple[Path, Path]
) -> None:
    ca = ca_bundle[0]
    source, destination = make_tls_registry(), make_tls_registry()
    image = _source_image(source, ca)
    proxy = make_proxy(basic_auth=("user", PASSWORD))

    result = _copy(source, destination, ca, {"HTTPS_PROXY": proxy.url_with_credentials("user", PASSWORD)})

    _assert_copied(result, destination, ca, image)
    assert PASSWORD not in result.stdout + result.stderr
    assert _methods(proxy, source) == {"CONNECT"}, proxy.log_lines()
    assert _methods(proxy, destination) == {"CONNECT"}, proxy.log_lines()


def test_wrong_proxy_credentials_fail_cleanly_without_printing_them(
    make_proxy: MakeProxy, make_tls_registry: MakeRegistry, ca_bundle: tuple[Path, Path]
) -> None:
    ca = ca_bundle[0]
    source, destination = make_tls_registry(), make_tls_registry()
    _source_image(source, ca)
    proxy = make_proxy(basic_auth=("user", PASSWORD))

    wrong = proxy.url_with_credentials("user", WRONG_PASSWORD)
    result = _copy(source, destination, ca, {"HTTPS_PROXY": wrong, **FEW_RETRIES})

    _assert_fails_naming(result, proxy.host_port, WRONG_PASSWORD, PASSWORD, "user:")
    assert _pusher(destination, ca).manifest_digest(REPOSITORY, "1") is None
