"""`sluice limits`: what the shared limiter learned, read back from a real Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
import redis.asyncio as aredis
from click.testing import CliRunner

from producer.cli import main
from shared.limiter import Limits, RedisLimiter, limit_scope
from shared.ratelimit import RateSignal
from shared.schema import Chunk, Request
from workers.queueing import make_queue
from workers.requeue import defer_chunk

pytestmark = pytest.mark.integration

CANARY = "sk-canary-limits-0123456789abcdefghij"
SCOPE = limit_scope("openai", CANARY, "gpt-4o-mini")


async def learn(url: str) -> None:
    """Headers announce 500 rpm, a 429 says come back in 30 s; another scope has one request
    in flight."""
    client = aredis.Redis.from_url(url)
    limiter = RedisLimiter(client)
    await limiter.observe(SCOPE, RateSignal(limit_requests=500, requests_window_s=60.0), 200)
    await limiter.observe(SCOPE, RateSignal(retry_after_s=30.0), 429)
    assert (await limiter.acquire("vllm:-:llama", Limits(max_in_flight=4), 10)).ok
    await client.aclose()


def test_limits_shows_learned_limits_cooldowns_in_flight_and_hand_backs(redis_url: str) -> None:
    asyncio.run(learn(redis_url))
    sync = redis.Redis.from_url(redis_url)
    request = Request("r1", "chat", "vllm", "llama", {"messages": []})
    defer_chunk(sync, make_queue("vllm", sync), Chunk("b1", "c1", "vllm", (request,)), 20.0)
    sync.close()

    result = CliRunner().invoke(main, ["limits", "--json"], env={"REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    scopes = {s["scope"]: s for s in data["scopes"]}
    assert set(scopes) == {SCOPE, "vllm:-:llama"}
    assert scopes[SCOPE]["header_rpm"] == 500.0 and scopes[SCOPE]["aimd_rpm"] is None
    assert 25.0 < scopes[SCOPE]["cooldown_s"] <= 30.0
    assert scopes["vllm:-:llama"]["in_flight"] == 1 and scopes["vllm:-:llama"]["cooldown_s"] == 0.0
    assert data["deferred"]["vllm"]["chunks"] == 1 and 15.0 < data["deferred"]["vllm"]["next_due_s"] <= 20.0

    text = CliRunner().invoke(main, ["limits"], env={"REDIS_URL": redis_url}).output
    assert SCOPE in text and "vllm: 1 handed-back chunk(s) waiting" in text
    assert CANARY not in text + result.output  # the key appears only as its fingerprint


def test_limits_with_nothing_learned(redis_url: str) -> None:
    result = CliRunner().invoke(main, ["limits"], env={"REDIS_URL": redis_url})
    assert result.exit_code == 0 and result.output.startswith("no limiter state")
