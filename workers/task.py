"""The allowlisted RQ entry point. A job carries an encoded `Chunk`, never a key or code."""

from __future__ import annotations

import concurrent.futures
from typing import Final

import msgspec
from rq import get_current_job
from rq.worker import BaseWorker

from shared.schema import Chunk
from workers import runtime
from workers.queueing import HEARTBEAT_INTERVAL

_decoder: Final = msgspec.msgpack.Decoder(Chunk)

current_worker: BaseWorker | None = None
"""Set by the worker process so a long chunk can keep its RQ heartbeat alive."""


def run_chunk(data: bytes) -> dict[str, int]:
    """Run one chunk on this process's event loop, heartbeating while it runs."""
    chunk = _decoder.decode(data)
    rt = runtime.current()
    future = rt.run(_execute(chunk))
    while True:
        try:
            return future.result(timeout=HEARTBEAT_INTERVAL)
        except concurrent.futures.TimeoutError:
            _heartbeat()


async def _execute(chunk: Chunk) -> dict[str, int]:
    from workers.executor import execute_chunk

    return await execute_chunk(chunk, runtime.current().context)


def _heartbeat() -> None:
    job = get_current_job()
    worker = current_worker
    if job is None or worker is None or worker.execution is None:
        return
    worker.maintain_heartbeats(job, worker.execution)
