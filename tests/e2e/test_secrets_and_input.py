"""Canary keys must appear nowhere; bad input gets one clear error and enqueues nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import ROOT, FakeProvider, Sluice, base_env, read_output, write_requests

pytestmark = pytest.mark.e2e

CANARY = "sk-canary-" + "7f3a9c2e5b8d1f4a6c0e9b2d7a5f3c1e8b6d4a2f"
FRAGMENTS = (CANARY, CANARY[:12], CANARY[-10:], CANARY[10:30])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dump_redis(url: str) -> bytes:
    """Every key and value in the database, RQ's result streams and job hashes included."""
    client = redis.Redis.from_url(url)
    out = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out += [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind in (b"set",):
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            for _, fields in client.xrange(key):
                out += [k + b"=" + v for k, v in fields.items()]
        out.append(client.dump(key) or b"")
    return b"\n".join(out)


def queued(url: str) -> list[bytes]:
    """RQ queues and jobs in the database: what a refused submission must not have created."""
    client = redis.Redis.from_url(url)
    return [*client.scan_iter("rq:queue:*"), *client.scan_iter("rq:job:*"), *client.scan_iter("sluice:batch:*")]


def assert_no_canary(blob: bytes | str, where: str) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for fragment in FRAGMENTS:
        assert fragment.encode() not in data, f"canary fragment found in {where}"


def test_canary_key_never_written_anywhere(
    sluice: Sluice, fake_provider: Callable[..., FakeProvider], tmp_path: Path, redis_url: str
) -> None:
    fake = fake_provider("--require-key", "sk-the-right-key-0000000000000000")
    sluice.env["OPENAI_API_KEY"] = CANARY
    sluice.env["OPENAI_BASE_URL"] = f"{fake.url}/v1"
    sluice.env["VLLM_API_KEY"] = CANARY
    sluice.env["VLLM_BASE_URL"] = f"http://127.0.0.1:{closed_port()}/v1"
    sluice.env["SLUICE_MAX_ATTEMPTS"] = "2"
    ids = write_requests(tmp_path / "a.jsonl", 30, model_prefix="openai")
    write_requests(tmp_path / "b.jsonl", 10, model_prefix="vllm")
    sluice.start_worker("--providers", "openai,vllm", "--processes", "1")
    first = sluice.run("submit", "a.jsonl", "--wait").stdout.splitlines()[0]
    second = sluice.run("submit", "b.jsonl", "--wait").stdout.splitlines()[0]
    sluice.run("results", first, "-o", "a.out")
    sluice.run("results", second, "-o", "b.out")
    sluice.run("status", first, "--json")
    sluice.run("watch", second)
    a_lines = read_output(tmp_path / "a.out")
    assert {line["custom_id"] for line in a_lines} == set(ids)
    assert {line["error"]["code"] for line in a_lines} == {"invalid_api_key"}
    assert "Incorrect API key" in a_lines[0]["error"]["message"]
    b_lines = read_output(tmp_path / "b.out")
    assert {line["error"]["code"] for line in b_lines} == {"provider_connection"}
    sluice.stop_workers()
    assert "provider" in sluice.logs()  # the worker did log
    assert_no_canary(dump_redis(redis_url), "redis")
    assert_no_canary(sluice.logs(), "worker logs")
    assert_no_canary("".join(sluice.outputs), "CLI output")
    assert_no_canary((tmp_path / "a.out").read_bytes() + (tmp_path / "b.out").read_bytes(), "result files")


def test_malformed_line_names_it_and_enqueues_nothing(sluice: Sluice, tmp_path: Path, redis_url: str) -> None:
    write_requests(tmp_path / "in.jsonl", 5)
    with open(tmp_path / "in.jsonl", "a") as fh:
        fh.write('{"custom_id": "broken", "body": \n')
    done = sluice.run("submit", "in.jsonl", check=False)
    assert done.returncode == 1
    assert "in.jsonl:6:" in done.stderr
    assert queued(redis_url) == []


def test_unknown_provider_lists_close_matches(sluice: Sluice, tmp_path: Path, redis_url: str) -> None:
    write_requests(tmp_path / "in.jsonl", 3, model_prefix="vlm")
    done = sluice.run("submit", "in.jsonl", check=False)
    assert done.returncode == 1
    assert "unknown provider 'vlm'" in done.stderr and "vllm" in done.stderr
    assert "in.jsonl:1" in done.stderr
    assert queued(redis_url) == []


def test_missing_key_for_submit_without_live_worker(sluice: Sluice, tmp_path: Path, redis_url: str) -> None:
    write_requests(tmp_path / "in.jsonl", 3, model_prefix="openai")
    done = sluice.run("submit", "in.jsonl", check=False)
    assert done.returncode == 1
    assert "OPENAI_API_KEY" in done.stderr
    assert queued(redis_url) == []


def test_missing_key_for_run_fails_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_requests(tmp_path / "in.jsonl", 3, model_prefix="openai")
    done = subprocess.run([sys.executable, "-m", "producer.cli", "run", "in.jsonl", "-o", "out.jsonl"],
                          cwd=tmp_path, env=base_env(None), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "SLUICE_OPENAI_API_KEY or OPENAI_API_KEY" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_run_on_embedded_redis_and_embed(fake_provider: Callable[..., FakeProvider], tmp_path: Path) -> None:
    import subprocess
    import sys

    fake = fake_provider()
    env = {**base_env(None), "VLLM_BASE_URL": f"{fake.url}/v1", "SLUICE_LOG_LEVEL": "WARNING"}
    ids = write_requests(tmp_path / "in.jsonl", 300)
    cmd = [sys.executable, "-m", "producer.cli", "run", "in.jsonl", "-o", "out.jsonl", "--workers", "2"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert [line["custom_id"] for line in read_output(tmp_path / "out.jsonl")] == ids
    assert "completed, 300 succeeded, 0 failed" in done.stderr
    (tmp_path / "corpus.txt").write_text("".join(f"text number {i}\n" for i in range(150)))
    cmd = [sys.executable, "-m", "producer.cli", "embed", "corpus.txt", "--model", "vllm/embed",
           "-o", "vectors.jsonl", "--workers", "1", "--batch-size", "32"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    vectors = read_output(tmp_path / "vectors.jsonl")
    assert [v["line"] for v in vectors] == list(range(1, 151))
    assert all(isinstance(v["embedding"], list) and v["embedding"] for v in vectors)
    assert json.dumps(vectors[0])
    assert ROOT.exists()
