"""One batch across five wire protocols (OpenAI-compatible, Anthropic, Gemini, Ollama, Cohere),
each served by the loopback fake; and fail-over from a failing route to a healthy one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import FakeProvider, Sluice, read_output

pytestmark = pytest.mark.e2e

ROUTES = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-sonnet-20241022",
    "gemini": "gemini-2.0-flash",
    "ollama": "llama3.1",
    "cohere": "command-r-plus-08-2024",
}
EMBED = {"openai": "text-embedding-3-small", "gemini": "text-embedding-004", "ollama": "nomic-embed-text",
         "cohere": "embed-english-v3.0"}


def point_at(sluice: Sluice, fake: FakeProvider) -> None:
    env = sluice.env
    env.update({
        "OPENAI_BASE_URL": f"{fake.url}/v1", "OPENAI_API_KEY": "sk-test-openai-000000000000",
        "ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "sk-ant-api03-test-000000000000",
        "SLUICE_GEMINI_BASE_URL": f"{fake.url}/v1beta", "GEMINI_API_KEY": "AIza-test-0000000000000000",
        "OLLAMA_HOST": fake.url,
        "SLUICE_COHERE_BASE_URL": fake.url, "COHERE_API_KEY": "cohere-test-key-000000000000",
    })


def write_mixed(path: Path, per_route: int) -> list[str]:
    ids = []
    with open(path, "w") as fh:
        for provider, model in ROUTES.items():
            for i in range(per_route):
                cid = f"{provider}-chat-{i}"
                body = {"model": f"{provider}/{model}", "max_tokens": 32,
                        "messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": f"{provider} question {i}"}]}
                fh.write(json.dumps({"custom_id": cid, "url": "/v1/chat/completions", "body": body}) + "\n")
                ids.append(cid)
        for provider, model in EMBED.items():
            cid = f"{provider}-embed"
            body = {"model": f"{provider}/{model}", "input": [f"text {j}" for j in range(150)]}
            fh.write(json.dumps({"custom_id": cid, "url": "/v1/embeddings", "body": body}) + "\n")
            ids.append(cid)
    return ids


def test_one_batch_mixing_five_protocols(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    fake = fake_provider()
    point_at(sluice, fake)
    ids = write_mixed(tmp_path / "in.jsonl", 20)
    sluice.start_worker("--providers", ",".join(ROUTES), "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl", "--wait").stdout.splitlines()[0]
    sluice.run("results", batch_id, "-o", "out.jsonl")
    lines = {line["custom_id"]: line for line in read_output(tmp_path / "out.jsonl")}
    assert sorted(lines) == sorted(ids)
    errors = {cid: line["error"] for cid, line in lines.items() if line["error"]}
    assert errors == {}
    for provider in ROUTES:
        line = lines[f"{provider}-chat-3"]
        body = line["response"]["body"]
        assert line["provider"] == provider
        assert body["object"] == "chat.completion"
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["usage"]["prompt_tokens"] > 0
    for provider in EMBED:
        data = lines[f"{provider}-embed"]["response"]["body"]["data"]
        assert [d["index"] for d in data] == list(range(150))
    stats = fake.stats()
    assert stats["by_path"].get("/v1/messages", 0) >= 20
    assert any(":generateContent" in path for path in stats["by_path"])
    assert stats["by_path"].get("/api/chat", 0) >= 20 and stats["by_path"].get("/v2/chat", 0) >= 20
    gemini_embed_calls = sum(n for path, n in stats["by_path"].items() if "batchEmbedContents" in path)
    assert gemini_embed_calls == 2  # 150 inputs split at Gemini's 100-per-call cap
    usage = json.loads(sluice.run("status", batch_id, "--json").stdout)["usage_by_model"]
    assert {route.split("/")[0] for route in usage} == set(ROUTES) | set(EMBED)


def test_failover_moves_requests_to_the_fallback_route(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    broken = fake_provider("--fail-rate", "1.0", "--fail-status", "503")
    healthy = fake_provider()
    sluice.env.update({"OPENAI_BASE_URL": f"{broken.url}/v1", "OPENAI_API_KEY": "sk-test-openai-000000000000",
                       "OLLAMA_HOST": healthy.url, "SLUICE_MAX_ATTEMPTS": "2"})
    with open(tmp_path / "in.jsonl", "w") as fh:
        for i in range(30):
            body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
            fh.write(json.dumps({"custom_id": f"r{i}", "url": "/v1/chat/completions", "body": body}) + "\n")
    sluice.start_worker("--providers", "openai,ollama", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl", "--fallback", "ollama/llama3.1", "--wait").stdout.splitlines()[0]
    sluice.run("results", batch_id, "-o", "out.jsonl")
    lines = read_output(tmp_path / "out.jsonl")
    assert len(lines) == 30
    assert {(line["provider"], line["model"]) for line in lines} == {("ollama", "llama3.1")}
    assert all(line["error"] is None for line in lines)
    assert broken.stats()["by_status"].get("503", 0) >= 30
