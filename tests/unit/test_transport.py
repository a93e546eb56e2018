"""The transport: retries, hand-backs, the limiter gate, scrubbed errors. No sockets: a fake
sender answers from a script; the limiter is the in-memory twin on a fake clock."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from shared.adapters.base import Endpoint, HttpRequest
from shared.adapters.openai import OpenAIAdapter
from shared.backoff import BackoffPolicy
from shared.errors import (
    AuthenticationError,
    ProviderConnectionError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from shared.limiter import Limits, MemoryLimiter
from tests.conftest import load_sample
from workers.gate import Budget, LimitGate
from workers.http import Reply, SendFailed
from workers.transport import Attempt, DeferRequest, Transport

CHAT = load_sample("openai_chat_completion.json")["response"]
ENDPOINT = Endpoint("openai", "http://fake.local/v1", "sk-canary-transport-0123456789abcdef")
BODY = {"messages": [{"role": "user", "content": "hi"}]}


class FakeSender:
    def __init__(self, replies: list[Reply | Exception]) -> None:
        self.replies = deque(replies)
        self.sent: list[HttpRequest] = []

    async def send(self, request: HttpRequest, timeout: float) -> Reply:
        self.sent.append(request)
        reply = self.replies.popleft()
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def aclose(self) -> None:
        return None


def ok() -> Reply:
    import json

    return 200, {"x-request-id": "req_1"}, json.dumps(CHAT["body"]).encode()


def error(status: int, headers: dict[str, str] | None = None, message: str = "nope") -> Reply:
    import json

    return status, headers or {}, json.dumps({"error": {"message": message, "type": "x", "code": None}}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(replies: list[Reply | Exception], *, gate: bool = False, attempts: int = 4,
         inline: float = 30.0) -> tuple[Transport, FakeSender, Clock, MemoryLimiter]:
    clock = Clock()
    sender = FakeSender(replies)
    limiter = MemoryLimiter(clock)

    async def probe(scope: str) -> bool:
        return False

    the_gate = LimitGate(limiter, probe=probe, sleep=clock.sleep, max_wait_s=inline, clock=clock) if gate else None
    policy = BackoffPolicy(max_attempts=attempts, inline_wait_limit=inline)
    transport = Transport(sender, gate=the_gate, policy=policy, sleep=clock.sleep, rand=lambda: 0.5)
    return transport, sender, clock, limiter


def call(transport: Transport, budget: Budget | None = None, attempt: Attempt | None = None) -> Any:
    adapter = OpenAIAdapter()
    return asyncio.run(transport.call(
        adapter, ENDPOINT, lambda: adapter.build_chat(ENDPOINT, "gpt-4o-mini", BODY),
        lambda h, c: adapter.parse_chat(h, c, "gpt-4o-mini"), attempt or Attempt(), budget,
    ))


def test_retries_retryable_errors_then_succeeds() -> None:
    transport, sender, clock, _ = make([error(503), error(429, {"retry-after": "2"}), ok()])
    attempt = Attempt()
    parsed = call(transport, attempt=attempt)
    assert parsed.request_id == "req_1"
    assert attempt.attempts == 3
    assert len(clock.slept) == 2 and clock.slept[1] >= 2.0  # the server's hint is a floor
    assert sender.sent[0].headers["authorization"].startswith("Bearer ")


def test_non_retryable_error_fails_at_once_with_scrubbed_text() -> None:
    leaked = f"Incorrect API key provided: {ENDPOINT.api_key}"
    transport, sender, _, _ = make([error(401, message=leaked)])
    with pytest.raises(AuthenticationError) as info:
        call(transport)
    assert len(sender.sent) == 1
    assert ENDPOINT.api_key not in str(info.value)  # type: ignore[operator]


def test_attempts_are_capped() -> None:
    transport, sender, _, _ = make([error(500)] * 3, attempts=3)
    with pytest.raises(ServerError):
        call(transport)
    assert len(sender.sent) == 3


def test_connection_failure_is_retryable_and_names_no_query() -> None:
    transport, _, _, _ = make([SendFailed("ClientConnectorError")] * 2, attempts=2)
    with pytest.raises(ProviderConnectionError) as info:
        call(transport)
    assert "ClientConnectorError" in str(info.value)


def test_a_long_server_wait_is_handed_back_not_slept() -> None:
    transport, _, clock, _ = make([error(429, {"retry-after": "120"})], inline=30)
    with pytest.raises(DeferRequest) as info:
        call(transport)
    assert info.value.delay >= 120
    assert clock.slept == []


def test_configured_limit_spaces_requests_through_the_gate() -> None:
    transport, sender, clock, _ = make([ok()] * 5, gate=True)
    budget = Budget("openai:k:gpt", Limits(rpm=60), tokens=10, provider="openai")
    for _ in range(5):
        call(transport, budget)
    assert len(sender.sent) == 5
    assert clock.now - 1000.0 >= 3.0  # 60/min is one a second (after the 1 s burst tolerance)


def test_request_larger_than_the_token_budget_fails_without_sending() -> None:
    transport, sender, _, _ = make([ok()], gate=True)
    budget = Budget("openai:k:gpt", Limits(tpm=100), tokens=5000, provider="openai")
    with pytest.raises(QuotaExceededError, match="per-minute token budget"):
        call(transport, budget)
    assert sender.sent == []


def test_a_429_with_retry_after_cools_the_scope_down_for_everyone() -> None:
    transport, sender, clock, limiter = make([error(429, {"retry-after": "5"}), ok()], gate=True)
    budget = Budget("openai:k:gpt", Limits(), tokens=10, provider="openai")
    assert transport.gate is not None
    asyncio.run(transport.gate.settle(budget, None, error(429, {"retry-after": "5"}), None))
    refused = asyncio.run(limiter.acquire(budget.scope, Limits(), 10))
    assert (refused.ok, refused.reason) == (False, "cooldown")
    assert 4.0 <= refused.wait_s <= 5.0
    call(transport, budget)  # a second worker's request waits the cooldown out, then succeeds
    assert len(sender.sent) == 2
    assert clock.now - 1000.0 >= 5.0


def test_unlimited_scope_skips_the_limiter() -> None:
    transport, sender, _, limiter = make([ok()], gate=True)
    budget = Budget("openai:k:gpt", Limits(), tokens=10, provider="openai")
    call(transport, budget)
    assert len(sender.sent) == 1
    assert limiter._scopes == {}


def test_429s_on_a_paced_scope_do_not_spend_the_attempts() -> None:
    transport, sender, _, _ = make([error(429)] * 5 + [ok()], gate=True, attempts=2)
    budget = Budget("openai:k:gpt", Limits(), tokens=10, provider="openai")
    attempt = Attempt(throttle_allowance=5)
    assert call(transport, budget, attempt).request_id == "req_1"
    assert (attempt.attempts, attempt.throttled, len(sender.sent)) == (6, 5, 6)


def test_429s_past_the_allowance_count_like_any_error() -> None:
    transport, sender, _, _ = make([error(429)] * 6, gate=True, attempts=2)
    budget = Budget("openai:k:gpt", Limits(), tokens=10, provider="openai")
    attempt = Attempt(throttle_allowance=3)
    with pytest.raises(RateLimitError):
        call(transport, budget, attempt)
    assert (attempt.throttled, len(sender.sent)) == (3, 5)  # 3 free, then 2 charged


def test_429s_without_a_limiter_are_charged() -> None:
    transport, sender, _, _ = make([error(429)] * 3, attempts=2)
    with pytest.raises(RateLimitError):
        call(transport, None, Attempt(throttle_allowance=10))
    assert len(sender.sent) == 2
