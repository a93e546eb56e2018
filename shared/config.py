"""Settings: the only reader of `os.environ`. Explicit argument > environment > config file > default.

Provider endpoints (base URL and key) are resolved here, inside the worker process; the key never
goes into a job, a log line or a result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

import msgspec

from shared.adapters.base import Endpoint
from shared.errors import MissingKeyError
from shared.registry import ProviderSpec

DEFAULT_CHUNK_SIZE: Final = 64
"""Requests per RQ job; one job runs its requests concurrently in one event loop."""
DEFAULT_CONCURRENCY: Final = 256
"""Requests in flight per worker process (across all its chunk slots)."""
DEFAULT_SLOTS: Final = 4
"""Chunks one worker process runs at once (each slot is an RQ worker thread on the same loop)."""
DEFAULT_REQUEST_TIMEOUT: Final = 120.0
"""Seconds for one provider call (total deadline, not idle: keep-alive padding resets idle timers)."""
DEFAULT_MAX_ATTEMPTS: Final = 6
DEFAULT_RESULT_TTL: Final = 7 * 24 * 3600
"""Seconds batch results are kept in Redis."""


class Settings(msgspec.Struct, frozen=True):
    redis_url: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    slots: int = DEFAULT_SLOTS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    result_ttl: int = DEFAULT_RESULT_TTL
    log_level: str = "INFO"
    log_format: str = "auto"


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from the environment (`SLUICE_*`, `REDIS_URL`), overridden by explicit arguments."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    if url := env.get("SLUICE_REDIS_URL") or env.get("REDIS_URL"):
        values["redis_url"] = url
    for field, cast in (
        ("chunk_size", int),
        ("concurrency", int),
        ("slots", int),
        ("request_timeout", float),
        ("max_attempts", int),
        ("result_ttl", int),
        ("log_level", str),
        ("log_format", str),
    ):
        if (raw := env.get(f"SLUICE_{field.upper()}")) is not None:
            values[field] = cast(raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return msgspec.convert(values, Settings)


def first_env(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if value := env.get(name):
            return value
    return None


def resolve_endpoint(spec: ProviderSpec, env: Mapping[str, str] | None = None) -> Endpoint:
    """Base URL and key for one provider from the environment; `MissingKeyError` names the env vars."""
    env = os.environ if env is None else env
    base_url = first_env(env, spec.base_url_env) or spec.default_base_url
    key = first_env(env, spec.key_env)
    if key is None and spec.key_required:
        raise MissingKeyError(spec.id, spec.key_env[:2] if len(spec.key_env) > 1 else spec.key_env)
    return Endpoint(spec.id, normalise_base_url(base_url), key)


def normalise_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def configured_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """Every key value the environment holds for any provider: the scrubber's known secrets."""
    from shared.registry import all_providers

    env = os.environ if env is None else env
    names = {name for spec in all_providers() for name in spec.key_env}
    names.update(n for n in env if n.endswith(("_API_KEY", "_TOKEN", "_SECRET_ACCESS_KEY")))
    return [env[n] for n in sorted(names) if env.get(n)]
