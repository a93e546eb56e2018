"""The secret scrubber: every configured key value plus the key shapes of every provider.

Everything sluice writes (logs, results, error text, RQ failure records, CLI output) passes through
`scrub()`. It is also a structlog processor (`ScrubProcessor`), run last before rendering.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Final

REDACTED: Final = "[REDACTED]"

# Key shapes from the protocol reference (§10), plus generic fallbacks.
KEY_PATTERNS: Final[tuple[str, ...]] = (
    r"sk-ant-(?:api03|admin01|oat01|ort01)-[\w-]{8,}",
    r"sk-(?:proj|svcacct|admin)-[\w-]{20,}",
    r"sk-or-v1-[0-9a-f]{16,}",
    r"sk-[A-Za-z0-9_-]{16,}",
    r"AIza[\w-]{30,}",
    r"ya29\.[\w.-]{10,}",
    r"1//0[\w-]{20,}",
    r"hf_[A-Za-z0-9]{20,}",
    r"api_org_[A-Za-z0-9]{20,}",
    r"gsk_[A-Za-z0-9]{20,}",
    r"xai-[0-9A-Za-z_]{20,}",
    r"pplx-[A-Za-z0-9]{20,}",
    r"r8_[0-9A-Za-z_-]{20,}",
    r"csk-[A-Za-z0-9_-]{20,}",
    r"nvapi-[\w-]{20,}",
    r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
    r"ABSK[A-Za-z0-9+/]{40,}={0,2}",
    r"bedrock-api-key-[A-Za-z0-9+/=_-]{16,}",
    r"lsv2_(?:pt|sk)_[a-f0-9]{16,}_[a-f0-9]{6,}",
    r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
)
# (what stays, the secret after it): `Bearer <token>`, `?key=<key>`, form fields to token endpoints.
PREFIXED_PATTERN: Final = re.compile(
    r"((?i:bearer\s+|[?&](?:key|access_token|api_key|token)=|"
    r"(?:assertion|refresh_token|client_secret)=))([^&\s\"',;]{8,})"
)
SECRET_HEADERS: Final = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "x-amz-security-token", "cookie"}
)
MIN_SECRET_LENGTH: Final = 6


class Scrubber:
    """Replaces known secret values (exact and key-shaped) with `[REDACTED]`.

    Known values are matched whole and by their distinctive fragments: OpenAI's 401 message echoes
    the first 8 and last 4 characters of a key (`sk-VKMIs***...***wjh3`).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern = re.compile("|".join(f"(?:{p})" for p in KEY_PATTERNS))
        self._known: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            for secret in secrets:
                if secret and len(secret) >= MIN_SECRET_LENGTH:
                    self._secrets.add(secret)
            self._known = _known_pattern(self._secrets)

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        text = PREFIXED_PATTERN.sub(r"\1" + REDACTED, text)
        return self._pattern.sub(REDACTED, text)

    def value(self, value: Any) -> Any:
        """Scrub strings inside any JSON-like value (dicts, lists, tuples) and header dicts."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def _field(self, key: str, value: Any) -> Any:
        if key.lower() in SECRET_HEADERS and isinstance(value, str):
            return REDACTED
        return self.value(value)


def _known_pattern(secrets: set[str]) -> re.Pattern[str] | None:
    parts: set[str] = set()
    for secret in secrets:
        parts.add(re.escape(secret))
        if len(secret) >= 16:
            parts.add(re.escape(secret[:8]) + r"[^\s\"']{0,40}")
            parts.add(r"[^\s\"']{0,40}" + re.escape(secret[-6:]))
    if not parts:
        return None
    return re.compile("|".join(sorted(parts, key=len, reverse=True)))


_default: Final = Scrubber()


def default_scrubber() -> Scrubber:
    """The process-wide scrubber; workers add their configured keys to it at start-up."""
    return _default


def scrub(text: str) -> str:
    return _default(text)


class ScrubProcessor:
    """structlog processor: scrub every value of the event dict (run it last before rendering)."""

    def __init__(self, scrubber: Scrubber | None = None) -> None:
        self.scrubber = scrubber or _default

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        return {key: self.scrubber.value(value) for key, value in event.items()}
