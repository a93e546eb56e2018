"""One worker process: `slots` RQ workers (threads) on `sluice:<provider>` queues, sharing one
event loop, one HTTP client and one in-flight budget (the sluice runtime).

Signals belong to the main thread: SIGTERM/SIGINT ask every slot to stop after its current chunk
(warm shutdown); a second signal, or the grace period running out, exits at once (a chunk cut short
is retried by whichever worker finds it abandoned; finished requests are skipped).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

import redis
import structlog

from shared import keys
from shared.config import Settings, configured_secrets
from shared.log import configure_logging
from shared.scrub import default_scrubber
from shared.serializer import MsgpackSerializer
from workers import runtime, task
from workers.queueing import HEARTBEAT_INTERVAL, MAINTENANCE_INTERVAL, SluiceWorker, make_queue
from workers.requeue import move_due

log = structlog.get_logger("sluice.worker")

STOP_GRACE = 60.0
"""Seconds a warm shutdown waits for running chunks before exiting anyway."""
BURST_IDLE_CHECKS = 3
"""With `--burst`, stop after this many checks in a row (0.5 s apart) found nothing left to do;
hand-backs still waiting to be due keep the worker up."""
SAME_SIGNAL_WINDOW = 1.0
"""Seconds within which a second stop signal counts as the same request (see `_install_stop_signals`)."""
SCHEDULER_TICK = 0.1
"""Seconds between moves of due jobs onto their queues (`workers.requeue.move_due`)."""


def worker_name(slot: int) -> str:
    return f"sluice-{socket.gethostname()}-{os.getpid()}-{slot}-{uuid.uuid4().hex[:4]}"


def make_worker(providers: list[str], connection: redis.Redis, slot: int) -> SluiceWorker:
    return SluiceWorker(
        [make_queue(p, connection) for p in providers],
        name=worker_name(slot),
        connection=connection,
        serializer=MsgpackSerializer,
        job_monitoring_interval=HEARTBEAT_INTERVAL,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )


def _work(worker: SluiceWorker, **kwargs: Any) -> None:
    task.set_current_worker(worker)
    worker.work(**kwargs)


def serve(providers: list[str], redis_url: str, settings: Settings, *, burst: bool = False) -> None:
    """Serve the given providers' queues until stopped (or until they are empty, with `burst`)."""
    configure_logging(settings.log_level, settings.log_format)
    default_scrubber().add(configured_secrets())
    connection = redis.Redis.from_url(redis_url)
    rt = runtime.Runtime(settings, redis_url)
    runtime.install(rt)
    slots = max(1, settings.slots)
    workers = [make_worker(providers, connection, i) for i in range(slots)]
    threads = [
        threading.Thread(target=_work, args=(w,), daemon=True, name=f"slot-{i}",
                         kwargs={"burst": False, "with_scheduler": False, "logging_level": settings.log_level})
        for i, w in enumerate(workers)
    ]
    stop = _install_stop_signals()
    scheduler = threading.Thread(target=run_scheduler, args=(providers, connection, stop),
                                 daemon=True, name="sluice-scheduler")
    scheduler.start()
    for thread in threads:
        thread.start()
    log.info("worker_started", providers=providers, slots=slots, concurrency=settings.concurrency)
    idle_checks = 0
    try:
        while not stop.is_set() and any(t.is_alive() for t in threads):
            stop.wait(0.5)
            idle_checks = idle_checks + 1 if burst and _drained(providers, connection, workers) else 0
            if idle_checks >= BURST_IDLE_CHECKS:
                break
        _stop_workers(workers, threads)
    finally:
        stop.set()
        scheduler.join(5)
        for worker in workers:
            worker.register_death()  # type: ignore[no-untyped-call]
        rt.close()
        connection.hdel(keys.workers_providers(), *[w.name for w in workers])
        log.info("worker_stopped", slots=slots)


def run_scheduler(providers: list[str], connection: redis.Redis, stop: threading.Event) -> None:
    """Every tick, move what has come due onto the queues (`move_due`): hand-backs, and RQ's own
    scheduled jobs (a crashed or failed chunk's retries). Each move is one atomic script call, so
    every worker process runs this with no lock: a killed process leaves nothing waiting on it
    (RQ's scheduler holds a per-queue lock that outlives a SIGKILL by a minute or more)."""
    while not stop.wait(SCHEDULER_TICK):
        try:
            move_due(connection, providers)
        except redis.RedisError as exc:
            log.warning("scheduler_redis_error", error=type(exc).__name__)


def _install_stop_signals() -> threading.Event:
    """First SIGTERM/SIGINT: warm shutdown. A second one exits at once, unless it comes within
    `SAME_SIGNAL_WINDOW` of the first: Ctrl-C or `kill -TERM -PGID` reaches this process and its
    pool parent together, and the parent then forwards its own SIGTERM."""
    stop = threading.Event()
    first: list[float] = []

    def on_signal(signum: int, frame: object) -> None:
        now = time.monotonic()
        if first and now - first[0] > SAME_SIGNAL_WINDOW:
            raise SystemExit(1)
        first[:] = first or [now]
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _stop_workers(workers: list[SluiceWorker], threads: list[threading.Thread]) -> None:
    """Warm shutdown: no new chunks; wait (bounded) for running ones."""
    for worker in workers:
        worker._stop_requested = True
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and any(_busy(w) for w in workers):
        time.sleep(0.2)


def _drained(providers: list[str], connection: redis.Redis, workers: list[SluiceWorker]) -> bool:
    """Nothing left for a burst worker: queues empty, no hand-back waiting, no chunk running."""
    if any(_busy(w) for w in workers):
        return False
    for provider in providers:
        if make_queue(provider, connection).count or connection.zcard(keys.deferred(provider)):
            return False
    return True


def _busy(worker: SluiceWorker) -> bool:
    return bool(worker.get_current_job_id())
