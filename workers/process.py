"""One worker process: an RQ worker on `sluice:<provider>` queues with the sluice runtime inside."""

from __future__ import annotations

import os
import socket
import uuid

import redis
import structlog

from shared import keys
from shared.config import Settings, configured_secrets
from shared.log import configure_logging
from shared.scrub import default_scrubber
from shared.serializer import MsgpackSerializer
from workers import runtime, task
from workers.queueing import HEARTBEAT_INTERVAL, MAINTENANCE_INTERVAL, SluiceWorker, make_queue

log = structlog.get_logger("sluice.worker")


def worker_name() -> str:
    return f"sluice-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def serve(providers: list[str], redis_url: str, settings: Settings, *, burst: bool = False) -> None:
    """Serve the given providers' queues until stopped (or until empty, with `burst`)."""
    configure_logging(settings.log_level, settings.log_format)
    default_scrubber().add(configured_secrets())
    connection = redis.Redis.from_url(redis_url)
    queues = [make_queue(p, connection) for p in providers]
    rt = runtime.Runtime(settings, redis_url)
    runtime.install(rt)
    worker = SluiceWorker(
        queues,
        name=worker_name(),
        connection=connection,
        serializer=MsgpackSerializer,
        job_monitoring_interval=HEARTBEAT_INTERVAL,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
    task.current_worker = worker
    connection.hset(keys.workers_providers(), worker.name, ",".join(providers))
    log.info("worker_started", worker=worker.name, providers=providers, concurrency=settings.concurrency)
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    finally:
        connection.hdel(keys.workers_providers(), worker.name)
        rt.close()
        log.info("worker_stopped", worker=worker.name)
