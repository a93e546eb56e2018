"""The only code that sends provider HTTP: limiter → build → authorize → send → classify → retry.

Client, limiter, clock, sleep and randomness are constructor arguments, so tests pass fakes
instead of patching. Errors leave here as `ProviderError`s with scrubbed text and no URL query.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.base import Adapter, Endpoint, HttpRequest, Parsed
from shared.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    SluiceError,
)
from shared.scrub import scrub
from workers.http import Sender, SendFailed, SendTimeout

Sleep = Callable[[float], Awaitable[None]]


class DeferRequest(SluiceError):
    """The next try is further away than a worker slot should wait: hand the request back."""

    def __init__(self, delay: float, cause: str) -> None:
        super().__init__(f"deferred {delay:.1f}s: {cause}")
        self.delay = delay


@dataclass
class Attempt:
    """What one call cost: attempts made and the last error (if it failed)."""

    attempts: int = 0
    errors: list[ProviderError] = field(default_factory=list)


class Transport:
    """Sends one logical provider call with retries; the limiter is consulted before each attempt."""

    def __init__(
        self,
        client: Sender,
        *,
        limiter: Any = None,
        max_attempts: int = 6,
        timeout: float = 120.0,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rand = rand
        self.clock = clock

    async def call(
        self,
        adapter: Adapter,
        endpoint: Endpoint,
        build: Callable[[], HttpRequest],
        parse: Callable[[dict[str, str], bytes], Parsed],
        attempt: Attempt,
    ) -> Parsed:
        """Build, send and parse, retrying retryable errors up to `max_attempts`."""
        while True:
            attempt.attempts += 1
            try:
                return await self._once(adapter, endpoint, build, parse)
            except ProviderError as exc:
                attempt.errors.append(exc)
                if not exc.retryable or attempt.attempts >= self.max_attempts:
                    raise
                await self.sleep(self.delay(attempt.attempts, exc.retry_after))

    def delay(self, attempts: int, hint: float | None) -> float:
        """Exponential backoff with full jitter, capped; a server hint is honoured as a floor."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempts - 1)) * self.rand()
        return max(backoff, hint or 0.0)

    async def _once(
        self,
        adapter: Adapter,
        endpoint: Endpoint,
        build: Callable[[], HttpRequest],
        parse: Callable[[dict[str, str], bytes], Parsed],
    ) -> Parsed:
        request = build()
        authorize = getattr(adapter, "authorize", None)
        if authorize is not None:
            request = await authorize(endpoint, request)
        status, headers, content = await self.send(request, endpoint.provider)
        if 200 <= status < 300:
            return parse(headers, content)
        error = adapter.parse_error(status, headers, content)
        error.provider = endpoint.provider
        error.message = scrub(error.message)
        error.args = (error.message,)
        if error.retry_after is None:
            error.retry_after = retry_after_from(headers, status)
        raise error

    async def send(self, request: HttpRequest, provider: str) -> tuple[int, dict[str, str], bytes]:
        try:
            return await asyncio.wait_for(self.client.send(request, self.timeout), self.timeout + 1)
        except (TimeoutError, SendTimeout):
            raise ProviderTimeoutError(
                f"{provider}: no answer within {self.timeout:g}s", provider=provider
            ) from None
        except SendFailed as exc:
            raise ProviderConnectionError(
                f"{provider}: could not connect to {_safe_url(request.url)}: {exc.kind}",
                provider=provider,
            ) from None


def retry_after_from(headers: dict[str, str], status: int) -> float | None:
    """`retry-after-ms`, then `retry-after` seconds; only on 408/409/429/5xx (Anthropic sends it on 200s)."""
    if status not in (408, 409, 429) and status < 500:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _safe_url(url: str) -> str:
    """The URL without its query string (a legacy `?key=` would otherwise leak)."""
    return scrub(url.split("?", 1)[0])
