"""The one HTTP seam: what sends provider requests.

`Sender.send(request, timeout)` → `(status, headers, body)`. Two implementations:
- `AiohttpSender` (the default): aiohttp directly, one pooled session per process;
- `HttpxSender`: httpx's API, for an injected `httpx.MockTransport` in tests or `SLUICE_HTTP=httpx`.
docs/benchmarks.md has the numbers that chose the default (httpx's own transport is several times
slower under concurrency, and even httpx over aiohttp spends more CPU per request than aiohttp).
Network failures come out as `SendTimeout` / `SendFailed` so the transport never sees a library's
exception (whose text may hold a URL).
"""

from __future__ import annotations

from typing import Literal, Protocol

import aiohttp
import httpx

from shared.adapters.base import HttpRequest

Backend = Literal["aiohttp", "httpx"]
Reply = tuple[int, dict[str, str], bytes]


class SendTimeout(Exception):
    """No complete answer within the timeout."""


class SendFailed(Exception):
    """Could not connect, or the connection broke; `kind` names what happened, never the URL."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Sender(Protocol):
    async def send(self, request: HttpRequest, timeout: float) -> Reply: ...

    async def aclose(self) -> None: ...


class AiohttpSender:
    """aiohttp with a keep-alive pool of `max_connections`; the session is made on first use (on
    the loop that will use it)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300)
            self.session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self.session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(seconds)
        if found is None:
            found = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return found

    async def send(self, request: HttpRequest, timeout: float) -> Reply:
        session = self._session()
        try:
            async with session.request(
                request.method, request.url, data=request.body or None, headers=request.headers,
                timeout=self._timeout(timeout), allow_redirects=False,
            ) as response:
                body = await response.read()
                headers = {k.lower(): v for k, v in response.headers.items()}
                return response.status, headers, body
        except TimeoutError:
            raise SendTimeout() from None
        except aiohttp.ClientError as exc:
            raise SendFailed(type(exc).__name__) from None

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


class HttpxSender:
    """httpx's API over any transport (tests pass `httpx.MockTransport`)."""

    def __init__(self, max_connections: int, transport: httpx.AsyncBaseTransport | None = None) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.client = httpx.AsyncClient(transport=transport, limits=limits, follow_redirects=False)

    async def send(self, request: HttpRequest, timeout: float) -> Reply:
        try:
            response = await self.client.request(
                request.method, request.url, headers=request.headers, content=request.body,
                timeout=timeout,
            )
        except httpx.TimeoutException:
            raise SendTimeout() from None
        except httpx.TransportError as exc:
            raise SendFailed(type(exc).__name__) from None
        return response.status_code, dict(response.headers), response.content

    async def aclose(self) -> None:
        await self.client.aclose()


def make_sender(
    *, max_connections: int, backend: Backend = "aiohttp", transport: httpx.AsyncBaseTransport | None = None
) -> Sender:
    if transport is not None or backend == "httpx":
        return HttpxSender(max_connections, transport)
    return AiohttpSender(max_connections)
