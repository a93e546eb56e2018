"""Real `sluice worker` processes, a real redis-server, the loopback fake provider."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import FakeProvider, Sluice, read_output, write_requests

pytestmark = pytest.mark.e2e


def wait_done(sluice: Sluice, batch_id: str, timeout: float = 180) -> dict[str, object]:
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(sluice.run("status", batch_id, "--json").stdout)
        if state["status"] in ("completed", "failed", "cancelled"):
            return state  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} not done after {timeout}s")


def child_pids(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_large_mixed_batch_has_one_line_per_request(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    fake = fake_provider()
    sluice.env["VLLM_BASE_URL"] = f"{fake.url}/v1"
    ids = write_requests(tmp_path / "in.jsonl", 2400)
    sluice.start_worker("--providers", "vllm", "--processes", "2")
    batch_id = sluice.run("submit", "in.jsonl").stdout.strip()
    state = wait_done(sluice, batch_id)
    assert state["request_counts"] == {"total": 2400, "completed": 2400, "failed": 0}
    sluice.run("results", batch_id, "-o", "out.jsonl")
    lines = read_output(tmp_path / "out.jsonl")
    assert Counter(line["custom_id"] for line in lines) == Counter(ids)
    by_id = {line["custom_id"]: line for line in lines}
    chat = by_id["req-00001"]["response"]["body"]
    assert chat["object"] == "chat.completion"
    assert "question 1" in chat["choices"][0]["message"]["content"]
    emb = by_id["req-00003"]["response"]["body"]
    assert emb["object"] == "list" and len(emb["data"]) == 2
    assert all(line["error"] is None for line in lines)


def test_killed_worker_process_loses_and_duplicates_nothing(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path, redis_url: str
) -> None:
    fake = fake_provider("--latency", "0.05")
    sluice.env["VLLM_BASE_URL"] = f"{fake.url}/v1"
    sluice.env["SLUICE_CHUNK_SIZE"] = "32"
    sluice.env["SLUICE_CONCURRENCY"] = "16"
    ids = write_requests(tmp_path / "in.jsonl", 2000)
    pool = sluice.start_worker("--providers", "vllm", "--processes", "2")
    batch_id = sluice.run("submit", "in.jsonl").stdout.strip()
    client = redis.Redis.from_url(redis_url)
    key = f"sluice:batch:{batch_id}:state"
    deadline = time.monotonic() + 60
    while int(client.hget(key, "completed") or 0) < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    victims = child_pids(pool.pid)
    assert victims, "the pool has no worker processes"
    os.kill(victims[0], signal.SIGKILL)
    state = wait_done(sluice, batch_id, timeout=150)
    assert state["request_counts"] == {"total": 2000, "completed": 2000, "failed": 0}
    sluice.run("results", batch_id, "-o", "out.jsonl")
    lines = read_output(tmp_path / "out.jsonl")
    assert len(lines) == 2000
    assert Counter(line["custom_id"] for line in lines) == Counter(ids)
    assert len(child_pids(pool.pid)) == 2, "the pool did not replace the killed process"


def test_watch_status_and_cancel(sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path) -> None:
    fake = fake_provider()
    sluice.env["VLLM_BASE_URL"] = f"{fake.url}/v1"
    write_requests(tmp_path / "in.jsonl", 40)
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl", "--wait").stdout.splitlines()[0]
    watched = sluice.run("watch", batch_id).stdout.splitlines()
    assert len(watched) == 40
    position = watched[9].split()[0]
    resumed = sluice.run("watch", batch_id, "--from", position).stdout.splitlines()
    assert resumed == watched[10:]
    text = sluice.run("status", batch_id).stdout
    assert "completed" in text and "40/40" in text and "vllm/llama" in text
    sluice.stop_workers()
    second = sluice.run("submit", "in.jsonl").stdout.strip()
    assert "cancelling" in sluice.run("cancel", second).stdout
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    state = wait_done(sluice, second)
    assert state["status"] == "cancelled"
    assert state["request_counts"]["failed"] == 40  # type: ignore[index]


def test_run_with_redis_url_uses_the_live_workers(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    fake = fake_provider()
    sluice.env["VLLM_BASE_URL"] = f"{fake.url}/v1"
    ids = write_requests(tmp_path / "in.jsonl", 120)
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _worker_registered(sluice):
        time.sleep(0.2)
    done = sluice.run("run", "in.jsonl", "-o", "out.jsonl", "--no-progress")
    assert "using the workers already serving this Redis" in done.stderr
    assert [line["custom_id"] for line in read_output(tmp_path / "out.jsonl")] == ids


def _worker_registered(sluice: Sluice) -> bool:
    client = redis.Redis.from_url(sluice.env["REDIS_URL"])
    return any(key.startswith(b"rq:worker:sluice-") for key in client.scan_iter("rq:worker:*"))
