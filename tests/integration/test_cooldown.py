"""Shared push-back on a real redis-server and its own clock: a cooldown one worker learns is
honoured by every other connection and process.

Waits are checked against Redis `TIME` read around the call (the cooldown must land between
`before + s` and `after + s`), never against how long the test took.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import redis.asyncio as aredis

from shared.limiter import LimiterConfig, Limits, RedisLimiter, limiter_keys
from shared.ratelimit import parse_signal
from tests.conftest import load_sample

pytestmark = pytest.mark.integration

SCOPE = "anthropic:fp-0123456789ab:claude-sonnet-4-5"


async def redis_now(client: aredis.Redis) -> float:
    seconds, micros = await client.time()
    return float(seconds) + float(micros) / 1e6


async def cooldown_until(client: aredis.Redis, scope: str = SCOPE) -> float | None:
    value = await client.hget(limiter_keys(scope).state, "cooldown")
    return float(value) if value is not None else None


def lands(until: float | None, low: float, high: float) -> bool:
    """`until` in [low, high], give or take the microsecond Redis stores times to."""
    return until is not None and low - 1e-5 <= until <= high + 1e-5


class Pair:
    """Two workers: separate connections, separate limiter objects, one Redis."""

    def __init__(self, url: str, config: LimiterConfig | None = None) -> None:
        self.clients = [aredis.Redis.from_url(url), aredis.Redis.from_url(url)]
        self.a, self.b = (RedisLimiter(client, config) for client in self.clients)
        self.probe = self.clients[0]

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[Pair]:
    rig = Pair(redis_url)
    yield rig
    await rig.close()


async def observed_window(
    pair: Pair, status: int, headers: dict[str, str], body: Any
) -> tuple[float, float]:
    """Observe one response on worker A; return Redis time just before and just after."""
    before = await redis_now(pair.probe)
    signal = parse_signal(status, headers, body, time.time())
    await pair.a.observe(SCOPE, signal, status)
    return before, await redis_now(pair.probe)


async def test_cooldown_set_by_one_worker_stops_another(pair: Pair) -> None:
    before = await redis_now(pair.probe)
    await pair.a.cooldown(SCOPE, 30.0)
    after = await redis_now(pair.probe)
    until = await cooldown_until(pair.probe)
    assert lands(until, before + 30, after + 30)
    grant = await pair.b.acquire(SCOPE, Limits(rpm=10_000), 1)
    assert (grant.ok, grant.reason) == (False, "cooldown")
    assert 0 < grant.wait_s <= 30.0
    assert (await pair.b.acquire("anthropic:fp-0123456789ab:other", Limits(), 1)).ok


async def test_a_shorter_cooldown_never_shortens_a_longer_one(pair: Pair) -> None:
    await pair.a.cooldown(SCOPE, 60.0)
    first = await cooldown_until(pair.probe)
    await pair.b.cooldown(SCOPE, 1.0)
    assert await cooldown_until(pair.probe) == first
    await pair.b.cooldown(SCOPE, 120.0)
    later = await cooldown_until(pair.probe)
    assert later is not None and first is not None and later > first + 50


async def test_429_retry_after_header_is_shared(pair: Pair) -> None:
    before, after = await observed_window(pair, 429, {"retry-after": "20"}, None)
    until = await cooldown_until(pair.probe)
    assert lands(until, before + 20, after + 20)
    assert (await pair.b.acquire(SCOPE, Limits(), 1)).reason == "cooldown"


async def test_gemini_429_body_hint_is_shared(pair: Pair) -> None:
    body = b'{"error":{"code":429,"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo",'
    body += b'"retryDelay":"59s"}],"status":"RESOURCE_EXHAUSTED"}}'
    before, after = await observed_window(pair, 429, {}, body)
    until = await cooldown_until(pair.probe)
    assert lands(until, before + 59, after + 59)
    assert (await pair.b.acquire(SCOPE, Limits(), 1)).reason == "cooldown"


async def test_exhausted_headers_on_a_success_are_shared(pair: Pair) -> None:
    headers = {
        "x-ratelimit-limit-requests": "14400",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2m59.56s",
    }
    before = await redis_now(pair.probe)
    signal = parse_signal(200, headers, None, time.time(), provider="groq")
    await pair.a.observe(SCOPE, signal, 200)
    after = await redis_now(pair.probe)
    until = await cooldown_until(pair.probe)
    assert lands(until, before + 179.56, after + 179.56)
    assert (await pair.b.acquire(SCOPE, Limits(), 1)).reason == "cooldown"


async def test_recorded_anthropic_429_without_retry_after_uses_the_exhausted_reset(
    pair: Pair,
) -> None:
    example = load_sample("anthropic_429_rate_limit.json")["headers_example"]
    headers = example["headers"]
    recorded_now = parsedate_to_datetime(headers["date"]).timestamp()
    signal = parse_signal(429, headers, None, recorded_now)
    before = await redis_now(pair.probe)
    await pair.a.observe(SCOPE, signal, 429)
    after = await redis_now(pair.probe)
    until = await cooldown_until(pair.probe)
    assert lands(until, before + 1.0, after + 1.0)  # reset 1 s after Date


async def test_retry_after_on_a_recorded_200_is_not_a_cooldown(pair: Pair) -> None:
    response = load_sample("huggingface_router_chat.json")["response"]
    assert response["headers"]["retry-after"] == "30"
    await observed_window(pair, 200, response["headers"], None)
    assert await cooldown_until(pair.probe) is None
    assert (await pair.b.acquire(SCOPE, Limits(), 1)).ok


async def test_bare_429_pauses_everyone_briefly(pair: Pair) -> None:
    bedrock = load_sample("bedrock_throttling_429.json")
    before, after = await observed_window(pair, 429, bedrock["headers"], bedrock["body"])
    until = await cooldown_until(pair.probe)
    assert lands(until, before + 1.0, after + 1.0)


async def test_cooldown_outlives_the_idle_state_ttl(redis_url: str) -> None:
    rig = Pair(redis_url, LimiterConfig(state_ttl_s=10))
    await rig.a.cooldown(SCOPE, 100.0)
    assert 99 <= await rig.probe.ttl(limiter_keys(SCOPE).state) <= 100
    await rig.close()


async def _set_cooldown(url: str, seconds: float) -> None:
    client = aredis.Redis.from_url(url)
    await RedisLimiter(client).cooldown(SCOPE, seconds)
    await client.aclose()


def cooldown_process(url: str, seconds: float) -> None:
    asyncio.run(_set_cooldown(url, seconds))


async def test_cooldown_from_another_process_is_honoured(pair: Pair, redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=cooldown_process, args=(redis_url, 45.0))
    before = await redis_now(pair.probe)
    proc.start()
    await asyncio.to_thread(proc.join, 120)
    after = await redis_now(pair.probe)
    assert proc.exitcode == 0
    until = await cooldown_until(pair.probe)
    assert lands(until, before + 45, after + 45)
    grant = await pair.b.acquire(SCOPE, Limits(), 1)
    assert (grant.ok, grant.reason) == (False, "cooldown")
