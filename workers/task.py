"""The allowlisted RQ entry point. A job carries an encoded `Chunk`, never a key or code."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid
from typing import Final

import msgspec
import structlog
from rq import get_current_job
from rq.worker import BaseWorker

from shared.schema import Chunk
from workers import runtime
from workers.executor import Handoff, execute_chunk
from workers.queueing import HEARTBEAT_INTERVAL
from workers.requeue import enqueue_requests

log = structlog.get_logger("sluice.worker")
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
    by_delay: dict[int, list[Handoff]] = {}
    for handoff in handoffs:
        by_delay.setdefault(round(handoff.delay), []).append(handoff)
    count = 0
    for delay, group in by_delay.items():
        log.info("requests_handed_off", batch_id=chunk.batch_id, count=len(group), delay_s=delay,
                 to=sorted({h.request.provider for h in group}))
        prefix = f"{chunk.chunk_id}-h{uuid.uuid4().hex[:8]}"
        count += enqueue_requests(job.connection, chunk.batch_id, [h.request for h in group],
                                  id_prefix=prefix, delay=delay)
    return count


def _heartbeat() -> None:
    job = get_current_job()
    worker: BaseWorker | None = getattr(_local, "worker", None)
    if job is None or worker is None or worker.execution is None:
        return
    worker.maintain_heartbeats(job, worker.execution)
