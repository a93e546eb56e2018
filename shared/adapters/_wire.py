"""Small helpers every adapter shares: JSON in and out, header lookup, error-body text."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from shared.errors import ProviderError, QuotaExceededError, ResponseFormatError, error_class_for_status

MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder()


def dump_json(value: Any) -> bytes:
    return _encoder.encode(value)


def load_json(content: bytes, *, provider: str = "") -> Any:
    """Parse a response body, tolerating leading whitespace (OpenRouter/DeepSeek padding)."""
    if len(content) > MAX_BODY_BYTES:
        raise ResponseFormatError("response body too large", provider=provider)
    try:
        return _decoder.decode(content.strip())
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ResponseFormatError(f"response is not JSON: {exc}", provider=provider) from None


def header(headers: dict[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (headers from httpx are already lowercase; samples are not)."""
    if name in headers:
        return headers[name]
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def bearer_json_headers(api_key: str | None) -> dict[str, str]:
    """JSON in and out, plus `Authorization: Bearer <key>` when there is a key."""
    headers = {"content-type": "application/json", "accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def error_from_status(
    status: int,
    message: str,
    *,
    provider: str,
    code: str | None = None,
) -> ProviderError:
    """The exception for a status, with the non-retryable 429s (quota, too large) singled out."""
    cls = error_class_for_status(status)
    text = message.lower()
    if status == 429 and (
        code == "insufficient_quota" or "request too large" in text or "exceeded your current quota" in text
    ):
        cls = QuotaExceededError
    return cls(message or f"HTTP {status}", provider=provider, status=status, code=code)


def error_text(payload: Any) -> tuple[str, str | None]:
    """(message, code) from the common error envelopes: nested `error` object, flat, or a string."""
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, str):
            return inner, _code(payload.get("error_type"))
        if isinstance(inner, dict):
            message = inner.get("message") or payload.get("message") or ""
            code = inner.get("code") or inner.get("type") or inner.get("status")
            return str(message), _code(code)
    if isinstance(payload, str):
        return payload, None
    return "", None


def _code(value: Any) -> str | None:
    return None if value is None else str(value)
