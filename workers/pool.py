"""A pool of worker processes on one machine; a process that dies is replaced.

Each process is a fresh interpreter (`python -m workers.main`), so a crash, a leak or a hung C
extension in one cannot touch the others. SIGTERM/SIGINT stop the pool: children get SIGTERM (RQ's
warm shutdown: the current chunk finishes), then SIGKILL after `grace` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import structlog

log = structlog.get_logger("sluice.pool")

RESPAWN_DELAY = 1.0
"""Seconds to wait before replacing a process that died (avoids a tight crash loop)."""


class WorkerPool:
    def __init__(
        self,
        providers: Sequence[str],
        processes: int,
        *,
        redis_url: str,
        env: dict[str, str] | None = None,
        burst: bool = False,
        grace: float = 30.0,
    ) -> None:
        self.providers = list(providers)
        self.size = processes
        self.redis_url = redis_url
        self.env = {**(env if env is not None else os.environ), "SLUICE_REDIS_URL": redis_url}
        self.burst = burst
        self.grace = grace
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = False

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "workers.main", "--providers", ",".join(self.providers)]
        return [*cmd, "--burst"] if self.burst else cmd

    def spawn(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(self.command(), env=self.env)
        log.info("pool_process_started", pid=child.pid)
        return child

    def start(self) -> None:
        self.children = [self.spawn() for _ in range(self.size)]

    def check(self) -> None:
        """Replace dead children (not in burst mode, where exiting is the point)."""
        for i, child in enumerate(self.children):
            code = child.poll()
            if code is None or self.stopping or self.burst:
                continue
            log.warning("pool_process_died", pid=child.pid, code=code)
            time.sleep(RESPAWN_DELAY)
            self.children[i] = self.spawn()

    def alive(self) -> int:
        return sum(1 for c in self.children if c.poll() is None)

    def run(self) -> int:
        """Start, supervise until a signal (or all burst workers exit), stop; returns an exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        while not self.stopping and (not self.burst or self.alive()):
            self.check()
            time.sleep(0.5)
        self.stop()
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def stop(self) -> None:
        self.stopping = True
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        log.info("pool_stopped", processes=len(self.children))

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
