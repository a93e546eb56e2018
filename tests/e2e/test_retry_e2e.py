"""Failed requests stay listed with their error; `sluice retry` runs them again. A hung request
is cut by its timeout without stalling the others."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from shared import keys
from tests.e2e.conftest import FakeProvider, Sluice, read_output, write_requests

pytestmark = pytest.mark.e2e


def test_retry_command_reruns_failed_requests(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    fake = fake_provider("--fail-rate", "0.5", "--fail-status", "500", "--seed", "7")
    sluice.env.update({"VLLM_BASE_URL": f"{fake.url}/v1", "SLUICE_MAX_ATTEMPTS": "1"})
    ids = write_requests(tmp_path / "in.jsonl", 200)
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl", "--wait").stdout.splitlines()[0]
    first = json.loads(sluice.run("status", batch_id, "--json").stdout)
    failed = first["request_counts"]["failed"]
    assert 40 < failed < 160
    sluice.run("results", batch_id, "-o", "first.jsonl")
    errors = [line for line in read_output(tmp_path / "first.jsonl") if line["error"]]
    assert len(errors) == failed and all(e["response"]["status_code"] == 500 for e in errors)
    fake.configure(fail_rate=0.0)
    out = sluice.run("retry", batch_id, "--wait")
    assert f"{failed} failed requests re-enqueued" in out.stdout
    second = json.loads(sluice.run("status", batch_id, "--json").stdout)
    assert second["status"] == "completed"
    assert second["request_counts"] == {"total": 200, "completed": 200, "failed": 0}
    sluice.run("results", batch_id, "-o", "second.jsonl")
    lines = read_output(tmp_path / "second.jsonl")
    assert sorted(line["custom_id"] for line in lines) == sorted(ids)
    assert all(line["error"] is None for line in lines)


def test_hung_requests_are_cut_by_their_timeout(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    fake = fake_provider("--hang-rate", "0.05", "--seed", "3")
    sluice.env.update({"VLLM_BASE_URL": f"{fake.url}/v1", "SLUICE_REQUEST_TIMEOUT": "2",
                       "SLUICE_MAX_ATTEMPTS": "1"})
    write_requests(tmp_path / "in.jsonl", 300, embed_every=0)
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl", "--wait", timeout=120).stdout.splitlines()[0]
    sluice.run("results", batch_id, "-o", "out.jsonl")
    lines = read_output(tmp_path / "out.jsonl")
    timed_out = [line for line in lines if line["error"]]
    assert len(lines) == 300
    assert timed_out and all(line["error"]["code"] == "provider_timeout" for line in timed_out)
    assert len(timed_out) == fake.stats()["hung"]


def test_long_waits_go_back_to_the_queue_via_the_scheduler(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    fake = fake_provider("--random-429", "0.3", "--seed", "11")
    sluice.env.update({"VLLM_BASE_URL": f"{fake.url}/v1", "SLUICE_MAX_INLINE_WAIT": "0.5",
                       "SLUICE_MAX_ATTEMPTS": "10"})
    ids = write_requests(tmp_path / "in.jsonl", 100, embed_every=0)
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl", "--wait", timeout=180).stdout.splitlines()[0]
    sluice.run("results", batch_id, "-o", "out.jsonl")
    lines = read_output(tmp_path / "out.jsonl")
    assert sorted(line["custom_id"] for line in lines) == sorted(ids)
    assert all(line["error"] is None for line in lines)
    assert fake.stats()["rate_limited"] > 0
    assert "requests_handed_off" in sluice.logs()


def test_deadline_stops_retries(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    fake = fake_provider("--fail-rate", "1.0", "--fail-status", "503")
    sluice.env.update({"VLLM_BASE_URL": f"{fake.url}/v1", "SLUICE_MAX_ATTEMPTS": "1000"})
    write_requests(tmp_path / "in.jsonl", 20, embed_every=0)
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl", "--deadline", "3", "--wait", timeout=120).stdout.splitlines()[0]
    state = json.loads(sluice.run("status", batch_id, "--json").stdout)
    assert state["request_counts"] == {"total": 20, "completed": 0, "failed": 20}
    assert state["completed_at"] - state["created_at"] < 60
    assert fake.stats()["total"] < 20 * 1000


def test_kept_hand_backs_survive_their_worker_being_killed(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path, redis_url: str
) -> None:
    """Every request is answered `429 retry-after: 1`, so the worker keeps re-deferring them
    (kept locally, listed in Redis). Kill it: a second worker finds them listed and finishes."""
    fake = fake_provider("--random-429", "1.0", "--seed", "5")
    sluice.env.update({"VLLM_BASE_URL": f"{fake.url}/v1"})
    ids = write_requests(tmp_path / "in.jsonl", 60, embed_every=0)
    first = sluice.start_worker("--providers", "vllm", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl").stdout.splitlines()[0]
    deadline = time.monotonic() + 60
    while fake.stats()["rate_limited"] < 2 * len(ids) and time.monotonic() < deadline:
        time.sleep(0.2)  # each request has been handed back and kept at least twice
    assert fake.stats()["rate_limited"] >= 2 * len(ids)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(keys.deferred("vllm")) > 0  # the kept requests are listed, not lost
    fake.configure(random_429=0.0)
    sluice.start_worker("--providers", "vllm", "--processes", "1")
    sluice.run("watch", batch_id, timeout=120)
    sluice.run("results", batch_id, "-o", "out.jsonl")
    lines = read_output(tmp_path / "out.jsonl")
    assert sorted(line["custom_id"] for line in lines) == sorted(ids)
    assert all(line["error"] is None for line in lines)
    deadline = time.monotonic() + 10
    while client.zcard(keys.deferred("vllm")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.zcard(keys.deferred("vllm")) == 0
    client.close()


def test_a_group_sigterm_is_a_warm_shutdown(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    """`kill -TERM -PGID` (or Ctrl-C) signals the pool and its worker together, and the pool
    forwards its own SIGTERM: that is one stop request, so the running chunk still finishes."""
    fake = fake_provider("--latency", "3")
    sluice.env.update({"VLLM_BASE_URL": f"{fake.url}/v1"})
    ids = write_requests(tmp_path / "in.jsonl", 20, embed_every=0)
    worker = sluice.start_worker("--providers", "vllm", "--processes", "1")
    batch_id = sluice.run("submit", "in.jsonl").stdout.splitlines()[0]
    deadline = time.monotonic() + 30
    while fake.stats()["in_flight"] < len(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake.stats()["in_flight"] == len(ids)
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(30) == 0
    state = json.loads(sluice.run("status", batch_id, "--json").stdout)
    assert state["request_counts"] == {"total": 20, "completed": 20, "failed": 0}
    assert "job_failed" not in sluice.logs()


def test_a_burst_worker_stays_until_hand_backs_have_run(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path
) -> None:
    """`--burst` exits when nothing is left, and requests waiting out a `retry-after` are not
    nothing: the queue is empty while they wait, yet the worker must stay to run them."""
    fake = fake_provider("--random-429", "0.5", "--seed", "9")
    sluice.env.update({"VLLM_BASE_URL": f"{fake.url}/v1", "SLUICE_MAX_ATTEMPTS": "10"})
    ids = write_requests(tmp_path / "in.jsonl", 40, embed_every=0)
    batch_id = sluice.run("submit", "in.jsonl").stdout.splitlines()[0]
    worker = sluice.start_worker("--providers", "vllm", "--processes", "1", "--burst")
    assert worker.wait(120) == 0
    state = json.loads(sluice.run("status", batch_id, "--json").stdout)
    assert state["request_counts"] == {"total": len(ids), "completed": len(ids), "failed": 0}
    assert fake.stats()["rate_limited"] > 0
