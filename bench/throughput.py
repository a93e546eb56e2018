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
import os
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.common import (
    BENCHMARKS_MD,
    ROOT,
    make_client,
    sluice_env,
    start_fake,
    start_workers,
    stop_process,
    stop_workers,
    wait_workers,
    write_requests,
)
from shared.embedded import EmbeddedRedis

__all__ = ["ROOT", "run_sluice", "sluice_env", "start_fake", "write_requests"]


def run_sluice(tmp: Path, env: dict[str, str], processes: int, n: int) -> float:
    """Seconds from submit to the last result, with workers already up and idle."""
    workers = start_workers(env, processes)
    try:
        wait_workers(env["REDIS_URL"], processes * int(env.get("SLUICE_SLOTS", "4")))
        client = make_client(env)  # chunk size is applied when submitting: use the same env
        path = tmp / "requests.jsonl"
        started = time.perf_counter()
        batch_id, _ = client.submit_file(path, check_keys="none")
        state = client.wait(batch_id, poll=0.05, timeout=600)
        elapsed = time.perf_counter() - started
        assert state.counts.completed == n, state
        return elapsed
    finally:
        stop_workers(workers, grace=30)


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
            stop_process(fake)
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
        with open(BENCHMARKS_MD, "a", encoding="utf-8") as fh:
            fh.write(table)


if __name__ == "__main__":
    main()
