"""Putting requests back on the queues: hand-offs from a chunk (fail-over to another route, or a
long wait given back to RQ's scheduler), and `sluice retry` of a batch's failed requests."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from rq import Queue, Retry

from shared.schema import Chunk, Request
from workers.queueing import JOB_RETRIES, JOB_TIMEOUT, make_queue

TASK: Final = "workers.task.run_chunk"
JOB_RESULT_TTL: Final = 60
"""Seconds RQ keeps a finished job; our own result store holds the results."""
JOB_FAILURE_TTL: Final = 24 * 3600

_encoder: Final = msgspec.msgpack.Encoder()


def job_data(chunk: Chunk) -> Any:
    """RQ's enqueue data for one chunk: the encoded chunk is the only argument."""
    return Queue.prepare_data(
        TASK,
        args=(_encoder.encode(chunk),),
        timeout=JOB_TIMEOUT,
        result_ttl=JOB_RESULT_TTL,
        failure_ttl=JOB_FAILURE_TTL,
        description=f"sluice chunk {chunk.chunk_id} ({len(chunk.requests)} {chunk.provider} requests)",
        job_id=chunk.chunk_id,
        retry=Retry(max=JOB_RETRIES, interval=[1, 5, 15, 30]),
    )


def due_time(delay: float) -> datetime:
    """When a hand-back may run again: RQ's scheduler keeps whole seconds (and truncates), so the
    time is rounded up, never down: a provider's `retry-after` is a floor."""
    return datetime.fromtimestamp(math.ceil(time.time() + delay), tz=UTC)


def group_by_provider(requests: Iterable[Request], size: int) -> dict[str, list[list[Request]]]:
    groups: dict[str, list[list[Request]]] = defaultdict(list)
    for request in requests:
        blocks = groups[request.provider]
        if not blocks or len(blocks[-1]) >= size:
            blocks.append([])
        blocks[-1].append(request)
    return groups


def enqueue_requests(
    connection: Any, batch_id: str, requests: Iterable[Request], *, id_prefix: str,
    size: int = 64, delay: float = 0.0,
) -> int:
    """Enqueue requests as chunks (now, or after `delay` seconds via RQ's scheduler)."""
    count = 0
    for provider, blocks in group_by_provider(requests, size).items():
        queue = make_queue(provider, connection)
        for i, block in enumerate(blocks):
            chunk = Chunk(batch_id, f"{id_prefix}-{provider}-{i}", provider, tuple(block))
            if delay > 0:
                queue.enqueue_at(due_time(delay), TASK, _encoder.encode(chunk),
                                 job_id=chunk.chunk_id, job_timeout=JOB_TIMEOUT,
                                 result_ttl=JOB_RESULT_TTL, failure_ttl=JOB_FAILURE_TTL,
                                 description=f"sluice deferred chunk {chunk.chunk_id}",
                                 retry=Retry(max=JOB_RETRIES, interval=[1, 5, 15, 30]))
            else:
                queue.enqueue_many([job_data(chunk)])
            count += len(block)
    return count
