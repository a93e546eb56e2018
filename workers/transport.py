"""The only code that sends provider HTTP: limiter → build → authorize → send → classify → retry.

Sender, gate (limiter), sleep and randomness are constructor arguments, so tests pass fakes
instead of patching. Errors leave here as `ProviderError`s with scrubbed text and no URL query.
A wait longer than the policy's inline limit raises `DeferRequest`: the request goes back to the
queue instead of holding a worker slot.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.adapters.base import Adapter, Endpoint, HttpRequest, Parsed
from shared.backoff import BackoffPolicy, parse_retry_after
from shared.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExceededError,
    SluiceError,
)
from shared.limiter import Grant
from shared.scrub import scrub
from workers.gate import Budget, LimitGate, Sleep
from workers.http import Reply, Sender, SendFailed, SendTimeout


class DeferRequest(SluiceError):
    """The next try is further away than a worker slot should wait: hand the request back."""

    def __init__(self, delay: float, cause: str) -> None:
        super().__init__(f"deferred {delay:.1f}s: {cause}")
        self.delay = delay


@dataclass
class Attempt:
    """What one call cost: attempts made and the errors met on the way."""

    attempts: int = 0
    throttled: int = 0
    """429s met while the limiter paced the scope that were not charged to `max_attempts`."""
    throttle_allowance: int = 0
    """How many 429s may go uncharged (0 for a request with fallbacks: it fails over instead)."""
    errors: list[ProviderError] = field(default_factory=list)
    deadline: float | None = None
    """Unix time after which no further attempt starts."""


Build = Callable[[], HttpRequest]
Parse = Callable[[dict[str, str], bytes], Parsed]


class Transport:
    """Sends one logical provider call with retries; the gate is consulted before every attempt."""

    def __init__(
        self,
        client: Sender,
        *,
        gate: LimitGate | None = None,
        policy: BackoffPolicy | None = None,
        timeout: float = 120.0,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        concurrency: int = 256,
    ) -> None:
        self.client = client
        self.in_flight = asyncio.Semaphore(concurrency)
        """Attempts under way at once (waiting for the limiter or on the wire); a request sleeping
        in backoff between attempts holds none."""
        self.gate = gate
        self.policy = policy or BackoffPolicy()
        self.timeout = timeout
        self.sleep = sleep
        self.rand = rand

    async def call(
        self, adapter: Adapter, endpoint: Endpoint, build: Build, parse: Parse, attempt: Attempt,
        budget: Budget | None = None,
    ) -> Parsed:
        """Build, send and parse, retrying retryable errors while the policy allows."""
        while True:
            attempt.attempts += 1
            try:
                async with self.in_flight:
                    return await self._attempt(adapter, endpoint, build, parse, budget)
            except ProviderError as exc:
                attempt.errors.append(exc)
                if self._uncharged(exc, attempt, budget):
                    attempt.throttled += 1
                charged = attempt.attempts - attempt.throttled
                if not exc.retryable or self.policy.exhausted(charged):
                    raise
                delay = self.policy.delay(max(charged, 1), exc.retry_after, self.rand)
                if attempt.deadline is not None and time.time() + delay.seconds >= attempt.deadline:
                    raise
                if delay.requeue:
                    raise DeferRequest(delay.seconds, type(exc).__name__) from None
                await self.sleep(delay.seconds)

    def _uncharged(self, exc: ProviderError, attempt: Attempt, budget: Budget | None) -> bool:
        """A 429 on a scope the limiter paces is push-back, not a fault of the request: the
        limiter slows every worker down, and the request keeps its attempts for real errors."""
        paced = budget is not None and self.gate is not None
        return paced and exc.status == 429 and attempt.throttled < attempt.throttle_allowance

    async def _attempt(
        self, adapter: Adapter, endpoint: Endpoint, build: Build, parse: Parse, budget: Budget | None
    ) -> Parsed:
        grant = await self._admit(budget, endpoint.provider)
        reply: Reply | None = None
        used: int | None = None
        try:
            reply = await self._send(adapter, endpoint, build())
            status, headers, content = reply
            if 200 <= status < 300:
                parsed = parse(headers, content)
                used = parsed.usage.total_tokens or None
                return parsed
            raise self._error(adapter, endpoint.provider, reply)
        finally:
            if budget is not None and self.gate is not None:
                await self.gate.settle(budget, grant, reply, used)

    async def _admit(self, budget: Budget | None, provider: str) -> Grant | None:
        if budget is None or self.gate is None:
            return None
        grant = await self.gate.admit(budget)
        if grant is None or grant.ok:
            return grant
        if grant.reason == "too_large":
            raise QuotaExceededError(
                f"{provider}: this request needs about {budget.tokens} tokens, more than the whole "
                "per-minute token budget; split or shorten it", provider=provider, status=429,
                code="request_too_large",
            )
        raise DeferRequest(grant.wait_s, f"rate limit ({grant.reason})")

    async def _send(self, adapter: Adapter, endpoint: Endpoint, request: HttpRequest) -> Reply:
        authorize = getattr(adapter, "authorize", None)
        if authorize is not None:
            request = await authorize(endpoint, request)
        return await self.send(request, endpoint.provider)

    def _error(self, adapter: Adapter, provider: str, reply: Reply) -> ProviderError:
        status, headers, content = reply
        error = adapter.parse_error(status, headers, content)
        error.provider = provider
        error.message = scrub(error.message)
        error.args = (error.message,)
        if error.retry_after is None:
            error.retry_after = retry_after_from(headers, status)
        return error

    async def send(self, request: HttpRequest, provider: str) -> Reply:
        try:
            return await self.client.send(request, self.timeout)
        except SendTimeout:
            raise ProviderTimeoutError(
                f"{provider}: no answer within {self.timeout:g}s", provider=provider
            ) from None
        except SendFailed as exc:
            raise ProviderConnectionError(
                f"{provider}: could not connect to {_safe_url(request.url)}: {exc.kind}",
                provider=provider,
            ) from None


def retry_after_from(headers: dict[str, str], status: int) -> float | None:
    """The server's wait hint (`retry-after-ms`, `retry-after`), only on 408/409/429/5xx."""
    return parse_retry_after(headers, time.time(), status=status)


def _safe_url(url: str) -> str:
    """The URL without its query string (a legacy `?key=` would otherwise leak)."""
    return scrub(url.split("?", 1)[0])
