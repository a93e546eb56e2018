"""Provider rate-limit signals (headers and error bodies) parsed into one `RateSignal`.

Sans-I/O: `now` is passed in. Families understood (REFERENCE.md §0, §1.6, §2.4, §3.4, §4, §6):

- `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI, Groq, OpenAI-compatible
  servers), resets as Go durations (`6m0s`, `2ms`, `1.5s`, `2m59.56s`, `0s`) or seconds; the
  same names with a window suffix (`-minute`, `-day`, ...) and Mistral's `-req-minute`.
- `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`,
  resets as RFC 3339 timestamps. The `tokens` family (Anthropic's most restrictive) is used,
  else `input-tokens`.
- bare `x-ratelimit-reset` (Cohere: Unix seconds; Unix milliseconds are recognised too).
- IETF draft `RateLimit: "api";r=0;t=55` + `RateLimit-Policy: "fixed window";"api";q=500;w=300`
  (Hugging Face), and the older `RateLimit-Limit/-Remaining/-Reset` headers.
- error bodies: Gemini `error.details[].retryDelay` (`"59s"`) or `Please retry in 45.57s`, OpenAI
  `Please try again in 1.574s` / `644ms`.

Windows: `requests_window_s` / `tokens_window_s` say what period a limit covers (60 for
per-minute limits). **Groq** reports `x-ratelimit-limit-requests` per DAY (tokens per minute):
pass `provider="groq"` and the requests window is 86400 s. The limiter only adopts limits whose
window is at most an hour as a pacing rate; a daily quota is enforced through its
`remaining == 0` + reset (a shared cooldown), not by spreading it over the day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from shared.backoff import is_retryable_status, lower_headers, parse_retry_after

MINUTE: Final = 60.0
WINDOW_SUFFIXES: Final[dict[str, float]] = {
    "": MINUTE,
    "minute": MINUTE,
    "second": 1.0,
    "hour": 3600.0,
    "day": 86400.0,
    "month": 30 * 86400.0,
}
"""Preference order too: a per-minute figure beats a daily one when both are sent."""
DAILY_REQUEST_PROVIDERS: Final = frozenset({"groq"})
MAX_BODY_SCAN: Final = 64 * 1024
EPOCH_SECONDS_MIN: Final = 1e9
EPOCH_MILLIS_MIN: Final = 1e12

_DURATION_PART: Final = r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)"
_DURATION: Final = re.compile(rf"^(?:{_DURATION_PART})+$")
_DURATION_PARTS: Final = re.compile(_DURATION_PART)
_UNIT_SECONDS: Final[dict[str, float]] = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}
_XRL: Final = re.compile(
    r"^x-ratelimit-(limit|remaining|reset)-(requests|req|tokens)(?:-(minute|second|hour|day|month))?$"
)
_BODY_HINTS: Final = (
    re.compile(r"""["']retryDelay["']\s*:\s*["']([^"']+)["']"""),
    re.compile(r"(?:retry|try again) in ((?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s))+)", re.IGNORECASE),
)
_IETF_PARAM: Final = re.compile(r"(?:^|[;,\s])(r|t|q|w|limit|remaining|reset)=(\d+(?:\.\d+)?)")


class RateSignal(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one response said about the rate limit. Every field is optional (None = not sent).

    `reset_*_s` and `retry_after_s` are seconds from `now`; `*_window_s` is the period a limit
    covers (60 for per-minute, 86400 for Groq's daily requests, `w` for IETF policies).
    """

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    retry_after_s: float | None = None
    requests_window_s: float | None = None
    tokens_window_s: float | None = None


def parse_duration(text: str) -> float | None:
    """A Go duration (`6m0s`, `2ms`, `1.5s`, `2m59.56s`, `0s`) or bare seconds, as seconds."""
    value = text.strip()
    if _DURATION.match(value):
        return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PARTS.findall(value))
    return _number(value)


def parse_reset(text: str, now: float) -> float | None:
    """A reset as seconds from `now`: a duration, Unix seconds or milliseconds, or RFC 3339."""
    seconds = parse_duration(text)
    if seconds is None:
        return _timestamp_delay(text, now)
    if seconds >= EPOCH_MILLIS_MIN:
        return max(0.0, seconds / 1000.0 - now)
    if seconds >= EPOCH_SECONDS_MIN:
        return max(0.0, seconds - now)
    return seconds


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _integer(text: str | None) -> int | None:
    value = _number(text.strip()) if text is not None else None
    return int(value) if value is not None else None


def _timestamp_delay(text: str, now: float) -> float | None:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_headers(
    headers: Mapping[str, str], now: float, *, provider: str = "", status: int = 200
) -> RateSignal:
    """Every rate-limit header family in `headers`; `retry_after_s` only on 408/409/429/5xx."""
    h = lower_headers(headers)
    fields: dict[str, Any] = {}
    parts = (_anthropic(h, now), _x_ratelimit(h, now, provider), _ietf(h, now), _bare_reset(h, now))
    for part in parts:
        for name, value in part.items():
            fields.setdefault(name, value)
    fields["retry_after_s"] = parse_retry_after(h, now, status=status)
    return RateSignal(**fields)


def retry_hint_from_body(body: bytes | str | Mapping[str, Any] | None) -> float | None:
    """A wait hint written in an error body: Gemini's `retryDelay`, or `retry in` / `try again in`
    followed by a duration (Gemini, OpenAI). Only the first 64 KiB are scanned."""
    text = _body_text(body)
    for pattern in _BODY_HINTS:
        match = pattern.search(text)
        if match and (seconds := parse_duration(match.group(1))) is not None:
            return seconds
    return None


def parse_signal(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | None,
    now: float,
    *,
    provider: str = "",
) -> RateSignal:
    """Headers first; on a retryable status without a header hint, the body's hint."""
    signal = parse_headers(headers, now, provider=provider, status=status)
    if signal.retry_after_s is not None or not is_retryable_status(status) or body is None:
        return signal
    hint = retry_hint_from_body(body)
    return signal if hint is None else msgspec.structs.replace(signal, retry_after_s=hint)


def _body_text(body: bytes | str | Mapping[str, Any] | None) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body[:MAX_BODY_SCAN].decode("utf-8", errors="replace")
    if isinstance(body, str):
        return body[:MAX_BODY_SCAN]
    return msgspec.json.encode(body)[:MAX_BODY_SCAN].decode("utf-8", errors="replace")


def _family_fields(
    family: str, limit: str | None, remaining: str | None, reset: float | None, window: float | None
) -> dict[str, Any]:
    values = {
        f"limit_{family}": _integer(limit),
        f"remaining_{family}": _integer(remaining),
        f"reset_{family}_s": reset,
        f"{family}_window_s": window,
    }
    counts = (values[f"limit_{family}"], values[f"remaining_{family}"], reset)
    if all(value is None for value in counts):
        return {}
    return {name: value for name, value in values.items() if value is not None}


def _anthropic(h: Mapping[str, str], now: float) -> dict[str, Any]:
    fields = _anthropic_family(h, now, "requests", "requests")
    for name in ("tokens", "input-tokens"):
        if tokens := _anthropic_family(h, now, name, "tokens"):
            return fields | tokens
    return fields


def _anthropic_family(h: Mapping[str, str], now: float, name: str, family: str) -> dict[str, Any]:
    prefix = f"anthropic-ratelimit-{name}-"
    reset = h.get(prefix + "reset")
    seconds = parse_reset(reset, now) if reset is not None else None
    limit, remaining = h.get(prefix + "limit"), h.get(prefix + "remaining")
    return _family_fields(family, limit, remaining, seconds, MINUTE)


def _x_ratelimit(h: Mapping[str, str], now: float, provider: str) -> dict[str, Any]:
    found: dict[tuple[str, str], dict[str, str]] = {}
    for name, value in h.items():
        if match := _XRL.match(name):
            kind, family, suffix = match.groups()
            family = "requests" if family == "req" else family
            found.setdefault((family, suffix or ""), {})[kind] = value
    fields: dict[str, Any] = {}
    for family in ("requests", "tokens"):
        fields |= _x_family(found, family, now, provider)
    return fields


def _x_family(
    found: dict[tuple[str, str], dict[str, str]], family: str, now: float, provider: str
) -> dict[str, Any]:
    for suffix, window in WINDOW_SUFFIXES.items():
        values = found.get((family, suffix))
        if values is None:
            continue
        if not suffix and family == "requests" and provider in DAILY_REQUEST_PROVIDERS:
            window = WINDOW_SUFFIXES["day"]
        reset = values.get("reset")
        seconds = parse_reset(reset, now) if reset is not None else None
        return _family_fields(family, values.get("limit"), values.get("remaining"), seconds, window)
    return {}


def _bare_reset(h: Mapping[str, str], now: float) -> dict[str, Any]:
    """`x-ratelimit-limit/-remaining/-reset` with no family (Cohere's reset, OpenRouter): counted
    as requests, with no known window (never adopted as a pacing rate)."""
    reset = h.get("x-ratelimit-reset")
    seconds = parse_reset(reset, now) if reset is not None else None
    return _family_fields(
        "requests", h.get("x-ratelimit-limit"), h.get("x-ratelimit-remaining"), seconds, None
    )


def _ietf(h: Mapping[str, str], now: float) -> dict[str, Any]:
    current = _ietf_params(h.get("ratelimit", ""))
    policy = _ietf_params(h.get("ratelimit-policy", ""))
    limit = policy.get("q") or current.get("limit") or h.get("ratelimit-limit")
    remaining = current.get("r") or current.get("remaining") or h.get("ratelimit-remaining")
    reset = current.get("t") or current.get("reset") or h.get("ratelimit-reset")
    window = policy.get("w")
    seconds = parse_reset(reset, now) if reset is not None else None
    return _family_fields(
        "requests", limit, remaining, seconds, float(window) if window is not None else None
    )


def _ietf_params(value: str) -> dict[str, str]:
    return {name: number for name, number in _IETF_PARAM.findall(value)}
