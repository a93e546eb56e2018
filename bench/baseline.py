"""The baseline: a plain asyncio + aiohttp client (no sluice code) sending chat requests.

    python -m bench.baseline --url http://127.0.0.1:PORT/v1 -n 20000 -c 256

Sends `n` OpenAI chat requests (each body distinct) with `concurrency` in flight over one
keep-alive connection pool and prints requests/s. This is the ceiling a single client process
reaches against the same server; sluice's own figures are compared with it in docs/.
Loopback URLs only; the run is bounded by `n` and by `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import aiohttp

LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_TIMEOUT: Final = 600.0
"""Seconds a whole run may take before it stops early."""
_BODY: Final = (b'{"model":"gpt-4o-mini","max_tokens":16,'
                b'"messages":[{"role":"user","content":"baseline request %d"}]}')


def chat_url(url: str) -> str:
    """`http://127.0.0.1:PORT/v1` (or the full chat URL) -> the chat completions URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise ValueError(f"baseline only talks to loopback http URLs, not {url!r}")
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class Tally:
    """Requests handed out and answers seen, shared by the client tasks."""

    def __init__(self, n: int, deadline: float) -> None:
        self.n, self.deadline = n, deadline
        self.sent = 0
        self.statuses: Counter[int] = Counter()

    def next(self) -> int | None:
        if self.sent >= self.n or time.monotonic() > self.deadline:
            return None
        self.sent += 1
        return self.sent


async def client_task(session: aiohttp.ClientSession, url: str, tally: Tally) -> None:
    while (i := tally.next()) is not None:
        try:
            async with session.post(url, data=_BODY % i) as response:
                await response.read()
                tally.statuses[response.status] += 1
        except aiohttp.ClientError:
            tally.statuses[0] += 1


async def measure(url: str, n: int, concurrency: int,
                  timeout: float = DEFAULT_TIMEOUT) -> tuple[float, Counter[int]]:
    """(requests per second, answers by HTTP status; 0 = connection error)."""
    target = chat_url(url)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": "Bearer sk-baseline", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.monotonic()
        tally = Tally(n, started + timeout)
        tasks = [client_task(session, target, tally) for _ in range(min(concurrency, n))]
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return sum(tally.statuses.values()) / elapsed, tally.statuses


async def run_baseline(url: str, n: int, concurrency: int) -> float:
    """Requests per second for `n` chat requests with `concurrency` in flight."""
    rate, _ = await measure(url, n, concurrency)
    return rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="Base URL, e.g. http://127.0.0.1:PORT/v1")
    parser.add_argument("-n", "--requests", type=int, default=20000)
    parser.add_argument("-c", "--concurrency", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="Stop after this many seconds even if requests remain.")
    args = parser.parse_args(argv)
    try:
        rate, statuses = asyncio.run(measure(args.url, args.requests, args.concurrency,
                                             args.timeout))
    except ValueError as exc:
        parser.error(str(exc))
    done = sum(statuses.values())
    by_status = ", ".join(f"{s or 'error'}: {c}" for s, c in sorted(statuses.items()))
    print(f"{done} requests, {args.concurrency} in flight: {rate:,.0f} req/s ({by_status})")
    return 0 if statuses.get(200, 0) == done else 1


if __name__ == "__main__":
    sys.exit(main())
