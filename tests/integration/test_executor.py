"""A chunk that fails unexpectedly stops all of its requests (real Redis for the result store)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aredis

from shared.adapters.base import Endpoint, HttpRequest
from shared.config import Settings
from shared.schema import Chunk, Request
from shared.store import ResultWriter
from tests.conftest import load_sample
from workers.executor import WorkerContext, execute_chunk
from workers.http import Reply
from workers.transport import Transport

pytestmark = pytest.mark.integration

CHAT = load_sample("openai_chat_completion.json")["response"]["body"]


class Sender:
    """`boom` breaks with a bug-like error at once; every other request hangs until cancelled."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.hanging = 0

    async def send(self, request: HttpRequest, timeout: float) -> Reply:
        if b"boom" in request.body:
            raise RuntimeError("not a provider error")
        self.hanging += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return 200, {}, json.dumps(CHAT).encode()

    async def aclose(self) -> None:
        return None


def request(cid: str, text: str) -> Request:
    return Request(cid, "chat", "vllm", "llama", {"messages": [{"role": "user", "content": text}]})


async def test_an_unexpected_error_cancels_the_chunks_other_requests(redis_url: str) -> None:
    client = aredis.Redis.from_url(redis_url)
    sender = Sender()
    ctx = WorkerContext(settings=Settings(), transport=Transport(sender), writer=ResultWriter(client, 60),
                        endpoints={"vllm": Endpoint("vllm", "http://127.0.0.1:9/v1")})
    requests = (*(request(f"r{i}", "fine") for i in range(5)), request("bad", "boom"))
    with pytest.raises(RuntimeError, match="not a provider error"):
        await execute_chunk(Chunk("b1", "c1", "vllm", requests), ctx)
    assert sender.hanging == 5 and sender.cancelled == 5  # none keeps sending after the failure
    await client.aclose()
