"""The allowlisted RQ entry point. A job carries an encoded `Chunk`, never a key or code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

import msgspec
import structlog
from rq import get_current_job
from rq.worker import BaseWorker

from shared.schema import Chunk
from workers import runtime
from workers.executor import Handoff, execute_chunk
from workers.queueing import HEARTBEAT_INTERVAL
from workers.requeue import claim, drop, enqueue_requests

log = structlog.get_logger("sluice.worker")

ADOPT_MAX_WAIT: Final = 5.0
"""Hand-backs due within this many seconds are also kept and run by the process that made them."""
ADOPT_GRACE: Final = 3.0
"""Seconds a kept hand-back's queued copy waits beyond its due time (the keeper goes first)."""
ADOPT_LEASE: Final = 3.0 * HEARTBEAT_INTERVAL
"""Seconds a claimed hand-back stays the keeper's (renewed while it runs, like RQ's heartbeat): if
the keeper dies, its queued copy becomes due this long after the last renewal."""
T = TypeVar("T")
_decoder: Final = msgspec.msgpack.Decoder(Chunk)

_local = threading.local()


def set_current_worker(worker: BaseWorker) -> None:
    """Called in each worker thread so a long chunk can keep its own RQ heartbeat alive."""
    _local.worker = worker


def run_chunk(data: bytes) -> dict[str, int]:
    """Run one chunk on this process's event loop, heartbeating while it runs; requests handed off
    (fail-over, long waits) are enqueued before the job ends, so none is lost."""
    chunk = _decoder.decode(data)
    rt = runtime.current()
    future = rt.run(execute_chunk(chunk, rt.context))
    while True:
        try:
            summary, handoffs = future.result(timeout=HEARTBEAT_INTERVAL)
            break
        except concurrent.futures.TimeoutError:
            _heartbeat()
    summary["handed_off"] = requeue_handoffs(chunk, handoffs)
    return summary


def requeue_handoffs(chunk: Chunk, handoffs: list[Handoff]) -> int:
    job = get_current_job()
    if not handoffs or job is None:
        return 0
    return hand_back(job.connection, chunk, handoffs)


def hand_back(connection: Any, chunk: Chunk, handoffs: list[Handoff]) -> int:
    """Enqueue handed-off requests: fail-overs now, waits as deferred chunks. A short wait is
    also kept by this process (`adopt`), so a `retry-after: 1` costs a sleep, not a queued job."""
    by_delay: dict[float, list[Handoff]] = {}
    for handoff in handoffs:  # one job per tenth of a second of delay, rounded up (hints are floors)
        by_delay.setdefault(math.ceil(handoff.delay * 10) / 10, []).append(handoff)
    count = 0
    for delay, group in by_delay.items():
        log.info("requests_handed_off", batch_id=chunk.batch_id, count=len(group), delay_s=delay,
                 to=sorted({h.request.provider for h in group}))
        prefix = f"{chunk.batch_id}-h{uuid.uuid4().hex[:12]}"  # ids do not grow with each hand-back
        kept = 0 < delay <= ADOPT_MAX_WAIT
        created = enqueue_requests(connection, chunk.batch_id, [h.request for h in group],
                                   id_prefix=prefix, delay=delay + ADOPT_GRACE if kept else delay)
        for deferred in created if kept else ():
            runtime.current().run(adopt(deferred, delay))
        count += len(group)
    return count


async def adopt(chunk: Chunk, delay: float) -> None:
    """Run a deferred chunk here after `delay` if no other worker took it. Claiming keeps it
    listed under a lease, so if this process dies the chunk still runs elsewhere."""
    await asyncio.sleep(delay)
    rt = runtime.current()
    client = rt.context.writer.client
    if not await claim(client, chunk, ADOPT_LEASE):
        return
    try:
        _, handoffs = await _leased(execute_chunk(chunk, rt.context), client, chunk)
        if handoffs:
            await asyncio.to_thread(hand_back, rt.sync_redis(), chunk, handoffs)
    except Exception as exc:  # the lease runs out and the chunk runs again elsewhere
        log.warning("adopted_chunk_failed", chunk_id=chunk.chunk_id, error=type(exc).__name__)
        return
    await drop(client, chunk)


async def _leased(work: Coroutine[Any, Any, T], client: Any, chunk: Chunk) -> T:
    """Await `work`, renewing the chunk's claim every `HEARTBEAT_INTERVAL` seconds."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(task), HEARTBEAT_INTERVAL)
        except TimeoutError:
            await claim(client, chunk, ADOPT_LEASE)


def _heartbeat() -> None:
    job = get_current_job()
    worker: BaseWorker | None = getattr(_local, "worker", None)
    if job is None or worker is None or worker.execution is None:
        return
    worker.maintain_heartbeats(job, worker.execution)
