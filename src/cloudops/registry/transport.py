"""One registry host's HTTP transport: auth (Basic or bearer challenge), error mapping and
the retry policy, in that order around each request.

Order of the layers, outermost first (the same split as go-containerregistry's
transport.go): retry -> auth (answer a 401 challenge, refresh an expired token) -> send ->
map a failed status to a typed error. A request whose body is a stream cannot be replayed,
so it is sent once and a broken stream is retried by the caller as a whole blob.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from cloudops.registry import trust
from cloudops.registry.auth import Challenge, Credentials, Keychain, parse_challenge
from cloudops.registry.errors import (
    AuthenticationError,
    CredentialTargetRefused,
    InsecureRegistryError,
    RegistryError,
    RegistryUnreachableError,
    TokenExpiredError,
    error_for_status,
)
from cloudops.registry.retry import RetryPolicy
from cloudops.registry.wire import Wire

MAX_ERROR_BODY = 64 * 1024


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
        client: httpx.AsyncClient,
        keychain: Keychain,
        retry: RetryPolicy,
        *,
        insecure: bool,
        wire: Wire,
        verify: ssl.SSLContext | bool = True,
        insecure_hosts: Iterable[str] = (),
        clients: Callable[[bool], httpx.AsyncClient] | None = None,
    ):
        self.host = host
        # Every --insecure-registry host, not only this one: a token realm over plain HTTP
        # is allowed only on one of them (trust.py).
        self.insecure_hosts = frozenset(insecure_hosts) | ({host} if insecure else frozenset())
        # A client for another host (a token realm), by whether that host is insecure: an
        # insecure registry's own client skips certificate checks, and credentials must
        # not go over unverified TLS to a realm the user never named.
        self._clients = clients
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
        self._client = client
        self._keychain = keychain
        self.retry = retry
        self._challenge: Challenge | None = None
        self._credentials: Credentials | None = None
        self._credentials_resolved = False
        self._tokens: dict[str, str] = {}
        self._auth_lock = asyncio.Lock()
        self.wire = wire
        self.verify = verify

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
        params: list[tuple[str, str | int | float | bool | None]] = []
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
        client = self._client
        if self._clients is not None and not trust.on_host(realm, self.host):
            client = self._clients(trust.is_insecure(realm, self.insecure_hosts))
        try:
            response = await client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise _connection_error(exc, realm.split("/")[2] if "//" in realm else realm) from None
        if response.status_code in (401, 403):
            if credentials is None:
                raise _no_credentials(self.host)
            raise AuthenticationError(
                f"the token service of {self.host} refused the credentials (HTTP {response.status_code})",
                hint="check the username and password for this registry",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise error_for_status(
                response.status_code, response.content, what="a token request", host=self.host
            )
        try:
            doc = response.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"the token service of {self.host} returned no token", status=response.status_code
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
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: Any = None,
        expect: tuple[int, ...] = (200,),
        stream: bool = False,
        replayable: bool = True,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send a request, answering auth challenges; return a response whose status is in
        ``expect``. With ``stream`` the body is left unread: the caller must close it."""
        scope_tuple = tuple(scopes)

        async def attempt() -> httpx.Response:
            return await self._send_authenticated(
                method,
                path,
                what,
                scope_tuple,
                headers or {},
                params,
                content,
                expect,
                stream,
                replayable,
                follow_redirects,
            )

        if not replayable:
            return await attempt()
        return await self.retry.run(attempt)

    async def _send_authenticated(self, *args: Any) -> httpx.Response:
        if not self._scheme_settled.is_set():
            async with self._scheme_probe:
                if not self._scheme_settled.is_set():
                    try:
                        return await self._send_authenticated_once(*args)
                    finally:
                        # Settled whatever the answer: a host that cannot be reached must
                        # not make the waiting requests probe it one after another.
                        self._scheme_settled.set()
        return await self._send_authenticated_once(*args)

    async def _send_authenticated_once(
        self,
        method: str,
        path: str,
        what: str,
        scopes: tuple[Scope, ...],
        headers: dict[str, str],
        params: dict[str, str] | None,
        content: Any,
        expect: tuple[int, ...],
        stream: bool,
        replayable: bool,
        follow_redirects: bool,
    ) -> httpx.Response:
        refreshed = False
        # Up to three rounds: as sent, after answering a 401 challenge, after refreshing
        # credentials. Switching an insecure host to plain HTTP does not use up a round.
        round_ = -1
        while round_ < 2:
            round_ += 1
            sent = self._auth_header(scopes)
            request_headers = dict(headers)
            if sent:
                request_headers["Authorization"] = sent
            request = self._client.build_request(
                method, self.url(path, what=what), headers=request_headers, params=params, content=content
            )
            try:
                response = await self._client.send(request, stream=True, follow_redirects=follow_redirects)
            except httpx.HTTPError as exc:
                error = _connection_error(exc, self.host)
                downgraded = self.base_url.startswith("http://")  # by a concurrent request
                if (
                    isinstance(error, InsecureRegistryError)
                    and (self._may_downgrade or downgraded)
                    and request.url.scheme == "https"
                ):
                    self._may_downgrade = False
                    self.base_url = f"http://{self.host}"
                    round_ -= 1
                    continue
                raise error from None
            if response.status_code == 401 and not trust.on_host(str(response.url), self.host):
                # A redirect target (ECR sends blob reads to S3) asked for credentials: its
                # challenge is not the registry's, and answering it would hand the
                # registry's credentials to whatever realm it names (docs/security.md).
                await response.aclose()
                raise AuthenticationError(
                    f"{response.url.host}, where {self.host} redirected {what}, asked for credentials: "
                    "refused, the registry's credentials go only to the registry",
                    hint="check the registry's configuration (its storage redirects)",
                    status=401,
                )
            if response.status_code == 401 and replayable and round_ < 2:
                challenge_header = response.headers.get("www-authenticate")
                await response.aclose()
                if sent and self._challenge and self._challenge.scheme == "bearer":
                    # A bearer token can expire mid-copy: drop it and ask for a fresh one.
                    self._tokens.pop(_scope_key(scopes), None)
                    sent = None
                await self._authenticate(challenge_header, sent, scopes)
                continue
            if response.status_code in expect:
                if not stream:
                    try:
                        await response.aread()
                    except httpx.HTTPError as exc:
                        raise _connection_error(exc, self.host) from None
                return response
            body = await _read_limited(response)
            error = error_for_status(
                response.status_code,
                body,
                what=what,
                host=self.host,
                retry_after=response.headers.get("retry-after"),
            )
            # ECR says "expired" with 403, not 401 (ECR-NOTES.md). A HEAD answer has no body
            # to say why, so a bodiless 403 to credentials we sent gets one refresh too.
            maybe_expired = (
                response.status_code == 403 and sent is not None and not error.codes and not refreshed
            )
            if isinstance(error, TokenExpiredError) or maybe_expired:
                refreshed = True
                self._forget_credentials()
                await self._resolve_credentials()
                if replayable and round_ < 2:
                    continue
                error.retryable = isinstance(error, TokenExpiredError)
            if response.status_code == 401 and sent is None:
                raise _no_credentials(self.host)
            raise error
        raise AuthenticationError(f"{self.host} kept refusing the credentials for {what}", status=401)


def _scope_key(scopes: tuple[Scope, ...]) -> str:
    return " ".join(sorted(str(s) for s in scopes))


def _no_credentials(host: str) -> AuthenticationError:
    return AuthenticationError(
        f"{host} requires credentials and none are configured for it",
        hint="log in (docker login / skopeo login), or pass credentials through "
        "--src-creds-env/--dest-creds-env",
        status=401,
    )


async def _read_limited(response: httpx.Response) -> bytes:
    chunks = bytearray()
    try:
        async for chunk in response.aiter_raw():
            chunks.extend(chunk)
            if len(chunks) > MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()
    return bytes(chunks[:MAX_ERROR_BODY])


def _connection_error(exc: httpx.HTTPError, host: str) -> RegistryError:
    text = str(exc)
    cause = exc.__context__ or exc.__cause__
    chain = f"{text} {cause!r}"
    if isinstance(exc, httpx.ConnectError):
        if (
            "Name or service not known" in chain
            or "nodename nor servname" in chain
            or "Temporary failure in name resolution" in chain
            or "No address associated" in chain
        ):
            error = RegistryUnreachableError(
                f"cannot resolve registry host {host}",
                hint="check the host name in the image reference",
                kind="input",
            )
            error.retryable = False
            return error
        if (
            "WRONG_VERSION_NUMBER" in chain
            or "wrong version number" in chain
            or "record layer failure" in chain
            or "packet length too long" in chain
        ):
            return InsecureRegistryError(
                f"{host} does not speak HTTPS (it looks like a plain-HTTP registry)",
                hint=f"if you trust the network, pass --insecure-registry {host}",
            )
        if "CERTIFICATE_VERIFY_FAILED" in chain or isinstance(cause, ssl.SSLCertVerificationError):
            error = RegistryUnreachableError(
                f"the TLS certificate of {host} could not be verified",
                hint="pass --ca-bundle FILE with the CA that signed it, or --insecure-registry "
                f"{host} to skip verification",
                kind="input",
            )
            error.retryable = False
            return error
        return RegistryUnreachableError(
            f"cannot connect to registry {host} ({type(exc).__name__})",
            hint="check the host and port, and that the registry is running",
        )
    if isinstance(exc, httpx.TimeoutException):
        return RegistryUnreachableError(
            f"timed out talking to registry {host}", hint="check the network; retries ran out"
        )
    return RegistryUnreachableError(
        f"connection to registry {host} broke ({type(exc).__name__})",
        hint="the network or the registry dropped the connection; retries ran out",
    )
