"""Retry policy as pure functions: whether to retry, the server's hint, how long to wait.

No clock, no sleep, no randomness inside: callers pass `now` and `rand`, so every rule is a
table test. The transport asks `should_retry`, reads the hint with `parse_retry_after` (or the
richer `shared.ratelimit.parse_signal`), then `BackoffPolicy.delay` says how long to wait and
whether that wait is short enough to sleep on or long enough to hand the request back.

Jitter is **full jitter** for our own backoff (a uniform draw in `[0, window)`, window =
`base * 2**(attempt-1)` capped at `cap`): many workers that failed together spread out instead
of retrying in lock-step. A server hint is honoured as a floor: the wait is the hint plus a small
positive jitter (at most 10 % of the hint and never more than one second).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Final

import msgspec

RETRY_STATUSES: Final = frozenset({408, 409, 429})
"""Retried below 500 (every status >= 500 is retried too, Anthropic's 529 included)."""

HINT_JITTER_FRACTION: Final = 0.1
HINT_JITTER_MAX: Final = 1.0
MAX_EXPONENT: Final = 62
"""Attempts beyond this cannot grow the window further (and 2.0**n would overflow later)."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value by lower-case `name`, whatever the case of the mapping's keys."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():
        if key.lower() == name:
            return found
    return None


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A plain dict with lower-case names (later duplicates win), for many lookups."""
    return {key.lower(): value for key, value in headers.items()}


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and every 5xx (529 overloaded included); nothing else."""
    return status in RETRY_STATUSES or status >= 500


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """`x-should-retry: true|false` wins; else 408/409/429/5xx retry and other statuses do not."""
    flag = (header(headers, "x-should-retry") or "").strip().lower()
    if flag in ("true", "false"):
        return flag == "true"
    return is_retryable_status(status)


def parse_retry_after(headers: Mapping[str, str], now: float, *, status: int) -> float | None:
    """The server's wait in seconds: `retry-after-ms`, else `retry-after` (seconds or HTTP date).

    Only read on 408/409/429/5xx (Anthropic and the HF router send `retry-after` on 200s).
    A date in the past gives 0.0; garbage, negative or non-finite values give None.
    """
    if not is_retryable_status(status):
        return None
    millis = _seconds(header(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = header(headers, "retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    return seconds if seconds is not None else _http_date_delay(value, now)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _http_date_delay(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def backoff_window(attempt: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """The upper end of the full-jitter draw for retry number `attempt` (1 = first retry)."""
    exponent = min(max(attempt, 1) - 1, MAX_EXPONENT)
    return min(cap, base * 2.0**exponent)


def next_delay(
    attempt: int,
    hint: float | None,
    rand: Callable[[], float],
    *,
    base: float = 0.5,
    cap: float = 60.0,
) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry).

    With a server `hint`: the hint plus a jitter of at most min(10 % of it, 1 s) — never less
    than the hint, and not capped (the caller decides whether a long hint is worth sleeping on).
    Without: full jitter, `rand() * min(cap, base * 2**(attempt-1))`. `rand` returns [0, 1).
    """
    if hint is not None and hint >= 0:
        return hint + rand() * min(HINT_JITTER_FRACTION * hint, HINT_JITTER_MAX)
    return rand() * backoff_window(attempt, base=base, cap=cap)


class Delay(msgspec.Struct, frozen=True):
    """How long to wait, and whether to wait here (`requeue=False`) or hand the request back to
    the queue (`requeue=True`: the wait is longer than `inline_wait_limit`)."""

    seconds: float
    requeue: bool
    hinted: bool


class BackoffPolicy(msgspec.Struct, frozen=True):
    """The retry knobs in one frozen value.

    `base`/`cap`: the full-jitter window (0.5 s doubling, at most 60 s).
    `max_attempts`: total attempts including the first (6: one try and five retries).
    `max_throttled`: 429s on a limiter-paced scope that are not charged to `max_attempts` (the
      limiter, not the request, answers for them); past this many they count like any error.
    `inline_wait_limit`: a wait longer than this is not slept on inside a worker; the request
    goes back to the queue (a daily quota's hour-long `retry-after`, a long shared cooldown).
    """

    base: float = 0.5
    cap: float = 60.0
    max_attempts: int = 6
    max_throttled: int = 50
    inline_wait_limit: float = 60.0

    def delay(self, attempt: int, hint: float | None, rand: Callable[[], float]) -> Delay:
        seconds = next_delay(attempt, hint, rand, base=self.base, cap=self.cap)
        return Delay(seconds, seconds > self.inline_wait_limit, hint is not None)

    def exhausted(self, attempts_made: int) -> bool:
        """True when `attempts_made` attempts leave no retry."""
        return attempts_made >= self.max_attempts
