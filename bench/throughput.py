"""End-to-end throughput: sluice vs a plain asyncio client, same fake provider, same run.

    python -m bench.throughput --requests 20000 --processes 2 --concurrency 128

Starts the loopback fake provider and a private redis-server, measures the plain client first
(bench/baseline.py), then `sluice worker` processes draining a submitted batch; also measures Redis
memory per queued request (a batch enqueued with no workers running). Prints a Markdown table and
appends it to docs/benchmarks.md with `--write`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from shared.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


def start_fake(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port_file = tmp / "fake.port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_provider", "--port", "0", "--port-file", str(port_file), *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(400):
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text())
        time.sleep(0.05)
    raise RuntimeError("fake provider did not start")


def write_requests(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            body = {"model": "vllm/bench", "messages": [{"role": "user", "content": f"question {i}"}],
                    "max_tokens": 16}
            fh.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": body}) + "\n")


def sluice_env(redis_url: str, fake_port: int, concurrency: int, chunk: int) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "VLLM_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "SLUICE_CONCURRENCY": str(concurrency), "SLUICE_CHUNK_SIZE": str(chunk),
            "SLUICE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}


def run_sluice(tmp: Path, env: dict[str, str], processes: int, n: int) -> float:
    """Seconds from submit to the last result, with workers already up and idle."""
    from producer.client import Client

    workers = subprocess.Popen([sys.executable, "-m", "producer.cli", "worker", "--providers", "vllm",
                                "--processes", str(processes)], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # let the processes start and block on their queues
        client = Client(env["REDIS_URL"])
        path = tmp / "requests.jsonl"
        started = time.perf_counter()
        batch_id, _ = client.submit_file(path, check_keys="none")
        state = client.wait(batch_id, poll=0.05)
        elapsed = time.perf_counter() - started
        assert state.counts.completed == n, state
        return elapsed
    finally:
        workers.terminate()
        workers.wait(30)


def queued_memory(redis_url: str, tmp: Path, n: int) -> float:
    """Bytes of Redis memory per queued (not yet run) request."""
    from producer.client import Client

    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    before = int(conn.info("memory")["used_memory"])
    Client(redis_url).submit_file(tmp / "requests.jsonl", check_keys="none")
    after = int(conn.info("memory")["used_memory"])
    conn.flushdb()
    return (after - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--baseline-concurrency", type=int, default=128)
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    from bench.baseline import run_baseline

    with tempfile.TemporaryDirectory() as tmpdir, EmbeddedRedis() as server:
        tmp = Path(tmpdir)
        write_requests(tmp / "requests.jsonl", args.requests)
        fake, port = start_fake(tmp)
        try:
            base_rate = asyncio.run(run_baseline(f"http://127.0.0.1:{port}/v1", args.requests,
                                                 args.baseline_concurrency))
            env = sluice_env(server.url, port, args.concurrency, args.chunk_size)
            elapsed = run_sluice(tmp, env, args.processes, args.requests)
            per_request = queued_memory(server.url, tmp, args.requests)
        finally:
            fake.terminate()
            fake.wait(10)
    rate = args.requests / elapsed
    command = " ".join(["python -m bench.throughput", *sys.argv[1:]])
    table = (
        f"\n### End-to-end throughput, zero-latency fake provider ({time.strftime('%Y-%m-%d')})\n\n"
        f"Command: `{command}` ({os.cpu_count()} cores)\n\n"
        "| measure | value |\n|---|---|\n"
        f"| plain asyncio client (aiohttp, {args.baseline_concurrency} in flight) | {base_rate:,.0f} req/s |\n"
        f"| sluice end to end ({args.processes} worker processes x {args.concurrency} in flight, "
        f"chunks of {args.chunk_size}) | {rate:,.0f} req/s |\n"
        f"| ratio sluice / plain client | {rate / base_rate:.2f} |\n"
        f"| Redis memory per queued request | {per_request:,.0f} bytes |\n"
    )
    print(table)
    if args.write:
        with open(ROOT / "docs" / "benchmarks.md", "a", encoding="utf-8") as fh:
            fh.write(table)


if __name__ == "__main__":
    main()
