"""Retry policy tables: should_retry, parse_retry_after, next_delay, BackoffPolicy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from shared.backoff import (
    BackoffPolicy,
    Delay,
    backoff_window,
    next_delay,
    parse_retry_after,
    should_retry,
)
from tests.conftest import load_sample

NOW = datetime(2026, 2, 17, 23, 44, 12, tzinfo=UTC).timestamp()


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (502, {}, True),
        (503, {}, True),
        (504, {}, True),
        (529, {}, True),
        (400, {}, False),
        (401, {}, False),
        (403, {}, False),
        (404, {}, False),
        (413, {}, False),
        (422, {}, False),
        (424, {}, False),
        (200, {}, False),
        (400, {"x-should-retry": "true"}, True),
        (429, {"x-should-retry": "false"}, False),
        (503, {"X-Should-Retry": "False"}, False),
        (401, {"X-SHOULD-RETRY": " TRUE "}, True),
        (429, {"x-should-retry": "maybe"}, True),
        (404, {"x-should-retry": ""}, False),
    ],
)
def test_should_retry(status: int, headers: dict[str, str], expected: bool) -> None:
    assert should_retry(status, headers) is expected


def test_should_retry_on_recorded_responses() -> None:
    overloaded = load_sample("anthropic_529_overloaded.json")
    assert should_retry(overloaded["status"], overloaded["headers"]) is True
    ratelimited = load_sample("anthropic_429_rate_limit.json")["headers_example"]
    assert should_retry(ratelimited["status"], ratelimited["headers"]) is True


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"retry-after": "13"}, 13.0),
        (429, {"Retry-After": "1.5"}, 1.5),
        (503, {"retry-after": "0"}, 0.0),
        (429, {"retry-after-ms": "644"}, 0.644),
        (429, {"retry-after-ms": "250.5", "retry-after": "9"}, 0.2505),
        (429, {"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        (429, {"retry-after": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), True)}, 30.0),
        (429, {"retry-after": "Tue, 17 Feb 2026 23:44:02 GMT"}, 0.0),
        (429, {"retry-after": "soon"}, None),
        (429, {"retry-after": "-3"}, None),
        (429, {"retry-after": "nan"}, None),
        (429, {"retry-after": "inf"}, None),
        (429, {}, None),
        (408, {"retry-after": "2"}, 2.0),
        (409, {"retry-after": "2"}, 2.0),
        (529, {"retry-after": "2"}, 2.0),
        (200, {"retry-after": "13"}, None),
        (400, {"retry-after": "5"}, None),
        (404, {"retry-after-ms": "5"}, None),
    ],
)
def test_parse_retry_after(status: int, headers: dict[str, str], expected: float | None) -> None:
    got = parse_retry_after(headers, NOW, status=status)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_retry_after_on_successes_is_ignored_in_real_recordings() -> None:
    """Anthropic and the HF router send retry-after on 200s: it must not become a wait."""
    hf = load_sample("huggingface_router_chat.json")["response"]
    assert hf["headers"]["retry-after"] == "30"
    assert parse_retry_after(hf["headers"], NOW, status=hf["status"]) is None
    assert parse_retry_after(hf["headers"], NOW, status=429) == 30.0


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.0, 0.0),
        (1, 0.5, 0.25),
        (1, 0.999, 0.4995),
        (2, 0.5, 0.5),
        (3, 0.5, 1.0),
        (4, 1.0, 4.0),
        (8, 0.5, 30.0),  # 0.5 * 2**7 = 64 -> capped at 60
        (10_000, 0.5, 30.0),  # no overflow for absurd attempt numbers
        (0, 0.5, 0.25),  # clamped to the first retry
    ],
)
def test_next_delay_full_jitter(attempt: int, rand: float, expected: float) -> None:
    assert next_delay(attempt, None, fixed(rand)) == pytest.approx(expected)


def test_next_delay_custom_base_and_cap() -> None:
    assert next_delay(3, None, fixed(1.0), base=1.0, cap=3.0) == 3.0
    assert backoff_window(3, base=1.0, cap=100.0) == 4.0


@pytest.mark.parametrize(
    ("hint", "rand", "expected"),
    [
        (2.0, 0.0, 2.0),
        (2.0, 1.0, 2.2),  # +10 %
        (59.0, 1.0, 60.0),  # jitter capped at 1 s
        (0.0, 1.0, 0.0),
        (300.0, 0.5, 300.5),  # hints are not capped by `cap`
    ],
)
def test_next_delay_honours_hint_as_floor(hint: float, rand: float, expected: float) -> None:
    got = next_delay(5, hint, fixed(rand))
    assert got == pytest.approx(expected)
    assert got >= hint


def test_negative_hint_falls_back_to_backoff() -> None:
    assert next_delay(2, -1.0, fixed(0.5)) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (None, Delay(0.25, requeue=False, hinted=False)),
        (10.0, Delay(10.0, requeue=False, hinted=True)),
        (60.0, Delay(60.0, requeue=False, hinted=True)),
        (61.0, Delay(61.0, requeue=True, hinted=True)),
        (3600.0, Delay(3600.0, requeue=True, hinted=True)),
    ],
)
def test_policy_flags_long_waits_for_requeue(hint: float | None, expected: Delay) -> None:
    policy = BackoffPolicy(inline_wait_limit=60.0)
    assert policy.delay(1, hint, fixed(0.0) if hint else fixed(0.5)) == expected


def test_policy_uses_its_own_base_and_cap() -> None:
    policy = BackoffPolicy(base=2.0, cap=5.0, inline_wait_limit=4.0)
    assert policy.delay(1, None, fixed(1.0)) == Delay(2.0, requeue=False, hinted=False)
    assert policy.delay(4, None, fixed(1.0)) == Delay(5.0, requeue=True, hinted=False)


def test_policy_exhaustion_counts_attempts_made() -> None:
    policy = BackoffPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BackoffPolicy().cap = 1.0  # type: ignore[misc]
