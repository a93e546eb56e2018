"""Hand-backs wait on Redis's clock and reach their queue exactly once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import redis
import redis.asyncio as aredis
from rq import Queue
from rq.job import Job

from shared import keys
from shared.schema import Chunk, Request
from workers.queueing import make_queue
from workers.requeue import claim, defer_chunk, drop, move_due

pytestmark = pytest.mark.integration


def chunk(chunk_id: str) -> Chunk:
    request = Request("r1", "chat", "vllm", "llama", {"messages": [{"role": "user", "content": "hi"}]},
                      attempts=2, throttled=1)
    return Chunk("b1", chunk_id, "vllm", (request,))


def test_a_deferred_chunk_waits_until_due_then_moves_once(redis_client: redis.Redis) -> None:
    queue = make_queue("vllm", redis_client)
    defer_chunk(redis_client, queue, chunk("later"), 30.0)
    defer_chunk(redis_client, queue, chunk("soon"), 0.05)
    assert Job.fetch("soon", connection=redis_client).get_status() == "scheduled"
    time.sleep(0.1)
    assert move_due(redis_client, ["vllm"]) == 1
    assert move_due(redis_client, ["vllm"]) == 0  # moved once: a second mover finds nothing
    assert queue.job_ids == ["soon"]
    assert Job.fetch("soon", connection=redis_client).get_status() == "queued"
    assert redis_client.zrange(keys.deferred("vllm"), 0, -1) == [b"later"]


def test_the_moved_job_carries_the_chunk_and_its_attempts(redis_client: redis.Redis) -> None:
    queue = make_queue("vllm", redis_client)
    original = chunk("c1")
    defer_chunk(redis_client, queue, original, 0.0)
    assert move_due(redis_client, ["vllm"]) == 1
    job = queue.fetch_job("c1")
    assert job is not None and job.func_name == "workers.task.run_chunk"
    assert msgspec.msgpack.decode(job.args[0], type=Chunk) == original


def test_due_time_is_set_by_redis_not_the_caller(redis_client: redis.Redis) -> None:
    queue = make_queue("vllm", redis_client)
    seconds, micros = redis_client.time()
    defer_chunk(redis_client, queue, chunk("c2"), 2.5)
    due = redis_client.zscore(keys.deferred("vllm"), "c2")
    assert due is not None and 2.5 <= due - (seconds + micros / 1e6) < 3.5


@dataclass
class Clients:
    sync: redis.Redis
    client: aredis.Redis
    queue: Queue


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[Clients]:
    sync = redis.Redis.from_url(redis_url)
    client = aredis.Redis.from_url(redis_url)
    yield Clients(sync, client, make_queue("vllm", sync))
    await client.aclose()
    sync.close()


async def test_the_keeper_claims_a_deferred_chunk_and_drops_it_when_done(clients: Clients) -> None:
    sync, client, queue = clients.sync, clients.client, clients.queue
    kept = chunk("kept")
    defer_chunk(sync, queue, kept, 3.0)
    assert await claim(client, kept, 600.0)
    due = sync.zscore(keys.deferred("vllm"), "kept")
    seconds, micros = sync.time()
    assert due is not None and due - (seconds + micros / 1e6) > 500  # leased, not due in 3 s
    await drop(client, kept)
    assert sync.zcard(keys.deferred("vllm")) == 0 and not sync.exists("rq:job:kept")
    assert move_due(sync, ["vllm"]) == 0 and queue.job_ids == []


async def test_a_chunk_already_queued_cannot_be_claimed(clients: Clients) -> None:
    sync, client, queue = clients.sync, clients.client, clients.queue
    late = chunk("late")
    defer_chunk(sync, queue, late, 0.0)
    assert move_due(sync, ["vllm"]) == 1  # the keeper was too slow (or died): the queue has it
    assert not await claim(client, late, 600.0)
    await drop(client, late)  # dropping what is not listed leaves the queued job alone
    assert queue.job_ids == ["late"] and sync.exists("rq:job:late")


def test_rqs_own_scheduled_retries_are_moved_too(redis_client: redis.Redis) -> None:
    """A crashed chunk's RQ retry waits in RQ's scheduled registry (whole seconds); the same
    mover puts it back on the queue, with no scheduler lock to wait for."""
    queue = make_queue("vllm", redis_client)
    job = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), "workers.task.run_chunk", b"x",
                           job_id="retry-me")
    assert job.get_status() == "scheduled" and queue.job_ids == []
    assert move_due(redis_client, ["vllm"]) == 1
    assert queue.job_ids == ["retry-me"]
    assert Job.fetch("retry-me", connection=redis_client).get_status() == "queued"
