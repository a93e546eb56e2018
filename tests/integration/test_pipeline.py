"""Submit → RQ → SluiceWorker → store, in one process on a real redis-server; the provider is an
`httpx.MockTransport` answering with recorded bodies."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rq.job import JobStatus

from producer.client import Client
from shared.config import load_settings
from shared.serializer import MsgpackSerializer
from tests.conftest import load_sample
from workers import runtime, task
from workers.queueing import SluiceWorker, make_queue

pytestmark = pytest.mark.integration
CHAT = load_sample("openai_chat_completion.json")["response"]["body"]


def provider(request: httpx.Request) -> httpx.Response:
    payload = json.loads(request.content)
    if request.url.path.endswith("/embeddings"):
        data = [{"object": "embedding", "index": i, "embedding": [float(i)]} for i, _ in enumerate(payload["input"])]
        usage = {"prompt_tokens": 2, "total_tokens": 2}
        body = {"object": "list", "data": data[::-1], "model": payload["model"], "usage": usage}
        return httpx.Response(200, json=body)
    if payload["messages"][0]["content"] == "fail":
        error = {"message": "bad request", "type": "invalid_request_error", "code": None}
        return httpx.Response(400, json={"error": error})
    return httpx.Response(200, json=CHAT, headers={"x-request-id": "req_1"})


@pytest.fixture
def worker_runtime(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[runtime.Runtime]:
    monkeypatch.setenv("VLLM_BASE_URL", "http://fake.local/v1")
    settings = load_settings(env={}, max_attempts=1)
    rt = runtime.Runtime(settings, redis_url, http_transport=httpx.MockTransport(provider))
    runtime.install(rt)
    yield rt
    rt.close()


def run_worker(connection: redis.Redis, providers: list[str]) -> None:
    worker = SluiceWorker([make_queue(p, connection) for p in providers], connection=connection,
                          serializer=MsgpackSerializer)
    task.set_current_worker(worker)
    worker.work(burst=True)


def write_batch(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            if i % 4 == 0:
                body = {"model": "vllm/emb", "input": [f"t{j}" for j in range(5)]}
                url = "/v1/embeddings"
            else:
                body = {"model": "vllm/llama", "messages": [{"role": "user", "content": "fail" if i == 1 else f"q{i}"}]}
                url = "/v1/chat/completions"
            fh.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": url, "body": body}) + "\n")


def test_batch_runs_through_rq_into_the_store(redis_url: str, redis_client: redis.Redis,
                                              worker_runtime: runtime.Runtime, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_batch(path, 150)
    client = Client(redis_url, load_settings(env={}, chunk_size=16))
    before = client.usage_snapshot()
    batch_id, _ = client.submit_file(path, check_keys="none")
    run_worker(redis_client, ["vllm"])
    usage = client.usage_snapshot(batch_id)
    assert usage["vllm/emb"]["calls"] == 38 and usage["vllm/llama"]["failed"] == 1
    spent = client.usage_delta(before, client.usage_snapshot())
    assert spent["total_calls"] == 150
    assert spent["prompt_tokens"] == 38 * 2 + 111 * CHAT["usage"]["prompt_tokens"]
    assert (client.last_call() or "").startswith("vllm/")
    state = client.status(batch_id)
    assert state.status == "completed"
    assert (state.counts.completed, state.counts.failed) == (149, 1)
    results = {r.custom_id: r for r in client.results(batch_id)}
    assert len(results) == 150
    assert results["r1"].error is not None and results["r1"].status_code == 400
    assert results["r2"].body["choices"][0]["message"]["content"] == CHAT["choices"][0]["message"]["content"]  # type: ignore[index]
    vectors = [d["embedding"] for d in results["r0"].body["data"]]  # type: ignore[index]
    assert vectors == [[0.0], [1.0], [2.0], [3.0], [4.0]]


def test_rerun_chunk_skips_finished_requests(redis_url: str, redis_client: redis.Redis,
                                             worker_runtime: runtime.Runtime, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_batch(path, 10)
    client = Client(redis_url, load_settings(env={}, chunk_size=64))
    batch_id, _ = client.submit_file(path, check_keys="none")
    queue = make_queue("vllm", redis_client)
    job = queue.jobs[0]
    run_worker(redis_client, ["vllm"])
    queue.enqueue_job(job)  # the same chunk again, as after a crash
    run_worker(redis_client, ["vllm"])
    state = client.status(batch_id)
    assert state.counts.done == 10
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == {"requests": 10, "skipped": 10, "written": 0, "handed_off": 0}


def test_forged_job_naming_another_function_is_refused(redis_client: redis.Redis, tmp_path: Path) -> None:
    marker = tmp_path / "owned"
    queue = make_queue("openai", redis_client)
    job = queue.enqueue("os.system", f"touch {marker}")
    run_worker(redis_client, ["openai"])
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert not marker.exists()
    assert "not an allowed sluice task" in (job.latest_result().exc_string or "")  # type: ignore[union-attr]
    assert os.path.exists(tmp_path)
