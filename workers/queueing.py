"""RQ, made safe for sluice: msgpack serializer, an allowlist of job functions, scrubbed failures,
short heartbeats so a dead worker's chunk is retried within seconds rather than ten minutes.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from rq import Queue, SimpleWorker
from rq.job import Job
from rq.timeouts import TimerDeathPenalty

from shared.keys import queue_name
from shared.scrub import scrub
from shared.serializer import MsgpackSerializer

ALLOWED_FUNCTIONS: Final = frozenset({"workers.task.run_chunk"})
"""The only callables a sluice worker runs. Anything else in Redis is refused, never imported."""

JOB_TIMEOUT: Final = 3600
"""Seconds one chunk may run before RQ kills it (its requests have their own shorter timeouts)."""
JOB_RETRIES: Final = 20
"""How often a chunk abandoned by a dead worker is re-queued; done requests are skipped on re-run."""
HEARTBEAT_INTERVAL: Final = 5
"""Seconds between heartbeats of a running chunk."""
HEARTBEAT_GRACE: Final = 10
"""Seconds past a missed heartbeat before a chunk counts as abandoned."""
MAINTENANCE_INTERVAL: Final = 10
"""Seconds between registry clean-ups (RQ's default of 600 would leave a crashed chunk for minutes)."""


class RefusedJobError(Exception):
    """A job named a function outside the allowlist."""


class SluiceJob(Job):
    """A Job that resolves only allowlisted function names."""

    @property
    def func(self) -> Any:
        name = self.func_name
        if self.instance is not None or name not in ALLOWED_FUNCTIONS:
            raise RefusedJobError(f"refused job {self.id}: {name!r} is not an allowed sluice task")
        return super().func


class SluiceWorker(SimpleWorker):
    """Runs chunks in-process (the HTTP client stays warm across jobs) with short heartbeats and
    scrubbed failure text (RQ stores `exc_string` verbatim in a Redis stream).

    Several run as threads of one process (one per chunk slot), so signals are the process's
    business (`workers.process`) and job timeouts use a timer instead of SIGALRM.
    """

    job_class = SluiceJob
    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()  # type: ignore[no-untyped-call]

    @property
    def dequeue_timeout(self) -> int:
        # RQ runs registry maintenance only between dequeues; an idle worker blocked for RQ's
        # default ~7 minutes would never notice a dead peer's abandoned chunk.
        return MAINTENANCE_INTERVAL

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(self.job_monitoring_interval + HEARTBEAT_GRACE)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Any = None) -> None:
        super().handle_job_failure(job, queue, started_job_registry, scrub(exc_string), execution)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        # RQ's own handler logs the raw traceback; ours logs it through the scrubbing processors.
        self.log.error("job_failed id=%s %s", job.id, scrub(repr(exc_info[1]))[:500])


def make_queue(provider: str, connection: Any) -> Queue:
    return Queue(
        queue_name(provider), connection=connection, serializer=MsgpackSerializer, job_class=SluiceJob
    )
