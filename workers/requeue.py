"""Putting requests back on the queues: hand-offs from a chunk (fail-over to another route, or a
wait given back to the queue), and `sluice retry` of a batch's failed requests.

A request handed back for later becomes a chunk job saved as *scheduled* and listed in
`sluice:deferred:<provider>` with its due time on Redis's clock; every worker process's scheduler
thread moves due jobs onto the queue (`move_due`, one atomic script call per queue). RQ's own
scheduler keeps whole seconds, which would add up to a second to a `retry-after: 1`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Final

import msgspec
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from shared import keys
from shared.keys import queue_name
from shared.schema import Chunk, Request
from shared.store import load_script
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


@functools.cache
def _deferred_text() -> str:
    return load_script("deferred.lua")


def _deferred_script(connection: Any) -> Any:
    """The script on a sync or async client (redis-py runs it by SHA, loading it once)."""
    return connection.register_script(_deferred_text())


def defer_chunk(connection: Any, queue: Queue, chunk: Chunk, delay: float) -> None:
    """Save the chunk's job as scheduled and list it as due `delay` seconds from now (Redis's
    clock), in one transaction."""
    job = queue.create_job(TASK, args=(_encoder.encode(chunk),), timeout=JOB_TIMEOUT,
                           result_ttl=JOB_RESULT_TTL, failure_ttl=JOB_FAILURE_TTL,
                           description=f"sluice deferred chunk {chunk.chunk_id}", job_id=chunk.chunk_id,
                           retry=Retry(max=JOB_RETRIES, interval=[1, 5, 15, 30]),
                           status=JobStatus.SCHEDULED)
    with connection.pipeline(transaction=True) as pipe:
        job.save(pipeline=pipe)
        _deferred_script(connection)(keys=[keys.deferred(chunk.provider), queue.key],
                                     args=["add", delay, job.id], client=pipe)
        pipe.execute()


async def claim(client: Any, chunk: Chunk, lease: float) -> bool:
    """Take a deferred chunk to run here (async client); False when it already went to the queue."""
    script = _deferred_script(client)
    return bool(await script(keys=[keys.deferred(chunk.provider)], args=["claim", lease, chunk.chunk_id]))


async def drop(client: Any, chunk: Chunk) -> None:
    """A claimed chunk ran here: remove its job."""
    script = _deferred_script(client)
    await script(keys=[keys.deferred(chunk.provider)],
                 args=["drop", Job.redis_job_namespace_prefix, chunk.chunk_id])


def deferred_summary(connection: Any) -> dict[str, tuple[int, float]]:
    """Provider → (handed-back chunk jobs waiting, seconds until the next is due; 0 = due now)."""
    seconds, micros = connection.time()
    now = seconds + micros / 1e6
    prefix = keys.deferred("")
    summary = {}
    for key in sorted(connection.scan_iter(match=f"{prefix}*", count=500)):
        name = key.decode() if isinstance(key, bytes) else str(key)
        first = connection.zrange(key, 0, 0, withscores=True)
        if first:
            summary[name[len(prefix):]] = (int(connection.zcard(key)), max(0.0, first[0][1] - now))
    return summary


def move_due(connection: Any, providers: Iterable[str], limit: int = 1000) -> int:
    """Move every due job of these providers onto its queue: deferred chunks, and RQ's scheduled
    jobs (chunk retries; RQ scores them in whole seconds, which the same script handles). One
    script call for all of them; returns how many moved."""
    pairs = _due_keys(tuple(providers))
    if not pairs:
        return 0
    script = _deferred_script(connection)
    return int(script(keys=list(pairs), args=["due", limit, Job.redis_job_namespace_prefix]))


@functools.cache
def _due_keys(providers: tuple[str, ...]) -> tuple[str, ...]:
    """(waiting set, queue list) pairs for these providers, built once: the mover runs every tick."""
    pairs: list[str] = []
    for provider in providers:
        name = queue_name(provider)
        queue_key = Queue.redis_queue_namespace_prefix + name
        scheduled = ScheduledJobRegistry.key_template.format(name)
        pairs += [keys.deferred(provider), queue_key, scheduled, queue_key]
    return tuple(pairs)


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
) -> list[Chunk]:
    """Enqueue requests as chunks, now or `delay` seconds from now; returns the chunks."""
    chunks: list[Chunk] = []
    for provider, blocks in group_by_provider(requests, size).items():
        queue = make_queue(provider, connection)
        for i, block in enumerate(blocks):
            chunk = Chunk(batch_id, f"{id_prefix}-{provider}-{i}", provider, tuple(block))
            if delay > 0:
                defer_chunk(connection, queue, chunk, delay)
            else:
                queue.enqueue_many([job_data(chunk)])
            chunks.append(chunk)
    return chunks
