"""The limiter at a request's door: admit before sending, settle (observe + release) after.

A scope with no configured limit and nothing learned about it skips the limiter (three Redis
round trips saved per request); it becomes limited as soon as a response carries a rate-limit
signal or a 429 here, or when a probe (at most once a second per scope) finds that another worker
has stored state for it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from shared.limiter import Grant, Limiter, Limits, wait_for_grant
from shared.ratelimit import RateSignal, parse_signal

Sleep = Callable[[float], Awaitable[None]]
RECENT_RESPONSES: Final = 200
"""Responses per scope remembered (in this process) to tell a stray 429 from a rate limit."""
MIN_RECENT: Final = 20
STRAY_429_SHARE: Final = 0.05
"""Below this share of 429s among recent responses, a 429 without an exhausted window is treated
as a one-off: the request backs off alone, no fleet-wide cooldown and no AIMD decrease."""
PROBE_INTERVAL: Final = 1.0
"""Seconds between checks for limiter state another worker stored for an unlimited scope."""
EMPTY: Final = RateSignal()


@dataclass(frozen=True)
class Budget:
    """What one request asks of the limiter: its scope, the configured limits, estimated tokens."""

    scope: str
    limits: Limits
    tokens: int
    provider: str = ""


RATE_HEADER_PREFIXES: Final = ("x-ratelimit", "anthropic-ratelimit", "ratelimit", "retry-after")


def has_rate_headers(headers: dict[str, str]) -> bool:
    """Cheap pre-check so a plain 2xx from an unlimited scope skips header parsing."""
    return any(name.lower().startswith(RATE_HEADER_PREFIXES) for name in headers)


class LimitGate:
    def __init__(
        self,
        limiter: Limiter,
        *,
        probe: Callable[[str], Awaitable[bool]],
        sleep: Sleep,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter
        self.probe = probe
        self.sleep = sleep
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._active: set[str] = set()
        self._probed: dict[str, float] = {}
        self._recent: dict[str, deque[bool]] = {}

    async def limited(self, budget: Budget) -> bool:
        limits = budget.limits
        if limits.rpm or limits.tpm or limits.max_in_flight or budget.scope in self._active:
            return True
        now = self.clock()
        if now - self._probed.get(budget.scope, -PROBE_INTERVAL) < PROBE_INTERVAL:
            return False
        self._probed[budget.scope] = now
        if await self.probe(budget.scope):
            self._active.add(budget.scope)
            return True
        return False

    async def admit(self, budget: Budget) -> Grant | None:
        """None: no limiter needed. Else a grant, already waited for; `ok=False` means
        `too_large` or a wait longer than `max_wait_s` (hand the request back)."""
        if not await self.limited(budget):
            return None
        return await wait_for_grant(self.limiter, budget.scope, budget.limits, budget.tokens,
                                    sleep=self.sleep, max_wait_s=self.max_wait_s)

    async def settle(
        self, budget: Budget, grant: Grant | None, reply: tuple[int, dict[str, str], bytes] | None,
        used_tokens: int | None,
    ) -> RateSignal:
        """Tell the limiter what the provider said, free the slot; returns the parsed signal."""
        signal = EMPTY
        if reply is not None:
            self._record(budget.scope, reply[0])
        if reply is not None and (grant is not None or reply[0] >= 300 or has_rate_headers(reply[1])):
            status, headers, content = reply
            signal = parse_signal(status, headers, content, time.time(), provider=budget.provider)
            if status == 429 and self._stray_429(budget.scope, signal):
                return await self._release(budget, grant, used_tokens, signal)
            if grant is not None or signal != EMPTY or status == 429:
                self._active.add(budget.scope)
                await self.limiter.observe(budget.scope, signal, status)
        return await self._release(budget, grant, used_tokens, signal)

    async def _release(
        self, budget: Budget, grant: Grant | None, used_tokens: int | None, signal: RateSignal
    ) -> RateSignal:
        if grant is not None and grant.ok:
            await self.limiter.release(budget.scope, grant.lease_id, used_tokens=used_tokens,
                                       reserved_tokens=budget.tokens)
        return signal

    def _record(self, scope: str, status: int) -> None:
        recent = self._recent.setdefault(scope, deque(maxlen=RECENT_RESPONSES))
        recent.append(status == 429)

    def _stray_429(self, scope: str, signal: RateSignal) -> bool:
        """A 429 among mostly successes, with no exhausted window: the provider is not pacing us
        (a random overload), so only this request waits; the fleet does not stop for it."""
        recent = self._recent.get(scope, ())
        exhausted = signal.remaining_requests == 0 or signal.remaining_tokens == 0
        return not exhausted and len(recent) >= MIN_RECENT and sum(recent) / len(recent) < STRAY_429_SHARE
