"""The result store against a real redis-server: exactly-once writes, counters, events, lifecycle."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aredis

from shared.schema import BatchMeta, ErrorInfo, Result, Usage
from shared.store import ResultStore, ResultWriter, usage_delta

pytestmark = pytest.mark.integration


def ok(cid: str, prompt: int = 3, completion: int = 5) -> Result:
    usage = Usage(prompt, completion, prompt + completion)
    return Result(cid, 200, "openai", "gpt-4o-mini", body={"ok": cid}, usage=usage)


def bad(cid: str) -> Result:
    return Result(cid, 401, "openai", "gpt-4o-mini", error=ErrorInfo("authentication", "no"))


def record_all(url: str, batch_id: str, results: list[Result]) -> list[bool]:
    async def go() -> list[bool]:
        client = aredis.Redis.from_url(url)
        writer = ResultWriter(client, ttl=60)
        written = [await writer.record(batch_id, r) for r in results]
        await client.aclose()
        return written

    return asyncio.run(go())


def make_batch(client: redis.Redis, total: int) -> ResultStore:
    store = ResultStore(client, ttl=60)
    store.create_batch(BatchMeta("b1", total, time.time(), ("openai",)))
    store.start("b1", total)
    return store


def test_first_write_wins_and_counters_never_double_count(redis_url: str, redis_client: redis.Redis) -> None:
    store = make_batch(redis_client, total=3)
    written = record_all(redis_url, "b1", [ok("a"), ok("a", 100, 100), bad("a"), bad("b")])
    assert written == [True, False, False, True]
    state = store.state("b1")
    assert state is not None
    assert (state.counts.completed, state.counts.failed, state.status) == (1, 1, "in_progress")
    assert (state.prompt_tokens, state.completion_tokens) == (3, 5)
    assert store.get("b1", "a") == ok("a")


def test_batch_completes_when_every_request_has_a_result(redis_url: str, redis_client: redis.Redis) -> None:
    store = make_batch(redis_client, total=2)
    record_all(redis_url, "b1", [ok("a"), bad("b")])
    state = store.state("b1")
    assert state is not None and state.status == "completed"
    assert state.completed_at is not None
    assert sorted(r.custom_id for r in store.results("b1")) == ["a", "b"]


def test_cancelling_batch_ends_cancelled(redis_url: str, redis_client: redis.Redis) -> None:
    store = make_batch(redis_client, total=1)
    store.set_status("b1", "cancelling")
    record_all(redis_url, "b1", [bad("a")])
    state = store.state("b1")
    assert state is not None and state.status == "cancelled"


def test_events_are_resumable_from_a_position(redis_url: str, redis_client: redis.Redis) -> None:
    store = make_batch(redis_client, total=3)
    record_all(redis_url, "b1", [ok("a"), bad("b"), ok("c")])
    events = store.events("b1")
    assert [(e.custom_id, e.ok) for e in events] == [("a", True), ("b", False), ("c", True)]
    rest = store.events("b1", after=events[0].position)
    assert [e.custom_id for e in rest] == ["b", "c"]
    assert rest[0].status_code == 401 and rest[0].provider == "openai"


def test_usage_by_model_and_delta(redis_url: str, redis_client: redis.Redis) -> None:
    store = make_batch(redis_client, total=3)
    before = store.usage()
    record_all(redis_url, "b1", [ok("a", 10, 1), ok("b", 20, 2)])
    after = store.usage()
    assert after["openai/gpt-4o-mini"]["calls"] == 2
    assert usage_delta(before, after) == {"total_calls": 2, "prompt_tokens": 30, "completion_tokens": 3}
    assert store.state("b1").usage_by_model["openai/gpt-4o-mini"]["prompt_tokens"] == 30  # type: ignore[union-attr]
    assert (store.last_call() or "").startswith("openai/gpt-4o-mini|")


def test_done_ids_finds_what_a_rerun_may_skip(redis_url: str, redis_client: redis.Redis) -> None:
    make_batch(redis_client, total=3)
    record_all(redis_url, "b1", [ok("a")])

    async def go() -> set[str]:
        client = aredis.Redis.from_url(redis_url)
        found = await ResultWriter(client, 60).done_ids("b1", ["a", "b"])
        await client.aclose()
        return found

    assert asyncio.run(go()) == {"a"}


def test_concurrent_writes_are_group_committed_exactly_once(redis_url: str, redis_client: redis.Redis) -> None:
    store = make_batch(redis_client, total=100)

    async def go() -> list[bool]:
        client = aredis.Redis.from_url(redis_url)
        writer = ResultWriter(client, ttl=60)
        results = [ok(f"r{i % 100}") for i in range(300)]
        written = await asyncio.gather(*(writer.record("b1", r) for r in results))
        await client.aclose()
        return list(written)

    written = asyncio.run(go())
    assert sum(written) == 100
    state = store.state("b1")
    assert state is not None and state.status == "completed"
    assert (state.counts.completed, state.prompt_tokens) == (100, 300)
