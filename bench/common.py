"""Helpers shared by the end-to-end benchmarks (`bench.throughput`, `bench.ratelimit`).

Everything runs on loopback against a private `redis-server` (`shared.embedded.EmbeddedRedis`)
and the fake provider (`bench.fake_provider`) in child processes; every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"


def start_fake(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m bench.fake_provider --port 0 ... *args`; returns (process, port)."""
    port_file = tmp / "fake.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_provider", "--port", "0", "--port-file", str(port_file),
         "--exit-with-parent", *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(400):
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text())
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("fake provider did not start")


@contextlib.contextmanager
def fake_provider(tmp: Path, *args: str) -> Iterator[FakeHandle]:
    proc, port = start_fake(tmp, *args)
    try:
        yield FakeHandle(port, tuple(args))
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class FakeHandle:
    port: int
    flags: tuple[str, ...]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/_stats", timeout=10) as response:
            result: dict[str, Any] = json.load(response)
            return result


def write_requests(path: Path, n: int, *, prefix: str = "") -> None:
    """`n` distinct OpenAI batch lines for `vllm/bench` (16 max tokens each)."""
    with open(path, "w") as fh:
        for i in range(n):
            body = {"model": "vllm/bench", "messages": [{"role": "user", "content": f"question {prefix}{i}"}],
                    "max_tokens": 16}
            fh.write(json.dumps({"custom_id": f"r{prefix}{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": body}) + "\n")


def sluice_env(redis_url: str, fake_port: int, concurrency: int, chunk: int,
               **extra: str | int) -> dict[str, str]:
    """Environment for `sluice worker` (and for the submitting `Client`: chunk size is a
    submit-side setting, so pass this env to `make_client`)."""
    env = {**os.environ, "REDIS_URL": redis_url, "VLLM_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
           "SLUICE_CONCURRENCY": str(concurrency), "SLUICE_CHUNK_SIZE": str(chunk),
           "SLUICE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    for name in ("SLUICE_VLLM_RPM", "SLUICE_VLLM_TPM", "SLUICE_VLLM_MAX_IN_FLIGHT", "VLLM_API_KEY"):
        env.pop(name, None)  # nothing from the caller's shell leaks into a scenario
    env.update({k: str(v) for k, v in extra.items()})
    return env


def make_client(env: Mapping[str, str]) -> Any:
    """A `producer.client.Client` whose settings (chunk size above all) come from `env`."""
    from producer.client import Client
    from shared.config import load_settings

    return Client(env["REDIS_URL"], settings=load_settings(env))


def start_workers(env: Mapping[str, str], processes: int) -> subprocess.Popen[bytes]:
    """`python -m producer.cli worker --providers vllm --processes N` in its own process group
    (so `stop_workers` can end the pool and its children together)."""
    return subprocess.Popen([sys.executable, "-m", "producer.cli", "worker", "--providers", "vllm",
                             "--processes", str(processes)], env=dict(env), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_workers(redis_url: str, count: int, timeout: float = 30.0) -> float:
    """Block until `count` RQ workers are registered (or `timeout`); returns seconds waited."""
    import redis
    from rq import Worker

    conn = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            with contextlib.suppress(redis.RedisError):
                if len(Worker.all(connection=conn)) >= count:
                    break
            time.sleep(0.1)
        time.sleep(0.5)  # let the last ones reach their blocking dequeue
    finally:
        conn.close()
    return time.monotonic() - started


def stop_workers(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the pool's process group (warm shutdown), SIGKILL it after `grace` seconds.
    Only the group this module started (its leader's pid) is signalled."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # children still finishing a chunk
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def append_markdown(text: str) -> None:
    with open(BENCHMARKS_MD, "a", encoding="utf-8") as fh:
        fh.write(text)
