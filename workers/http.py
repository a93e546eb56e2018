"""The one HTTP seam: which client sends provider requests.

httpx's API with the aiohttp transport by default (measured in docs/benchmarks.md: httpx's own
transport is several times slower under concurrency). Tests inject `httpx.MockTransport` here.
"""

from __future__ import annotations

from typing import Literal

import httpx

Backend = Literal["aiohttp", "httpx"]


def make_client(
    *, max_connections: int, timeout: float, backend: Backend = "aiohttp",
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport is None and backend == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(
        transport=transport, limits=limits, timeout=httpx.Timeout(timeout), follow_redirects=False
    )
