"""A round tripper that answers from a function, for unit tests of the transport's logic
(scheme probing, the credential rule) where the answer must be exactly controlled. The
real one (registry/http.py) is tested against real sockets in tests/integration."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cloudops.registry.http import HttpRequest, HttpResponse, RoundTripper

Handler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


def answer(
    status: int, headers: Mapping[str, str] | None = None, body: bytes = b"", *, url: str = ""
) -> HttpResponse:
    response = HttpResponse(status, {k.lower(): v for k, v in (headers or {}).items()}, url, None)
    response.body = body
    return response


class FakeRoundTripper(RoundTripper):
    def __init__(self, handler: Handler):
        super().__init__(max_connections=1)
        self.handler = handler
        self.sent: list[HttpRequest] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request)
        result: Any = self.handler(request)
        if asyncio.iscoroutine(result):
            result = await result
        response: HttpResponse = result
        response.url = response.url or request.url
        return response
