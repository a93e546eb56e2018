"""What a response teaches the limiter: a shared cooldown, a provider limit, an AIMD step.

Pure policy: `learn(signal, status)` turns one response's `RateSignal` into a `Lesson` that both
limiter implementations apply to their state the same way (Redis: `lua/limiter.lua`).

Cooldown (every worker on every host waits it out):
1. a `retry-after` (or body hint) on a 429 or 5xx;
2. else any family exhausted (`remaining == 0`) with a reset: the longest such reset;
3. else, on a 429 only: the longest reset the provider sent (at most `MAX_GUESSED_COOLDOWN`),
   or `BARE_429_COOLDOWN` when it sent nothing at all.

Learning (used only where the caller configured no limit for that dimension):
- a `limit` header with a window of at most an hour is adopted as a per-minute rate
  (`limit * 60 / window`); the limiter applies a safety margin when it uses it;
- a 429 that carries no limit header steps AIMD down (the limiter cuts its learned rpm to a
  fraction of the rate the provider still accepted);
  a 2xx steps it up (additive, only once AIMD is active).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from shared.ratelimit import RateSignal

AimdStep = Literal["", "up", "down"]

BARE_429_COOLDOWN: Final = 1.0
"""Seconds every worker pauses after a 429 that said nothing about when to come back."""
MAX_GUESSED_COOLDOWN: Final = 60.0
MAX_ADOPTED_WINDOW: Final = 3600.0
"""Limits over longer windows (Groq's daily requests) are quotas, not pacing rates."""


class Lesson(msgspec.Struct, frozen=True):
    """What to write into the limiter's shared state after one response."""

    cooldown_s: float | None = None
    rpm: float | None = None
    tpm: float | None = None
    aimd: AimdStep = ""


def learn(signal: RateSignal, status: int) -> Lesson:
    return Lesson(
        cooldown_s=cooldown_for(signal, status),
        rpm=adopted_rate(signal.limit_requests, signal.requests_window_s),
        tpm=adopted_rate(signal.limit_tokens, signal.tokens_window_s),
        aimd=aimd_step(signal, status),
    )


def cooldown_for(signal: RateSignal, status: int) -> float | None:
    """Seconds every worker should wait before the next request to this scope (None: no pause)."""
    pushed_back = status == 429 or status >= 500
    if pushed_back and signal.retry_after_s is not None:
        return signal.retry_after_s
    exhausted = _exhausted_resets(signal)
    if exhausted:
        return max(exhausted)
    if status != 429:
        return None
    resets = [r for r in (signal.reset_requests_s, signal.reset_tokens_s) if r is not None]
    return min(max(resets), MAX_GUESSED_COOLDOWN) if resets else BARE_429_COOLDOWN


def _exhausted_resets(signal: RateSignal) -> list[float]:
    pairs = (
        (signal.remaining_requests, signal.reset_requests_s),
        (signal.remaining_tokens, signal.reset_tokens_s),
    )
    return [reset for left, reset in pairs if left == 0 and reset is not None and reset > 0]


def adopted_rate(limit: int | None, window_s: float | None) -> float | None:
    """A provider's limit as a per-minute rate, when its window is known and short enough."""
    if not limit or limit <= 0 or window_s is None or not 0 < window_s <= MAX_ADOPTED_WINDOW:
        return None
    return limit * 60.0 / window_s


def aimd_step(signal: RateSignal, status: int) -> AimdStep:
    """`down` on a 429 with no limit headers to learn from, `up` on success, else nothing."""
    if status == 429:
        has_limits = signal.limit_requests is not None or signal.limit_tokens is not None
        return "" if has_limits else "down"
    return "up" if 200 <= status < 300 else ""
