"""A real token server for distribution's bearer auth
(https://distribution.github.io/distribution/spec/auth/token/), so the registry client's
bearer flow is tested against `docker-registry` itself, not against a mock.

The registry is configured with ``auth: token`` naming this server as realm and trusting
its self-signed certificate (rootcertbundle). A client asks ``GET /token?service=&scope=``
with Basic credentials and gets an RS256 JWT whose header carries the certificate (x5c)
and whose ``access`` claim grants the scopes it asked for.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.certs import self_signed

SERVICE = "cloudops-test-registry"
ISSUER = "cloudops-test-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    users: dict[str, str]
    certificate: Path
    url: str = ""
    issued: int = 0
    refused: int = 0
    expired_next: int = 0
    """Issue this many tokens already expired (past the registry's 60 s leeway): the
    registry answers 401 to them, as it does when a token runs out mid-copy."""
    scopes_asked: list[str] = field(default_factory=list)

    def registry_config(self) -> list[str]:
        """The ``auth:`` section of a registry config that trusts this server."""
        return [
            "auth:",
            "  token:",
            f"    realm: {self.url}/token",
            f"    service: {SERVICE}",
            f"    issuer: {ISSUER}",
            f"    rootcertbundle: {self.certificate}",
        ]


def _key_and_certificate(path: Path) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = self_signed("cloudops test token signer", key)
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, certificate.public_bytes(serialization.Encoding.DER)


def _token(key: rsa.RSAPrivateKey, der: bytes, subject: str, scopes: list[str], expired: bool) -> str:
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name:
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
    now = int(time.time())
    expires = now - 3600 if expired else now + 300
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": expires,
        "nbf": now - 7200 if expired else now - 10,
        "iat": now - 7200 if expired else now,
        "jti": secrets.token_hex(8),
        "access": access,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@contextmanager
def token_server(root: Path, users: dict[str, str]) -> Iterator[TokenServer]:
    root.mkdir(parents=True, exist_ok=True)
    server_state = TokenServer(users, root / "token-signer.crt")
    key, der = _key_and_certificate(server_state.certificate)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/token":
                self.send_error(404)
                return
            query = parse_qs(parts.query)
            user = self._user()
            if user is None:
                with lock:
                    server_state.refused += 1
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            scopes = query.get("scope", [])
            with lock:
                expired = server_state.expired_next > 0
                server_state.expired_next -= 1 if expired else 0
                server_state.issued += 1
                server_state.scopes_asked.extend(scopes)
            token = _token(key, der, user, scopes, expired)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _user(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None
            return user if users.get(user) == password else None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


class BearerAuth(httpx.Auth):
    """httpx auth for the test's own pusher and reader (independent of cloudops' code):
    on a 401 bearer challenge, ask the realm for a token with Basic credentials."""

    def __init__(self, username: str, password: str):
        self._basic = (username, password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        token = httpx.get(params["realm"], params=query, auth=self._basic, timeout=60).json()["token"]
        request.headers["Authorization"] = f"Bearer {token}"
        yield request
