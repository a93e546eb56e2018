"""The loopback fake provider (bench/fake_provider.py) that benchmarks and e2e tests run against."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.fake_provider import (
    FakeConfig,
    FakeProvider,
    FakeProviderProcess,
    config_from,
    embedding,
    go_duration,
    key_hint,
    load_sample,
    parser,
    start_fake_provider,
    state_of,
)

Start = Callable[..., Awaitable[aiohttp.ClientSession]]
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "The first question is about a very long subject indeed"}]}


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """start(**FakeConfig options) -> a client session bound to a fresh fake provider."""
    runners, sessions = [], []

    async def serve(**options: Any) -> aiohttp.ClientSession:
        runner, port = await start_fake_provider(FakeConfig(**options))
        runners.append(runner)
        session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
        sessions.append(session)
        return session

    yield serve
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


async def call(session: aiohttp.ClientSession, path: str, doc: Any = None,
               key: str | None = None, header: str = "Authorization") -> tuple[int, Any, Any]:
    """(status, headers, decoded body); GET when doc is None."""
    headers = {} if key is None else {header: f"Bearer {key}" if header == "Authorization" else key}
    method = "GET" if doc is None else "POST"
    async with session.request(method, path, json=doc, headers=headers) as response:
        raw = await response.read()
        body = json.loads(raw) if response.content_type == "application/json" else raw.decode()
        return response.status, response.headers, body


def sample(name: str) -> Any:
    return load_sample(name)["response"]["body"]


def same_shape(got: Any, want: Any) -> bool:
    """Same keys all the way down (list items compared with the first one)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            same_shape(got[k], want[k]) for k in want)
    if isinstance(want, list) and want:
        return isinstance(got, list) and all(same_shape(g, want[0]) for g in got)
    return True


# -- pure helpers ------------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.0004, "0s"), (0.002, "2ms"), (0.12, "120ms"), (1.5, "1.5s"), (17.283, "17.283s"),
    (60, "1m0s"), (90.5, "1m30.5s"), (360, "6m0s"), (3600, "1h0m0s"), (3725, "1h2m5s")])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(("key", "hint"), [
    ("sk-abcdefgh1234567890xyz9", "sk-abcde" + "*" * 13 + "xyz9"),
    ("API_KEY", "API_KEY"),
    ("", "")])
def test_key_hint_masks_like_openai(key: str, hint: str) -> None:
    assert key_hint(key) == hint


def test_embedding_is_deterministic_unit_vector() -> None:
    vector = embedding("hello", 16)
    assert vector == embedding("hello", 16) != embedding("world", 16)
    assert len(vector) == 16
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-4


def test_cli_flags_build_the_config() -> None:
    args = parser().parse_args([
        "--latency", "0.5", "--rpm", "60", "--tpm", "1000", "--headers", "anthropic",
        "--retry-after", "2", "--random-429", "0.1", "--fail-rate", "0.2", "--fail-status", "503",
        "--require-key", "sk-x", "--hang-rate", "0.05", "--seed", "7", "--no-echo", "--dim", "4"])
    config = config_from(args)
    assert (config.rpm, config.tpm, config.headers) == (60, 1000, "anthropic")
    assert (config.fail_status, config.require_key, config.seed) == (503, "sk-x", 7)
    assert (config.echo, config.embedding_dim) == (False, 4)
    with pytest.raises(ValueError, match="fail_rate"):
        FakeConfig(fail_rate=2.0)


# -- endpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
async def test_openai_chat_echoes_model_and_last_user_message(start: Start, path: str) -> None:
    status, _, body = await call(await start(), path, CHAT)
    assert status == 200
    assert same_shape(body, sample("openai_chat_completion.json"))
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"]["content"] == "echo:" + CHAT["messages"][1]["content"][:40]
    usage = body["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] == usage["total_tokens"] > 0


async def test_chat_without_echo_answers_the_sample_text(start: Start) -> None:
    _, _, body = await call(await start(echo=False), "/v1/chat/completions", CHAT)
    want = sample("openai_chat_completion.json")["choices"][0]["message"]["content"]
    assert body["choices"][0]["message"]["content"] == want


async def test_openai_embeddings_one_vector_per_input_in_order(start: Start) -> None:
    session = await start()
    texts = ["alpha", "beta", "gamma"]
    status, _, body = await call(session, "/v1/embeddings", {"model": "m", "input": texts})
    assert status == 200
    assert same_shape(body, sample("openai_embeddings.json"))
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert [d["embedding"] for d in body["data"]] == [list(embedding(t, 8)) for t in texts]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == 3


async def test_openai_embeddings_base64_dimensions_and_unprefixed_path(start: Start) -> None:
    doc = {"model": "m", "input": "alpha", "encoding_format": "base64", "dimensions": 4}
    _, _, body = await call(await start(), "/embeddings", doc)
    raw = base64.b64decode(body["data"][0]["embedding"])
    decoded = struct.unpack("<4f", raw)
    assert decoded == pytest.approx(embedding("alpha", 4), abs=1e-6)


async def test_openai_models(start: Start) -> None:
    status, _, body = await call(await start(models=("a", "b")), "/v1/models")
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["a", "b"]


async def test_anthropic_messages(start: Start) -> None:
    doc = {"model": "claude-x", "max_tokens": 16, "system": "s",
           "messages": [{"role": "user", "content": [{"type": "text", "text": "hi claude"}]}]}
    status, _, body = await call(await start(), "/v1/messages", doc, "sk-ant", "x-api-key")
    assert status == 200
    assert same_shape(body, sample("anthropic_message.json"))
    assert (body["model"], body["content"][0]["text"]) == ("claude-x", "echo:hi claude")
    status, _, body = await call(await start(), "/v1/messages", {"model": "m", "messages": []})
    assert status == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


async def test_gemini_generate_and_batch_embed(start: Start) -> None:
    session = await start()
    doc = {"contents": [{"role": "user", "parts": [{"text": "hi gemini"}]}]}
    status, _, body = await call(session, "/v1beta/models/gemini-x:generateContent", doc)
    assert status == 200
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "echo:hi gemini"
    assert body["modelVersion"] == "gemini-x"
    requests = [{"model": "models/e", "content": {"parts": [{"text": t}]}} for t in "abc"]
    status, _, body = await call(session, "/v1beta/models/e:batchEmbedContents",
                                 {"requests": requests})
    assert status == 200
    assert same_shape(body, sample("gemini_batch_embed_contents.json"))
    assert [e["values"] for e in body["embeddings"]] == [list(embedding(t, 8)) for t in "abc"]
    status, _, body = await call(session, "/v1beta/models/e:batchEmbedContents",
                                 {"requests": requests * 34})
    assert status == 400
    assert "at most 100 requests" in body["error"]["message"]


async def test_ollama_chat_embed_tags(start: Start) -> None:
    session = await start()
    doc = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    _, _, body = await call(session, "/api/chat", doc)
    assert same_shape(body, sample("ollama_api_chat.json"))
    assert (body["model"], body["message"]["content"], body["done"]) == ("llama", "echo:hi", True)
    _, headers, text = await call(session, "/api/chat", {**doc, "stream": True})
    lines = [json.loads(line) for line in text.splitlines()]
    assert headers["Content-Type"] == "application/x-ndjson"
    assert [line["done"] for line in lines] == [False, True]
    _, _, body = await call(session, "/api/embed", {"model": "e", "input": ["x", "y"]})
    assert body["embeddings"] == [list(embedding(t, 8)) for t in "xy"]
    _, _, body = await call(session, "/api/tags")
    assert body == sample("ollama_api_tags.json")


async def test_cohere_chat_and_embed(start: Start) -> None:
    session = await start()
    doc = {"model": "command", "messages": [{"role": "user", "content": "hi cohere"}]}
    _, _, body = await call(session, "/v2/chat", doc)
    assert same_shape(body, sample("cohere_chat_v2.json"))
    assert body["message"]["content"][0]["text"] == "echo:hi cohere"
    doc = {"model": "embed", "texts": ["a", "b"], "embedding_types": ["float", "int8"]}
    status, headers, body = await call(session, "/v2/embed", doc)
    assert status == 200
    assert same_shape(body, sample("cohere_embed_v2.json") | {"embeddings": body["embeddings"]})
    assert body["embeddings"]["float"] == [list(embedding(t, 8)) for t in "ab"]
    assert len(body["embeddings"]["int8"]) == 2
    assert headers["num_tokens"] == "2"


async def test_malformed_body_is_a_400_in_the_provider_shape(start: Start) -> None:
    session = await start()
    async with session.post("/v2/embed", data=b"not json") as response:
        assert response.status == 400
        assert "message" in await response.json()


# -- limits, chaos, auth -----------------------------------------------------------------------
async def test_rpm_exceeded_answers_429_with_openai_headers(start: Start) -> None:
    session = await start(rpm=2, headers="openai", retry_after=3)
    for remaining in ("1", "0"):
        status, headers, _ = await call(session, "/v1/chat/completions", CHAT, "sk-a")
        assert status == 200
        assert headers["x-ratelimit-remaining-requests"] == remaining
    status, headers, body = await call(session, "/v1/chat/completions", CHAT, "sk-a")
    assert status == 429
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert GO_DURATION.match(headers["x-ratelimit-reset-requests"])
    assert headers["retry-after"] == "3"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert "Please try again in" in body["error"]["message"]
    status, _, _ = await call(session, "/v1/chat/completions", CHAT, "sk-b")
    assert status == 200, "limits are per key"


async def test_anthropic_headers_have_rfc3339_resets(start: Start) -> None:
    session = await start(rpm=1, tpm=100_000, headers="anthropic")
    doc = {"model": "c", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    status, headers, _ = await call(session, "/v1/messages", doc, "k", "x-api-key")
    assert status == 200
    reset = datetime.strptime(headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    assert 0 < reset.replace(tzinfo=UTC).timestamp() - time.time() <= 61
    assert int(headers["anthropic-ratelimit-tokens-remaining"]) < 100_000
    status, headers, body = await call(session, "/v1/messages", doc, "k", "x-api-key")
    assert status == 429
    assert body["error"]["type"] == "rate_limit_error"
    assert headers["x-should-retry"] == "true"
    assert "retry-after" not in headers


async def test_request_larger_than_tpm_is_too_large(start: Start) -> None:
    _, _, body = await call(await start(tpm=5), "/v1/chat/completions", CHAT, "k")
    assert body["error"]["message"].startswith("Request too large for gpt-4o-mini")


async def test_tpm_bucket_refills_continuously(start: Start) -> None:
    session = await start(tpm=6000)  # 100 tokens/s
    doc = {"model": "m", "input": "x" * 400 * 20}  # 2000 tokens
    statuses = [(await call(session, "/v1/embeddings", doc, "k"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_require_key(start: Start) -> None:
    session = await start(require_key="sk-right-key-0123456789")
    status, _, body = await call(session, "/v1/chat/completions", CHAT, "sk-wrong-key-0123456789")
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert "Incorrect API key provided: sk-wrong*" in body["error"]["message"]
    assert "sk-wrong-key-0123456789" not in body["error"]["message"]
    status, _, body = await call(session, "/v1/chat/completions", CHAT)
    assert (status, body["error"]["code"]) == (401, None)
    status, _, _ = await call(session, "/v1/chat/completions", CHAT, "sk-right-key-0123456789")
    assert status == 200
    status, _, body = await call(session, "/v1beta/models/g:generateContent", {"contents": []},
                                 "bad", "x-goog-api-key")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")


async def test_random_429_and_failures(start: Start) -> None:
    status, headers, _ = await call(await start(random_429=1.0), "/v1/chat/completions", CHAT)
    assert (status, headers["retry-after"]) == (429, "1")
    session = await start(fail_rate=1.0, fail_status=529)
    doc = {"model": "c", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    status, _, body = await call(session, "/v1/messages", doc)
    assert (status, body["error"]["type"]) == (529, "overloaded_error")


async def test_hang_never_answers(start: Start) -> None:
    session = await start(hang_rate=1.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call(session, "/v1/chat/completions", CHAT), 0.3)
    _, _, stats = await call(session, "/_stats")
    assert stats["hung"] == 1


async def test_latency(start: Start) -> None:
    session = await start(latency=0.2, latency_jitter=0.05, seed=1)
    began = time.monotonic()
    await call(session, "/v1/chat/completions", CHAT)
    assert 0.2 <= time.monotonic() - began < 2


# -- stats ---------------------------------------------------------------------------------------
async def test_stats_count_paths_keys_statuses_and_dupes(start: Start) -> None:
    session = await start(rpm=2)
    other = {**CHAT, "model": "other"}
    for doc in (CHAT, CHAT, other):
        await call(session, "/v1/chat/completions", doc, "k1")
    await call(session, "/v1/embeddings", {"model": "m", "input": ["a", "b"]}, "k2")
    _, _, stats = await call(session, "/_stats")
    assert stats["total"] == 4
    assert stats["by_status"] == {"200": 3, "429": 1}
    assert stats["by_path"] == {"/v1/chat/completions": 3, "/v1/embeddings": 1}
    assert stats["by_key"] == {"k1": 3, "k2": 1}
    assert (stats["rate_limited"], stats["rate_limited_by_key"]) == (1, {"k1": 1})
    assert (stats["distinct_bodies"], stats["dupes"], stats["dupes_ok"]) == (3, 1, 1)
    assert stats["inputs"] == 2
    assert list(stats["duplicates"].values()) == [2]
    status, _, _ = await call(session, "/_reset", {})
    assert status == 200
    _, _, stats = await call(session, "/_stats")
    assert (stats["total"], stats["dupes"], stats["by_status"]) == (0, 0, {})
    status, _, _ = await call(session, "/v1/chat/completions", CHAT, "k1")
    assert status == 200, "reset refills the buckets"


async def test_config_changes_at_run_time(start: Start) -> None:
    session = await start()
    status, _, config = await call(session, "/_config", {"fail_rate": 1.0, "fail_status": 503})
    assert (status, config["fail_rate"]) == (200, 1.0)
    status, _, body = await call(session, "/v1/chat/completions", CHAT)
    assert status == 503
    assert body["error"]["type"] == "server_error"
    status, _, _ = await call(session, "/_config", {"fail_rate": 7})
    assert status == 400


async def test_in_process_state_is_reachable() -> None:
    runner, port = await start_fake_provider(FakeConfig())
    try:
        async with aiohttp.ClientSession() as session:
            await call(session, f"http://127.0.0.1:{port}/v1/models")
        assert state_of(runner).stats.total == 1
    finally:
        await runner.cleanup()


# -- ways to run it ------------------------------------------------------------------------------
def post_json(url: str, doc: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.load(response)


def test_thread_context_manager() -> None:
    with FakeProvider(FakeConfig(embedding_dim=3)) as fake:
        body = post_json(fake.url + "/v1/embeddings", {"model": "m", "input": ["a"]})
        assert len(body["data"][0]["embedding"]) == 3
        assert fake.stats()["total"] == 1
        fake.reset()
        assert fake.stats()["total"] == 0


@pytest.mark.timeout(60)
def test_subprocess_writes_port_file_and_stops(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    with FakeProviderProcess(port_file, "--rpm", "1") as fake:
        assert int(port_file.read_text()) == fake.port
        post_json(fake.url + "/v1/chat/completions", CHAT)
        assert fake.stats()["by_status"] == {"200": 1}
        assert fake.configure(rpm=5)["rpm"] == 5
    assert fake.process is not None and fake.process.returncode is not None
