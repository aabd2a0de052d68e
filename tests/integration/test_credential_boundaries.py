"""Credentials go only where they belong (issue 12 §1, registry/trust.py), against real
servers: `docker-registry` with htpasswd (or token) auth, the fault proxy answering with
a hostile realm, Location or Link, and a catcher on 127.0.0.2 that records every request
it gets. Each refusal is exit 2 naming the host, and the catcher gets nothing."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from cloudops.registry import (
    AuthenticationError,
    Credentials,
    CredentialTargetRefused,
    RegistrySession,
    StaticKeychain,
    TransportSettings,
)
from cloudops.sandbox.processes import ServerProcess, start_registry
from tests.conftest import Registry
from tests.support.certs import write_self_signed
from tests.support.faults import FaultProxy, Rule, fault_proxy
from tests.support.images import Pusher, TestImage, make_image, random_layer
from tests.support.run import assert_clean_failure, cloudops
from tests.support.token_server import TokenServer, token_server

SRC = ("builder", "src-Pa55-never-leaves")
DST = ("promoter", "dst-Pa55-never-leaves")
ENV = {"CLOUDOPS_SRC_CREDS": ":".join(SRC), "CLOUDOPS_DEST_CREDS": ":".join(DST)}
BLOB_SIZE = 1234


# --- the catcher: a plain HTTP server on 127.0.0.2 that records whatever reaches it -----------


@dataclass
class Caught:
    method: str
    path: str
    headers: dict[str, str]
    body: int


@dataclass
class Catcher:
    url: str = ""
    requests: list[Caught] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


# An HTTPS realm on another host: allowed for the registry's own challenge, never for a
# challenge from where the registry redirected a read.
CHALLENGE_REALM = "https://127.0.0.2:9/token"


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    state = Catcher()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _catch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                state.requests.append(Caught(self.command, self.path, dict(self.headers.items()), len(body)))
            if "/challenge/" in self.path:  # a redirect target that asks for credentials
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Bearer realm="{CHALLENGE_REALM}",service=evil')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            # A HEAD is answered like a blob store would (the redirect test); the rest 400.
            self.send_response(200 if self.command == "HEAD" else 400)
            self.send_header("Content-Length", str(BLOB_SIZE if self.command == "HEAD" else 0))
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _catch

    httpd = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.2:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _leaked(result: object) -> None:
    out = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert SRC[1] not in out and DST[1] not in out


@pytest.fixture
def image() -> TestImage:
    return make_image([random_layer(300 * 1024), random_layer(20 * 1024)], oci=True)


@pytest.fixture
def src(make_registry, image: TestImage) -> Registry:  # type: ignore[no-untyped-def]
    registry: Registry = make_registry(auth=SRC)
    Pusher(registry.url, auth=SRC).push("ep/cortex", "1", image)
    return registry


@pytest.fixture
def dst(make_registry) -> Registry:  # type: ignore[no-untyped-def]
    registry: Registry = make_registry(auth=DST)
    return registry


@pytest.fixture
def src_proxy(src: Registry) -> Iterator[FaultProxy]:
    with fault_proxy(src.url) as proxy:
        yield proxy


@pytest.fixture
def dst_proxy(dst: Registry) -> Iterator[FaultProxy]:
    with fault_proxy(dst.url) as proxy:
        yield proxy


def _copy(source: str, destination: str, *insecure: str, extra: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    flags = [arg for host in insecure for arg in ("--insecure-registry", host)]
    return cloudops("copy", "-q", source, destination, *flags, *extra, env=ENV)


# --- 1. a token realm over plain HTTP on another host ------------------------------------------


def test_credentials_are_not_sent_to_a_plain_http_token_realm_on_another_host(
    src_proxy: FaultProxy, dst: Registry, catcher: Catcher
) -> None:
    src_proxy.add(
        Rule(
            "body",
            path="^/v2/",
            status=401,
            times=-1,
            headers={
                "WWW-Authenticate": f'Bearer realm="{catcher.url}/token",service="x"',
                "Content-Type": "application/json",
            },
            body=b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
        )
    )
    result = _copy(f"{src_proxy.host}/ep/cortex:1", f"{dst.host}/ep/cortex:1", src_proxy.host, dst.host)
    assert_clean_failure(result, 2, catcher.host, "token realm", "plain HTTP", "nothing was sent")
    assert f"--insecure-registry {catcher.host}" in result.stderr
    assert catcher.requests == []
    _leaked(result)


# --- 2. an upload Location on another host ----------------------------------------------------


def test_credentials_and_blob_bytes_do_not_follow_an_upload_location_to_another_host(
    src: Registry, dst_proxy: FaultProxy, dst: Registry, catcher: Catcher
) -> None:
    dst_proxy.add(
        Rule(
            "body",
            path="/blobs/uploads/$",
            method="POST",
            status=202,
            times=-1,
            headers={"Location": f"{catcher.url}/v2/ep/cortex/blobs/uploads/stolen"},
        )
    )
    result = _copy(f"{src.host}/ep/cortex:1", f"{dst_proxy.host}/ep/cortex:1", src.host, dst_proxy.host)
    assert_clean_failure(result, 2, catcher.host, "another host", "nothing was sent")
    assert catcher.requests == []
    assert Pusher(dst.url, auth=DST).manifest_digest("ep/cortex", "1") is None
    _leaked(result)


def test_a_declined_mount_whose_location_names_another_host_is_refused_not_cancelled_there(
    make_registry, image: TestImage, catcher: Catcher
) -> None:  # type: ignore[no-untyped-def]
    registry: Registry = make_registry(auth=DST)
    Pusher(registry.url, auth=DST).push("ep/cortex", "1", image)
    with fault_proxy(registry.url) as proxy:
        proxy.add(
            Rule(
                "body",
                path="mount=",
                method="POST",
                status=202,
                times=-1,
                headers={"Location": f"{catcher.url}/v2/ep/copy/blobs/uploads/stolen"},
            )
        )
        result = cloudops(
            "copy",
            "-q",
            f"{proxy.host}/ep/cortex:1",
            f"{proxy.host}/ep/copy:1",
            "--insecure-registry",
            proxy.host,
            env={"CLOUDOPS_SRC_CREDS": ":".join(DST), "CLOUDOPS_DEST_CREDS": ":".join(DST)},
        )
    assert_clean_failure(result, 2, catcher.host, "declined mount", "another host")
    assert catcher.requests == []  # the cancel DELETE never went there
    assert Pusher(registry.url, auth=DST).manifest_digest("ep/copy", "1") is None
    _leaked(result)


# --- 3. a Location on the registry's own host that downgrades https to http -------------------


@pytest.fixture
def downgrading_registry(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """A TLS registry (htpasswd auth) configured with ``http.host: http://itself``: it
    answers every upload POST with a Location that downgrades its own host to plain HTTP
    (distribution builds Location URLs from http.host)."""
    import bcrypt

    cert, key = write_self_signed(tmp_path, "cloudops-test-tls")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{DST[0]}:{bcrypt.hashpw(DST[1].encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    process = start_registry(
        tmp_path / "tls-registry",
        tls=(cert, key),
        # Appended after the http section's tls block: back at the http level first. A
        # function of the port the registry is started on (a retry may pick another).
        auth_section=lambda port: [
            f"  host: http://127.0.0.1:{port}",
            "auth:",
            f"  htpasswd: {{realm: cloudops-test, path: {htpasswd}}}",
        ],
    )
    yield process, cert
    process.stop()


def test_a_location_that_downgrades_the_registry_to_plain_http_is_refused(
    src: Registry, downgrading_registry: tuple[ServerProcess, Path]
) -> None:
    process, cert = downgrading_registry
    host = process.url.split("://", 1)[1]
    result = _copy(
        f"{src.host}/ep/cortex:1", f"{host}/ep/cortex:1", src.host, extra=("--ca-bundle", str(cert))
    )
    assert_clean_failure(result, 2, f"at {host} over plain HTTP", "nothing was sent")
    _leaked(result)
    answer = httpx.get(
        f"https://{host}/v2/ep/cortex/tags/list",
        verify=ssl.create_default_context(cafile=str(cert)),
        auth=DST,
        headers={"Accept": "*/*"},
        timeout=60,
    )
    assert answer.status_code == 404  # nothing was pushed


# --- 4. positive control: a token realm over verified HTTPS on another host -------------------
# (tests/integration/test_token_auth.py covers a plain-HTTP realm the user named with
# --insecure-registry.)


class _DirectBearer(httpx.Auth):
    """The test's own pusher asks the token server directly (not through the TLS relay)."""

    def __init__(self, token_url: str, auth: tuple[str, str]):
        self._token_url, self._auth = token_url, auth

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code != 401:
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', response.headers.get("www-authenticate", "")))
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        token = httpx.get(self._token_url, params=query, auth=self._auth, timeout=60).json()["token"]
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


@dataclass
class HttpsRealm:
    tokens: TokenServer
    direct: str
    cert: Path
    src: ServerProcess
    dst: ServerProcess

    def host(self, server: ServerProcess) -> str:
        return server.url.split("://", 1)[1]


@pytest.fixture
def https_realm(tmp_path: Path, image: TestImage) -> Iterator[HttpsRealm]:
    """Token-auth registries whose realm is https://127.0.0.1:RELAY/token, a TLS relay in
    front of the test token server (another host:port than either registry)."""
    cert, key = write_self_signed(tmp_path, "cloudops-test-tls")
    with token_server(tmp_path / "tokens", {DST[0]: DST[1]}) as tokens:
        direct = tokens.url

        class Relay(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
                answer = httpx.get(direct + self.path, headers=headers, timeout=60)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        tokens.url = f"https://127.0.0.1:{httpd.server_address[1]}"  # the realm registries name
        src = start_registry(tmp_path / "src", auth_section=tokens.registry_config())
        dst = start_registry(tmp_path / "dst", auth_section=tokens.registry_config())
        try:
            pusher = Pusher(src.url)
            pusher.client.auth = _DirectBearer(direct + "/token", DST)
            pusher.push("ep/cortex", "1", image)
            tokens.issued = 0
            yield HttpsRealm(tokens, direct, cert, src, dst)
        finally:
            src.stop()
            dst.stop()
            httpd.shutdown()
            httpd.server_close()


def _token_copy(world: HttpsRealm, *extra: str):  # type: ignore[no-untyped-def]
    src, dst = world.host(world.src), world.host(world.dst)
    return cloudops(
        "copy",
        "-q",
        f"{src}/ep/cortex:1",
        f"{dst}/ep/cortex:1",
        "--insecure-registry",
        src,
        "--insecure-registry",
        dst,
        *extra,
        env={"CLOUDOPS_SRC_CREDS": ":".join(DST), "CLOUDOPS_DEST_CREDS": ":".join(DST)},
    )


def test_a_token_realm_over_verified_https_on_another_host_works(https_realm: HttpsRealm) -> None:
    result = _token_copy(https_realm, "--ca-bundle", str(https_realm.cert))
    assert result.returncode == 0, result.stderr
    assert https_realm.tokens.issued >= 2


def test_an_insecure_registry_does_not_make_its_https_realm_unverified(https_realm: HttpsRealm) -> None:
    # The registries are --insecure-registry; the realm's host is not: its certificate is
    # checked, so the credentials never go over TLS nobody verified.
    result = _token_copy(https_realm)
    assert_clean_failure(
        result, 2, f"the TLS certificate of 127.0.0.1:{https_realm.tokens.url.rsplit(':', 1)[1]}"
    )
    assert https_realm.tokens.issued == 0 and https_realm.tokens.refused == 0
    _leaked(result)


# --- 5. a Link to the next page of a tag list on another host ---------------------------------


def _reader_run(proxy: FaultProxy, work):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        keychain = StaticKeychain({proxy.host: Credentials(*SRC)})
        async with RegistrySession(keychain, TransportSettings.build([proxy.host])) as pool:
            reader = pool.reader(proxy.host)
            await reader.ping()  # the transport now holds the credentials
            return await work(reader)

    return asyncio.run(go())


def test_a_tag_list_link_to_another_host_is_refused(src_proxy: FaultProxy, catcher: Catcher) -> None:
    src_proxy.add(
        Rule(
            "body",
            path="/tags/list",
            method="GET",
            status=200,
            times=-1,
            headers={
                "Content-Type": "application/json",
                "Link": f'<{catcher.url}/v2/ep/cortex/tags/list?n=1&last=1>; rel="next"',
            },
            body=json.dumps({"name": "ep/cortex", "tags": ["1"]}).encode(),
        )
    )
    with pytest.raises(CredentialTargetRefused) as refused:
        _reader_run(src_proxy, lambda reader: reader.list_tags("ep/cortex", page_size=1))
    assert refused.value.kind == "input" and refused.value.host == catcher.host
    assert catcher.host in str(refused.value) and "next page of the tag list" in str(refused.value)
    assert catcher.requests == []


def test_a_same_host_link_is_followed(src_proxy: FaultProxy) -> None:
    src_proxy.add(
        Rule(
            "body",
            path="/tags/list\\?n=1$",
            method="GET",
            status=200,
            headers={
                "Content-Type": "application/json",
                "Link": f'<http://{src_proxy.host}/v2/ep/cortex/tags/list?n=1&last=0>; rel="next"',
            },
            body=json.dumps({"name": "ep/cortex", "tags": ["0"]}).encode(),
        )
    )
    tags = _reader_run(src_proxy, lambda reader: reader.list_tags("ep/cortex", page_size=1))
    assert tags == ["0", "1"]


# --- blob reads: a redirect is followed, without the credentials -------------------------------


def test_a_blob_head_redirected_to_another_host_carries_no_credentials(
    src_proxy: FaultProxy, catcher: Catcher, image: TestImage
) -> None:
    digest = image.blobs[0].digest
    src_proxy.add(
        Rule(
            "body",
            path=f"/blobs/{digest}$",
            method="HEAD",
            status=307,
            times=-1,
            headers={"Location": f"{catcher.url}/s3/blob?X-Amz-Signature=presigned"},
        )
    )
    size = _reader_run(src_proxy, lambda reader: reader.blob_size("ep/cortex", digest))
    assert size == BLOB_SIZE
    assert [(r.method, r.path) for r in catcher.requests] == [("HEAD", "/s3/blob?X-Amz-Signature=presigned")]
    assert "authorization" not in {k.lower() for k in catcher.requests[0].headers}


def test_a_challenge_from_a_redirect_target_is_not_answered(
    src_proxy: FaultProxy, catcher: Catcher, image: TestImage
) -> None:
    """The registry redirects a blob read to another host, which answers 401 with an HTTPS
    realm of its choosing: answering would send the registry's credentials to that realm."""
    digest = image.blobs[0].digest
    src_proxy.add(
        Rule(
            "body",
            path=f"/blobs/{digest}$",
            method="HEAD",
            status=307,
            times=-1,
            headers={"Location": f"{catcher.url}/challenge/blob"},
        )
    )
    with pytest.raises(AuthenticationError, match="asked for credentials: refused"):
        _reader_run(src_proxy, lambda reader: reader.blob_size("ep/cortex", digest))
    assert [(r.method, r.path) for r in catcher.requests] == [("HEAD", "/challenge/blob")]
    assert "authorization" not in {k.lower() for k in catcher.requests[0].headers}


def test_a_blob_get_of_a_copy_redirected_to_another_host_carries_no_credentials(
    src_proxy: FaultProxy, dst: Registry, catcher: Catcher, image: TestImage
) -> None:
    """The transport (registry/transport.py) follows a blob GET's 307 by hand: the source's
    credentials stay with the source. The catcher answers the GET 400, so the copy fails;
    what matters is what reached it."""
    digest = image.blobs[0].digest
    src_proxy.add(
        Rule(
            "body",
            path=f"/blobs/{digest}$",
            method="GET",
            status=307,
            times=-1,
            headers={"Location": f"{catcher.url}/s3/blob?X-Amz-Signature=presigned"},
        )
    )
    result = _copy(f"{src_proxy.host}/ep/cortex:1", f"{dst.host}/ep/cortex:1", src_proxy.host, dst.host)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    _leaked(result)
    gets = [r for r in catcher.requests if r.method == "GET"]
    assert gets and {r.path for r in gets} == {"/s3/blob?X-Amz-Signature=presigned"}, catcher.requests
    for caught in gets:
        assert "authorization" not in {k.lower() for k in caught.headers}, caught.headers
