"""Every Redis key sluice writes, built in one place from one prefix."""

from __future__ import annotations

from typing import Final

PREFIX: Final = "sluice"
QUEUE_PREFIX: Final = "sluice:"
"""RQ queue names are `sluice:<provider>` (RQ stores them as `rq:queue:sluice:<provider>`)."""


def queue_name(provider: str) -> str:
    return f"{QUEUE_PREFIX}{provider}"


def provider_of_queue(name: str) -> str:
    return name.removeprefix(QUEUE_PREFIX)


def deferred(provider: str) -> str:
    """Sorted set of a provider's handed-back chunk jobs by due time (Redis clock)."""
    return f"{PREFIX}:deferred:{provider}"


def batch_key(batch_id: str, part: str) -> str:
    """`meta` (msgpack BatchMeta), `state` (hash of counters), `results` (hash custom_id → Result),
    `events` (stream), `usage` (hash `provider/model|field` → count)."""
    return f"{PREFIX}:batch:{batch_id}:{part}"


def batches_index() -> str:
    """Sorted set of batch ids by creation time."""
    return f"{PREFIX}:batches"


def usage_totals() -> str:
    """Hash of usage across every batch (`provider/model|field` → count, plus `last_call`)."""
    return f"{PREFIX}:usage"


def workers_providers() -> str:
    """Hash worker name → comma-separated providers it serves (with its own TTL'd heartbeat key)."""
    return f"{PREFIX}:workers"


def worker_alive(name: str) -> str:
    return f"{PREFIX}:worker:{name}:alive"
