"""Rate-limit signals from recorded provider headers and bodies, and what the limiter learns."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from shared.cooldown import BARE_429_COOLDOWN, Lesson, learn
from shared.ratelimit import (
    RateSignal,
    parse_duration,
    parse_headers,
    parse_reset,
    parse_signal,
    retry_hint_from_body,
)
from tests.conftest import load_sample

NOW = datetime(2026, 2, 17, 23, 44, 12, tzinfo=UTC).timestamp()


def date_of(headers: dict[str, str]) -> float:
    """The recorded response's own `Date`, so RFC 3339 resets come out as they did live."""
    value = headers.get("Date") or headers["date"]
    return parsedate_to_datetime(value).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("2ms", 0.002),
        ("1.5s", 1.5),
        ("2m59.56s", 179.56),
        ("0s", 0.0),
        ("7.66s", 7.66),
        ("120ms", 0.12),
        ("1h2m3s", 3723.0),
        ("500us", 0.0005),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        ("59s", 59.0),
        ("33011.382867", 33011.382867),
        ("12", 12.0),
        (" 3s ", 3.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1s", "-4", "1.5x", "s", "1s2", "nan", "inf"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2m59.56s", 179.56),
        ("2026-02-17T23:44:42Z", 30.0),
        ("2026-02-17T23:44:11Z", 0.0),  # already past: no wait
        ("2026-02-17T23:44:13.5+00:00", 1.5),
        (str(int(NOW) + 45), 45.0),  # Unix seconds (Cohere)
        (str(int(NOW * 1000) + 2500), 2.5),  # Unix milliseconds (OpenRouter)
        ("2026-02-17T23:44:42", None),  # no zone: refused rather than guessed
        ("tomorrow", None),
    ],
)
def test_parse_reset(text: str, seconds: float | None) -> None:
    got = parse_reset(text, NOW)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_openai_recorded_headers() -> None:
    response = load_sample("openai_chat_completion.json")["response"]
    assert parse_headers(response["headers"], NOW, status=response["status"]) == RateSignal(
        limit_requests=30000,
        remaining_requests=29999,
        reset_requests_s=0.002,
        limit_tokens=150000000,
        remaining_tokens=149999810,
        reset_tokens_s=0.0,
        requests_window_s=60.0,
        tokens_window_s=60.0,
    )


def test_openai_second_recorded_headers() -> None:
    example = load_sample("openai_429_error.json")["examples"][4]
    signal = parse_headers(example["headers_from_a_success_response"], NOW)
    assert (signal.limit_requests, signal.remaining_requests) == (500, 499)
    assert (signal.limit_tokens, signal.remaining_tokens) == (30000, 29996)
    assert signal.reset_requests_s == pytest.approx(0.12)
    assert signal.reset_tokens_s == pytest.approx(0.008)


def test_openai_429_without_any_headers_gives_an_empty_signal() -> None:
    example = load_sample("openai_429_error.json")["examples"][3]
    assert parse_headers(example["headers"], NOW, status=429) == RateSignal()


def test_anthropic_recorded_headers() -> None:
    response = load_sample("anthropic_message_stream_ratelimit_headers.json")["response"]
    headers = response["headers"]
    signal = parse_headers(headers, date_of(headers), status=200)
    assert signal == RateSignal(
        limit_requests=20000,
        remaining_requests=19999,
        reset_requests_s=0.0,  # the recorded reset is one second before the response's Date
        limit_tokens=2400000,
        remaining_tokens=2400000,
        reset_tokens_s=0.0,
        requests_window_s=60.0,
        tokens_window_s=60.0,
    )


def test_anthropic_recorded_429_headers() -> None:
    example = load_sample("anthropic_429_rate_limit.json")["headers_example"]
    headers = example["headers"]
    signal = parse_headers(headers, date_of(headers), status=example["status"])
    assert (signal.limit_requests, signal.remaining_requests) == (5, 0)
    assert signal.reset_requests_s == pytest.approx(1.0)
    assert (signal.limit_tokens, signal.remaining_tokens) == (25000, 16000)
    assert signal.retry_after_s is None


def test_anthropic_input_tokens_family_when_no_combined_tokens() -> None:
    headers = load_sample("anthropic_message_stream_ratelimit_headers.json")["response"]["headers"]
    only_input = {k: v for k, v in headers.items() if "ratelimit-tokens" not in k}
    signal = parse_headers(only_input, NOW)
    assert (signal.limit_tokens, signal.remaining_tokens) == (2000000, 2000000)


def test_anthropic_retry_after_counts_on_429_only() -> None:
    headers = {"anthropic-ratelimit-requests-remaining": "0", "retry-after": "13"}
    assert parse_headers(headers, NOW, status=200).retry_after_s is None
    assert parse_headers(headers, NOW, status=429).retry_after_s == 13.0


GROQ_HEADERS = {
    "x-ratelimit-limit-requests": "14400",
    "x-ratelimit-limit-tokens": "6000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-remaining-tokens": "5830",
    "x-ratelimit-reset-requests": "2m59.56s",
    "x-ratelimit-reset-tokens": "7.66s",
}


def test_groq_requests_limit_is_per_day() -> None:
    signal = parse_headers(GROQ_HEADERS, NOW, provider="groq")
    assert signal.limit_requests == 14400
    assert signal.requests_window_s == 86400.0
    assert signal.tokens_window_s == 60.0
    assert signal.reset_requests_s == pytest.approx(179.56)
    assert signal.reset_tokens_s == pytest.approx(7.66)
    assert parse_headers(GROQ_HEADERS, NOW).requests_window_s == 60.0


def test_mistral_minute_headers() -> None:
    headers = {
        "x-ratelimit-limit-req-minute": "120",
        "x-ratelimit-remaining-req-minute": "119",
        "x-ratelimit-limit-tokens-minute": "500000",
        "x-ratelimit-remaining-tokens-minute": "499000",
        "x-ratelimit-tokens-query-cost": "1000",
        "x-ratelimit-limit-tokens-month": "1000000000",
        "x-ratelimit-remaining-tokens-month": "999000000",
    }
    assert parse_headers(headers, NOW) == RateSignal(
        limit_requests=120,
        remaining_requests=119,
        limit_tokens=500000,
        remaining_tokens=499000,
        requests_window_s=60.0,
        tokens_window_s=60.0,
    )


def test_daily_only_suffix_keeps_its_window() -> None:
    headers = {
        "x-ratelimit-limit-requests-day": "14400",
        "x-ratelimit-reset-requests-day": "33011.5",
    }
    signal = parse_headers(headers, NOW)
    assert (signal.limit_requests, signal.requests_window_s) == (14400, 86400.0)
    assert signal.reset_requests_s == pytest.approx(33011.5)


def test_cohere_reset_is_unix_seconds() -> None:
    signal = parse_headers({"X-RateLimit-Reset": str(int(NOW) + 20)}, NOW, status=429)
    assert signal == RateSignal(reset_requests_s=20.0)


def test_huggingface_ietf_headers() -> None:
    headers = {
        "RateLimit": '"api";r=0;t=55',
        "RateLimit-Policy": '"fixed window";"api";q=500;w=300',
    }
    assert parse_headers(headers, NOW) == RateSignal(
        limit_requests=500, remaining_requests=0, reset_requests_s=55.0, requests_window_s=300.0
    )


def test_older_ietf_draft_headers() -> None:
    headers = {"RateLimit-Limit": "100", "RateLimit-Remaining": "7", "RateLimit-Reset": "12"}
    signal = parse_headers(headers, NOW)
    got = (signal.limit_requests, signal.remaining_requests, signal.reset_requests_s)
    assert got == (100, 7, 12.0)
    assert signal.requests_window_s is None


def test_no_rate_limit_headers_in_recorded_responses() -> None:
    bedrock = load_sample("bedrock_throttling_429.json")
    assert parse_headers(bedrock["headers"], NOW, status=429) == RateSignal()
    gemini = load_sample("gemini_429_resource_exhausted.json")["response"]
    assert parse_headers(gemini["headers"], NOW, status=429) == RateSignal()


GEMINI_FRAGMENT: str = load_sample("gemini_429_resource_exhausted.json")["_also"][0]["fragment"]
GEMINI_RETRY_INFO: dict[str, Any] = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            ast.literal_eval(GEMINI_FRAGMENT),
        ],
    }
}


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        (GEMINI_RETRY_INFO, 59.0),
        (b'{"error":{"message":"Quota exceeded. Please retry in 45.578569677s."}}', 45.578569677),
        (GEMINI_FRAGMENT, 59.0),  # as pasted: the Python SDK's exception text
        (load_sample("openai_429_error.json")["examples"][1]["error_object"], 1.574),
        ('{"error":{"message":"Rate limit reached ... Please try again in 644ms. Visit"}}', 0.644),
        ('{"error":{"message":"Please try again in 6m0s."}}', 360.0),
        (load_sample("gemini_429_resource_exhausted.json")["response"]["body"], None),
        (load_sample("gemini_429_resource_exhausted.json")["_also"][1]["body_excerpt"], None),
        (load_sample("bedrock_throttling_429.json")["body"], None),
        (load_sample("openrouter_429.json")["response"]["body"], None),
        (load_sample("mistral_429_error.json")["examples"][1]["body"], None),
        (None, None),
        (b"\xff\xfe not json", None),
    ],
)
def test_retry_hint_from_body(body: Any, seconds: float | None) -> None:
    got = retry_hint_from_body(body)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_signal_prefers_header_hint_then_body() -> None:
    body = b'{"error":{"message":"Please try again in 1.5s."}}'
    assert parse_signal(429, {"retry-after": "3"}, body, NOW).retry_after_s == 3.0
    assert parse_signal(429, {}, body, NOW).retry_after_s == 1.5
    assert parse_signal(200, {}, body, NOW).retry_after_s is None
    assert parse_signal(400, {}, body, NOW).retry_after_s is None


def test_parse_signal_on_recorded_gemini_body() -> None:
    signal = parse_signal(429, {}, GEMINI_RETRY_INFO, NOW, provider="gemini")
    assert signal == RateSignal(retry_after_s=59.0)


# --- what the limiter learns from a signal ---------------------------------------------------

ANTHROPIC_200 = parse_headers(
    load_sample("anthropic_message_stream_ratelimit_headers.json")["response"]["headers"], NOW
)
HF_EXHAUSTED = RateSignal(
    limit_requests=500, remaining_requests=0, reset_requests_s=55.0, requests_window_s=300.0
)


@pytest.mark.parametrize(
    ("signal", "status", "lesson"),
    [
        (RateSignal(), 200, Lesson(aimd="up")),
        (RateSignal(), 429, Lesson(cooldown_s=BARE_429_COOLDOWN, aimd="down")),
        (RateSignal(retry_after_s=20.0), 429, Lesson(cooldown_s=20.0, aimd="down")),
        (RateSignal(retry_after_s=5.0), 503, Lesson(cooldown_s=5.0)),
        (RateSignal(retry_after_s=5.0), 200, Lesson(aimd="up")),  # a 200's: no push-back
        (RateSignal(), 500, Lesson()),
        (RateSignal(reset_requests_s=20.0), 429, Lesson(cooldown_s=20.0, aimd="down")),  # Cohere
        (RateSignal(reset_requests_s=7200.0), 429, Lesson(cooldown_s=60.0, aimd="down")),
        (RateSignal(remaining_tokens=0, reset_tokens_s=0.0), 200, Lesson(aimd="up")),
        (
            parse_headers(GROQ_HEADERS, NOW, provider="groq"),
            200,
            Lesson(cooldown_s=parse_duration("2m59.56s"), tpm=6000.0, aimd="up"),
        ),
        (ANTHROPIC_200, 200, Lesson(rpm=20000.0, tpm=2400000.0, aimd="up")),
        (HF_EXHAUSTED, 200, Lesson(cooldown_s=55.0, rpm=100.0, aimd="up")),
        (
            RateSignal(limit_requests=60, remaining_requests=3, requests_window_s=60.0),
            429,
            Lesson(cooldown_s=BARE_429_COOLDOWN, rpm=60.0),  # limits known: no AIMD guessing
        ),
        (
            RateSignal(
                remaining_requests=0, reset_requests_s=2.0, remaining_tokens=0, reset_tokens_s=9.0
            ),
            429,
            Lesson(cooldown_s=9.0, aimd="down"),
        ),
    ],
)
def test_learn(signal: RateSignal, status: int, lesson: Lesson) -> None:
    assert learn(signal, status) == lesson
