"""One registry host's HTTP transport: auth (Basic or bearer challenge), error mapping and
the retry policy, in that order around each request.

Order of the layers, outermost first (the same split as go-containerregistry's
transport.go): retry -> scheme (HTTPS; plain HTTP only for an --insecure-registry host
that does not speak TLS) -> auth (answer a 401 challenge, refresh an expired token) ->
redirects (blob reads, without credentials off the registry's host) -> send
(registry/http.py, urllib3) -> map a failed status to a typed error. Every registry
request takes this path: manifests, tag pages, tokens, and blob GETs and PUTs alike. A
request whose body is a stream cannot be replayed, so it is sent once and a broken stream
is retried by the caller as a whole blob.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin, urlsplit

from cloudops.registry import trust
from cloudops.registry.auth import Challenge, Credentials, Keychain, parse_challenge
from cloudops.registry.errors import (
    AuthenticationError,
    CredentialTargetRefused,
    InsecureRegistryError,
    RegistryError,
    RegistryUnreachableError,
    error_for_status,
    token_expired,
)
from cloudops.registry.http import MAX_BODY, HttpRequest, HttpResponse, RoundTripper
from cloudops.registry.retry import RetryPolicy

MAX_TOKEN_BODY = 256 * 1024
"""A token answer is a few KiB (ECR's are ~2 KiB); anything longer is not read further."""
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class Scope:
    """A token scope: ``repository:NAME:ACTIONS`` (distribution token spec)."""

    repository: str
    push: bool = False

    def __str__(self) -> str:
        return f"repository:{self.repository}:{'pull,push' if self.push else 'pull'}"


class RegistryTransport:
    def __init__(
        self,
        host: str,
        http: RoundTripper,
        keychain: Keychain,
        retry: RetryPolicy,
        *,
        insecure: bool,
        insecure_hosts: Iterable[str] = (),
    ):
        self.host = host
        # Every --insecure-registry host, not only this one: a token realm over plain HTTP
        # is allowed only on one of them (trust.py).
        self.insecure_hosts = frozenset(insecure_hosts) | ({host} if insecure else frozenset())
        self.insecure = insecure
        # Every registry is HTTPS. A host the user named insecure is tried over HTTPS
        # without verification first, then over plain HTTP if it does not speak TLS (what
        # docker and skopeo do for insecure registries).
        self.base_url = f"https://{host}"
        self._may_downgrade = insecure
        # Until an insecure host's scheme is known, one request finds it out and the
        # others wait: a batch would otherwise open a failing TLS handshake per request.
        self._scheme_settled = asyncio.Event()
        if not insecure:
            self._scheme_settled.set()
        self._scheme_probe = asyncio.Lock()
        self.http = http
        self._keychain = keychain
        self.retry = retry
        self._challenge: Challenge | None = None
        self._credentials: Credentials | None = None
        self._credentials_resolved = False
        self._tokens: dict[str, str] = {}
        self._auth_lock = asyncio.Lock()

    # -- credentials -------------------------------------------------------------------

    async def _resolve_credentials(self) -> Credentials | None:
        if not self._credentials_resolved:
            # Keychains may call AWS (the ECR token provider): keep the loop free.
            self._credentials = await asyncio.to_thread(self._keychain.resolve, self.host)
            self._credentials_resolved = True
        return self._credentials

    def auth_headers(self, scopes: tuple[Scope, ...]) -> dict[str, str] | None:
        """The Authorization header the next request would carry ({} when the registry
        asked for none yet), for the bulk path; None when it has none for these scopes
        (a request through :meth:`request` answers the challenge first)."""
        if self._challenge is None:
            return {}
        header = self._auth_header(scopes)
        return {"Authorization": header} if header else None

    @property
    def scheme_known(self) -> bool:
        """Whether the scheme that reaches this host is settled (always, unless the host
        is --insecure-registry and no request went out yet)."""
        return self._scheme_settled.is_set()

    def forget_credentials(self) -> None:
        self._forget_credentials()

    def _forget_credentials(self) -> None:
        self._keychain.invalidate(self.host)
        self._credentials = None
        self._credentials_resolved = False
        self._tokens.clear()

    def _auth_header(self, scopes: tuple[Scope, ...]) -> str | None:
        if self._challenge is None:
            return None
        if self._challenge.scheme == "basic":
            return self._credentials.basic_header() if self._credentials else None
        if self._challenge.scheme == "bearer":
            key = _scope_key(scopes)
            token = self._tokens.get(key)
            if token is None and scopes and not any(s.push for s in scopes):
                token = self._tokens.get(_scope_key(tuple(Scope(s.repository, True) for s in scopes)))
            if token is None:
                token = self._tokens.get("")  # a token for the ping (no scope)
            return f"Bearer {token}" if token else None
        return None

    async def _authenticate(self, header: str | None, sent: str | None, scopes: tuple[Scope, ...]) -> None:
        """Answer a 401 challenge so that the next try carries fitting credentials."""
        async with self._auth_lock:
            challenge = parse_challenge(header)
            if challenge is None or challenge.scheme not in ("basic", "bearer"):
                raise AuthenticationError(
                    f"{self.host} requires authentication with an unsupported scheme",
                    hint="cloudops speaks Basic and bearer-token auth",
                    status=401,
                )
            current = self._auth_header(scopes) if self._challenge else None
            if current is not None and current != sent:
                return  # another task refreshed it meanwhile
            credentials = await self._resolve_credentials()
            if challenge.scheme == "basic":
                if credentials is None:
                    raise _no_credentials(self.host)
                if sent is not None and self._challenge and self._challenge.scheme == "basic":
                    raise AuthenticationError(
                        f"{self.host} refused the credentials (HTTP 401)",
                        hint="check the username and password for this registry",
                        status=401,
                    )
                self._challenge = challenge
                return
            self._challenge = challenge
            self._tokens[_scope_key(scopes)] = await self._fetch_token(challenge, credentials, scopes)

    async def _fetch_token(
        self, challenge: Challenge, credentials: Credentials | None, scopes: tuple[Scope, ...]
    ) -> str:
        realm = challenge.realm
        if not realm:
            raise AuthenticationError(f"{self.host} sent a bearer challenge without a realm", status=401)
        params: list[tuple[str, str]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        wanted = {str(s) for s in scopes}
        if challenge.params.get("scope"):
            wanted.update(challenge.params["scope"].split(" "))
        params.extend(("scope", s) for s in sorted(wanted))
        headers = {}
        if credentials is not None:
            headers["Authorization"] = credentials.basic_header()
            params.append(("account", credentials.username))
        # The realm comes from the registry's answer: checked like any URL it names, before
        # the credentials (or even an anonymous request) go there.
        self.check_target(realm, what="its bearer token realm", purpose="token")
        url = realm + ("&" if "?" in realm else "?") + urlencode(params)
        # TLS to a realm on another host is verified unless the user named that host
        # insecure: credentials never go over unverified TLS to a host nobody named.
        verify = not trust.is_insecure(realm, self.insecure_hosts)
        response = await self.http.send(
            HttpRequest("GET", url, headers, verify=verify, max_body=MAX_TOKEN_BODY)
        )
        if response.status in (401, 403):
            if credentials is None:
                raise _no_credentials(self.host)
            raise AuthenticationError(
                f"the token service of {self.host} refused the credentials (HTTP {response.status})",
                hint="check the username and password for this registry",
                status=response.status,
            )
        if response.status != 200:
            raise error_for_status(response.status, response.body, what="a token request", host=self.host)
        try:
            doc = response.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"the token service of {self.host} returned no token", status=response.status
            )
        return token

    # -- requests ----------------------------------------------------------------------

    def url(self, path: str, *, what: str = "a request") -> str:
        """The absolute URL of ``path`` (a path, or a URL the registry answered with: an
        upload Location, a Link), refused unless this registry's credentials may go there.

        Every request of the registry API passes here, the bulk blob path included
        (client._endpoint): the one place where a registry's answer could send credentials
        or blob bytes to another host, or downgrade this one to plain HTTP."""
        url = urljoin(self.base_url + "/", path)
        self.check_target(url, what=what, purpose="registry")
        return url

    def check_target(self, url: str, *, what: str, purpose: trust.Purpose) -> None:
        """Raise CredentialTargetRefused unless a request with this registry's
        credentials may go to ``url`` (registry/trust.py)."""
        found = trust.refusal(
            url, registry_host=self.host, insecure_hosts=self.insecure_hosts, purpose=purpose
        )
        if found is not None:
            message, hint = trust.describe(found, registry_host=self.host, what=what)
            raise CredentialTargetRefused(message, hint=hint, host=found.host)

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        scopes: Iterable[Scope] = (),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        expect: tuple[int, ...] = (200,),
        stream: bool = False,
        replayable: bool = True,
        follow_redirects: bool = False,
        blob: bool = False,
        max_body: int = MAX_BODY,
        retry: RetryPolicy | None = None,
    ) -> HttpResponse:
        """Send a request, answering auth challenges; return a response whose status is in
        ``expect``. With ``stream`` a 2xx body is left unread: the caller reads it on a
        worker thread and must ``release`` or ``close`` it. A request whose body is a
        stream (``replayable=False``) is sent once: a failure the caller's whole-blob
        retry can fix (a stale token) is raised retryable. ``retry`` replaces the
        transport's policy for this request (an attempt whose failure the caller handles
        itself, such as an early referrer push)."""
        call = _Call(
            method,
            path,
            what,
            tuple(scopes),
            dict(headers or {}),
            dict(params) if params else None,
            body,
            expect,
            stream,
            replayable,
            follow_redirects,
            blob,
            max_body,
        )
        if not replayable:
            return await self._send_authenticated(call)
        return await (retry or self.retry).run(lambda: self._send_authenticated(call))

    async def _send_authenticated(self, call: _Call) -> HttpResponse:
        if not self._scheme_settled.is_set():
            async with self._scheme_probe:
                if not self._scheme_settled.is_set():
                    try:
                        return await self._send_authenticated_once(call)
                    finally:
                        # Settled whatever the answer: a host that cannot be reached must
                        # not make the waiting requests probe it one after another.
                        self._scheme_settled.set()
        return await self._send_authenticated_once(call)

    async def _send_authenticated_once(self, call: _Call) -> HttpResponse:
        refreshed = False
        # Up to three rounds: as sent, after answering a 401 challenge, after refreshing
        # credentials. Switching an insecure host to plain HTTP does not use up a round.
        round_ = -1
        while round_ < 2:
            round_ += 1
            sent = self._auth_header(call.scopes)
            headers = dict(call.headers)
            if sent:
                headers["Authorization"] = sent
            url = self.url(call.path, what=call.what)
            if call.params:
                url += ("&" if "?" in url else "?") + urlencode(call.params)
            try:
                response = await self._send_following(call, url, headers)
            except InsecureRegistryError:
                downgraded = self.base_url.startswith("http://")  # by a concurrent request
                if (self._may_downgrade or downgraded) and url.startswith("https://"):
                    self._may_downgrade = False
                    self.base_url = f"http://{self.host}"
                    round_ -= 1
                    continue
                raise
            if response.status == 401 and not trust.on_host(response.url, self.host):
                # A redirect target (ECR sends blob reads to S3) asked for credentials: its
                # challenge is not the registry's, and answering it would hand the
                # registry's credentials to whatever realm it names (docs/security.md).
                response.close()
                raise AuthenticationError(
                    f"{urlsplit(response.url).netloc}, where {self.host} redirected {call.what}, asked "
                    "for credentials: refused, the registry's credentials go only to the registry",
                    hint="check the registry's configuration (its storage redirects)",
                    status=401,
                )
            if response.status == 401 and call.replayable and round_ < 2:
                if sent and self._challenge and self._challenge.scheme == "bearer":
                    # A bearer token can expire mid-copy: drop it and ask for a fresh one.
                    self._tokens.pop(_scope_key(call.scopes), None)
                    sent = None
                await self._authenticate(response.headers.get("www-authenticate"), sent, call.scopes)
                continue
            if response.status in call.expect:
                return response
            response.close()
            error = error_for_status(
                response.status,
                response.body,
                what=call.what,
                host=self.host,
                retry_after=response.headers.get("retry-after"),
            )
            if token_expired(error, credentials_sent=sent is not None) and not refreshed:
                refreshed = True
                self._forget_credentials()
                await self._resolve_credentials()
                if call.replayable and round_ < 2:
                    continue
                error.retryable = True  # the caller's whole-blob retry goes again, refreshed
            elif response.status == 401 and sent is not None and not call.replayable:
                self._tokens.pop(_scope_key(call.scopes), None)
                error.retryable = True
            if response.status == 401 and sent is None:
                raise _no_credentials(self.host)
            raise _through_proxy(error, response, self.host)
        raise AuthenticationError(f"{self.host} kept refusing the credentials for {call.what}", status=401)

    async def _send_following(self, call: _Call, url: str, headers: dict[str, str]) -> HttpResponse:
        """Send, following redirects when the call asks to (blob reads: ECR answers them
        with a redirect to S3). Credentials never leave the registry's own scheme, host
        and port, and another host's TLS is verified even when this registry's is not
        (--insecure-registry names the registry, not where it sends reads)."""
        origin = urlsplit(url)[:2]
        verify = not self.insecure
        for _ in range(MAX_REDIRECTS + 1):
            response = await self.http.send(
                HttpRequest(
                    call.method,
                    url,
                    headers,
                    call.body,
                    verify=verify,
                    stream=call.stream,
                    max_body=call.max_body,
                    replayable=call.replayable,
                    blob=call.blob,
                )
            )
            location = response.headers.get("location")
            if not (call.follow_redirects and response.status in REDIRECTS and location):
                return response
            response.close()
            try:
                url = urljoin(url, location)
                target = urlsplit(url)
            except ValueError:
                raise RegistryError(f"{self.host} redirected {call.what} to a malformed URL") from None
            if target.scheme not in ("http", "https"):
                raise RegistryError(f"{self.host} redirected {call.what} to a {target.scheme!r} URL")
            if target[:2] != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                verify = True
        raise RegistryError(f"{self.host}: too many redirects for {call.what}")


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    what: str
    scopes: tuple[Scope, ...]
    headers: Mapping[str, str]
    params: Mapping[str, str] | None
    body: bytes | Iterable[bytes] | None
    expect: tuple[int, ...]
    stream: bool
    replayable: bool
    follow_redirects: bool
    blob: bool
    max_body: int


def _scope_key(scopes: tuple[Scope, ...]) -> str:
    return " ".join(sorted(str(s) for s in scopes))


def _no_credentials(host: str) -> AuthenticationError:
    return AuthenticationError(
        f"{host} requires credentials and none are configured for it",
        hint="log in (docker login / skopeo login), or pass credentials through "
        "--src-creds-env/--dest-creds-env",
        status=401,
    )


def _through_proxy(error: RegistryError, response: HttpResponse, host: str) -> RegistryError:
    """An error answered through a plain-HTTP proxy may be the proxy's, not the
    registry's: say so, naming the proxy (never its credentials)."""
    via = response.via
    if via is None or error.codes:
        return error
    if response.status == 407:
        refused = RegistryUnreachableError(
            f"the proxy {via.url} refused to forward to {host}: it wants credentials (HTTP 407)",
            hint=f"put them in {via.variable} as http://USER:PASSWORD@HOST:PORT",
            kind="input",
        )
        refused.retryable = False
        return refused
    error.message += f" (answered through the proxy {via.url})"
    return error
