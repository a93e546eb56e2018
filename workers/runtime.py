"""One event loop per worker process, on a background thread, kept across jobs.

RQ calls job functions synchronously; `run_chunk` hands the coroutine to this loop, so the HTTP
client's connections, the limiter's scripts and the Redis pool stay warm from one chunk to the next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

import httpx
import redis
import redis.asyncio as aredis

from shared.backoff import BackoffPolicy
from shared.config import Settings
from shared.limiter import RedisLimiter, limiter_keys
from shared.store import ResultWriter
from workers.executor import WorkerContext
from workers.gate import LimitGate
from workers.http import make_sender
from workers.transport import Transport

T = TypeVar("T")

RETRY_INLINE_WAIT: Final = 0.5
"""Seconds a request may sleep inline before a retry; a longer backoff or `retry-after` hands it
back to the queue, so one straggler never holds its whole chunk (and the worker slot) hostage.
Waits for the rate limiter itself stay inline up to `Settings.max_inline_wait`."""


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (it is a dependency on Linux and macOS: about a
    third less CPU per request, docs/benchmarks.md), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


REDIS_SPARE_CONNECTIONS: Final = 16
"""Connections beyond one per in-flight request (result writes, probes, claims)."""
REDIS_POOL_WAIT: Final = 30.0
"""Seconds a coroutine waits for a pooled Redis connection before the chunk fails."""


class Runtime:
    """The process's loop thread and the `WorkerContext` built on it."""

    def __init__(
        self, settings: Settings, redis_url: str, *, http_transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.http_transport = http_transport
        self._sync_redis: redis.Redis | None = None
        self.loop = new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sluice-loop", daemon=True)
        self.thread.start()
        self.context: WorkerContext = self.run(self._build()).result()

    async def _build(self) -> WorkerContext:
        s = self.settings
        # a full pool waits for a free connection instead of failing the chunk (redis-py's
        # default pool raises MaxConnectionsError, which cost re-sent requests under a 429 storm)
        pool = aredis.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=s.concurrency + REDIS_SPARE_CONNECTIONS, timeout=REDIS_POOL_WAIT)
        client = aredis.Redis(connection_pool=pool)
        limiter = RedisLimiter(client)

        async def probe(scope: str) -> bool:
            return bool(await client.exists(limiter_keys(scope).state))

        gate = LimitGate(limiter, probe=probe, sleep=asyncio.sleep, max_wait_s=s.max_inline_wait)
        policy = BackoffPolicy(max_attempts=s.max_attempts,
                               inline_wait_limit=min(RETRY_INLINE_WAIT, s.max_inline_wait))
        sender = make_sender(max_connections=s.concurrency, transport=self.http_transport)
        return WorkerContext(
            settings=s,
            transport=Transport(sender, gate=gate, policy=policy, timeout=s.request_timeout,
                                concurrency=s.concurrency),
            writer=ResultWriter(client, s.result_ttl),
        )

    def sync_redis(self) -> redis.Redis:
        """A blocking client for RQ calls made from the loop's helper threads."""
        if self._sync_redis is None:
            self._sync_redis = redis.Redis.from_url(self.redis_url)
        return self._sync_redis

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def _close() -> None:
            # kept hand-backs still sleeping: their listed jobs run on another worker
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self.context.transport.client.aclose()
            await self.context.writer.client.aclose()

        try:
            self.run(_close()).result(timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            if self._sync_redis is not None:
                self._sync_redis.close()


_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def current() -> Runtime:
    if _runtime is None:
        raise RuntimeError("no sluice runtime in this process: start it with `sluice worker`")
    return _runtime
