"""Which HTTP client sends provider requests: the numbers behind `workers/http.py`'s default.

    python -m bench.http_clients [--requests 6000] [--write]

Sends the same chat requests to the loopback fake provider through each candidate at 32, 128 and
512 in flight, one after another in the same run, and prints requests/s:
- httpx.AsyncClient with its default transport (httpcore);
- httpx.AsyncClient over the aiohttp transport (`httpx-aiohttp`);
- sluice's `AiohttpSender` (aiohttp directly, the default).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.throughput import ROOT, start_fake
from shared.adapters.base import HttpRequest
from workers.http import AiohttpSender, HttpxSender, Sender

BODY = b'{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'


def candidates(limit: int) -> dict[str, Callable[[], Sender]]:
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    return {
        "httpx (default transport)": lambda: HttpxSender(limit),
        "httpx + httpx-aiohttp transport": lambda: HttpxSender(limit, AiohttpTransport(limits=limits)),
        "aiohttp (sluice AiohttpSender)": lambda: AiohttpSender(limit),
    }


async def measure(make: Callable[[], Sender], url: str, n: int, in_flight: int) -> float:
    sender = make()
    request = HttpRequest("POST", url, {"content-type": "application/json"}, BODY)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            status, _, _ = await sender.send(request, 30.0)
            assert status == 200, status

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    await sender.aclose()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    levels = (32, 128, 512)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        fake, port = start_fake(Path(tmpdir), "--no-fingerprints")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            for level in levels:
                for name, make in candidates(level).items():
                    rows.setdefault(name, []).append(asyncio.run(measure(make, url, args.requests, level)))
        finally:
            fake.terminate()
            fake.wait(10)
    command = " ".join(["python -m bench.http_clients", *sys.argv[1:]])
    table = (f"\n### HTTP client for provider calls ({time.strftime('%Y-%m-%d')})\n\n"
             f"Command: `{command}` ({os.cpu_count()} cores; {args.requests} chat requests per cell "
             "to the loopback fake provider, zero latency)\n\n"
             "| client | " + " | ".join(f"{lv} in flight" for lv in levels) + " |\n"
             "|---|" + "---|" * len(levels) + "\n")
    for name, rates in rows.items():
        table += f"| {name} | " + " | ".join(f"{r:,.0f} req/s" for r in rates) + " |\n"
    print(table)
    if args.write:
        with open(ROOT / "docs" / "benchmarks.md", "a", encoding="utf-8") as fh:
            fh.write(table)


if __name__ == "__main__":
    main()
