"""Rate limits and throughput end to end (issue #4's table): sluice workers vs the fake provider.

    python -m bench.ratelimit --scenario all --write
    python -m bench.ratelimit --scenario configured

Every scenario starts its own private redis-server and loopback fake provider, runs `sluice worker`
pools (`python -m producer.cli worker --providers vllm ...`) against it and reads the fake's
`GET /_stats`. Scenarios:

  configured   the limit is configured (SLUICE_VLLM_RPM=1200) and the fake enforces 1200/min per key
  headers      no limit configured; the fake enforces 1200/min and sends OpenAI rate-limit headers
  bare429      no limit configured; the fake enforces 1200/min with bare 429s (no headers, no retry-after)
  latency      1 s provider latency, no limit, 4,000 requests, vs a plain asyncio client (same in-flight)
  zero         zero latency, no limit, 20,000 requests, vs the plain asyncio client (bench/baseline.py);
               a small sweep of processes x chunk size, the best one is the figure
  random429    1% random 429s with `retry-after: 1` vs the same run without them (zero latency, 40,000)
  two-pools    two `sluice worker` commands in separate process groups sharing one key and the limit

Rate scenarios (configured, headers, bare429, two-pools) submit more requests than can finish,
wait `--warmup` seconds after the fake's first 200 (so the fake's initially full bucket and the
learning phase are not counted as "sustained"), then count the fake's 200s and 429s over
`--window` seconds. The figure is 200s per minute over that window, against the limit.
Prints a Markdown table; `--write` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    ROOT,
    FakeHandle,
    append_markdown,
    fake_provider,
    make_client,
    sluice_env,
    start_workers,
    stop_workers,
    wait_workers,
    write_requests,
)
from shared.embedded import EmbeddedRedis

LIMIT = 1200
"""Requests per minute: what the fake enforces per key (and, when configured, what sluice is told)."""
KEY = "sk-bench-ratelimit-key"
SAMPLE_EVERY = 1.0
RATE_SLACK = 0.005
"""'At most the limit' allows 0.5% for the edges of a sampled window (6 requests a minute)."""


@dataclass
class Row:
    scenario: str
    setup: str
    target: str
    measured: str
    reference: str
    passed: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class Options:
    warmup: float
    window: float
    verbose: bool


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


# -- measuring a window on the fake --------------------------------------------------------------
@dataclass
class Sample:
    t: float
    ok: int
    limited: int
    total: int

    @classmethod
    def of(cls, fake: FakeHandle) -> Sample:
        s = fake.stats()
        return cls(time.monotonic(), int(s["by_status"].get("200", 0)), int(s["rate_limited"]),
                   int(s["total"]))


@dataclass
class Window:
    start: Sample
    end: Sample
    first_ok_after: float
    timeline: list[Sample]
    completed: int = 0
    failed: int = 0
    answered_twice: int = 0
    """Requests the fake answered 200 more than once (a re-sent request): must stay 0."""

    @property
    def seconds(self) -> float:
        return self.end.t - self.start.t

    @property
    def ok_per_min(self) -> float:
        return (self.end.ok - self.start.ok) * 60.0 / self.seconds

    @property
    def sent_per_min(self) -> float:
        return (self.end.total - self.start.total) * 60.0 / self.seconds

    @property
    def limited_share(self) -> float:
        sent = self.end.total - self.start.total
        return (self.end.limited - self.start.limited) / sent if sent else 0.0


def measure_window(fake: FakeHandle, opts: Options, started: float) -> Window:
    """Sample the fake each second; the window opens `warmup` s after its first 200."""
    timeline = [Sample.of(fake)]
    deadline = time.monotonic() + 60.0
    while timeline[-1].ok == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no request succeeded within 60 s")
        time.sleep(0.1)
        timeline.append(Sample.of(fake))
    first_ok = timeline[-1].t
    opens, closes = first_ok + opts.warmup, first_ok + opts.warmup + opts.window
    start = end = None
    while end is None:
        time.sleep(max(0.0, min(SAMPLE_EVERY, (opens if start is None else closes) - time.monotonic())))
        sample = Sample.of(fake)
        timeline.append(sample)
        if start is None and sample.t >= opens:
            start = sample
        elif start is not None and sample.t >= closes:
            end = sample
    assert start is not None
    return Window(start, end, first_ok - started, timeline)


def timeline_text(window: Window, step: float = 5.0) -> str:
    """200s and 429s per minute, per `step` seconds since the first sample."""
    points, out, last = window.timeline, [], window.timeline[0]
    for s in points[1:]:
        if s.t - last.t >= step or s is points[-1]:
            dt = s.t - last.t
            out.append(f"{s.t - points[0].t:5.1f}s ok {(s.ok - last.ok) * 60 / dt:7.0f}/min "
                       f"429 {(s.limited - last.limited) * 60 / dt:7.0f}/min")
            last = s
    return "\n".join(out)


def rate_run(name: str, tmp: Path, opts: Options, fake_flags: list[str], *, configured: bool,
             pools: int = 1, processes: int = 4, requests: int = 6000) -> Window:
    """Submit `requests`, serve them with `pools` worker commands, measure the steady window."""
    write_requests(tmp / "requests.jsonl", requests)
    with EmbeddedRedis() as server, fake_provider(tmp, *fake_flags) as fake:
        extra: dict[str, str | int] = {"VLLM_API_KEY": KEY}
        if configured:
            extra["SLUICE_VLLM_RPM"] = LIMIT
        env = sluice_env(server.url, fake.port, 256, 128, **extra)
        workers = [start_workers(env, processes) for _ in range(pools)]
        try:
            wait_workers(server.url, pools * processes * 4)
            client = make_client(env)
            started = time.monotonic()
            batch_id, _ = client.submit_file(tmp / "requests.jsonl", check_keys="none")
            window = measure_window(fake, opts, started)
            counts = client.status(batch_id).counts
            window.completed, window.failed = counts.completed, counts.failed
            client.cancel(batch_id)
            client.close()
        finally:
            for proc in workers:
                stop_workers(proc)
        final = fake.stats()
    window.answered_twice = int(final.get("dupes_ok", 0))
    log(f"[{name}] window {window.seconds:.1f}s from +{opts.warmup:g}s after the first 200 "
        f"(first 200 {window.first_ok_after:.1f}s after submit): {window.ok_per_min:.0f} ok/min, "
        f"{window.sent_per_min:.0f} sent/min, 429 share {window.limited_share:.2%}; "
        f"batch at window end: {window.completed} completed, {window.failed} failed; "
        f"fake totals {final['by_status']} dupes_ok={final.get('dupes_ok')}")
    if opts.verbose:
        log(timeline_text(window))
    return window


def window_row(name: str, setup: str, window: Window, opts: Options, *, min_share: float,
               max_429: float, at_most_limit: bool = False) -> Row:
    share = window.ok_per_min / LIMIT
    passed = share >= min_share and window.limited_share <= max_429 and not window.answered_twice
    target = f"≥ {min_share:.0%} of {LIMIT:,}/min, 429s ≤ {max_429:.0%}"
    if at_most_limit:
        passed = passed and window.sent_per_min <= LIMIT * (1 + RATE_SLACK)
        target = f"combined ≤ {LIMIT:,}/min and ≥ {min_share:.0%} of it"
    measured = (f"{fmt_rate(window.ok_per_min)} ok/min = **{share:.1%}**; sent "
                f"{fmt_rate(window.sent_per_min)}/min; 429s {window.limited_share:.2%}"
                + (f"; {window.failed:,} requests failed" if window.failed else "")
                + f"; {window.answered_twice} answered twice")
    reference = f"limit {LIMIT:,}/min (fake, per key); window {window.seconds:.0f} s from +{opts.warmup:g} s"
    return Row(name, setup, target, measured, reference, passed)


# -- scenarios -------------------------------------------------------------------------------------
def scenario_configured(tmp: Path, opts: Options) -> Row:
    w = rate_run("configured", tmp, opts, ["--rpm", str(LIMIT)], configured=True)
    return window_row("limit configured", "fake `--rpm 1200`; SLUICE_VLLM_RPM=1200, 4 processes",
                      w, opts, min_share=0.97, max_429=0.01)


def scenario_headers(tmp: Path, opts: Options) -> Row:
    w = rate_run("headers", tmp, opts, ["--rpm", str(LIMIT), "--headers", "openai"], configured=False)
    return window_row("limit not configured, provider sends headers",
                      "fake `--rpm 1200 --headers openai`; no SLUICE_VLLM_RPM, 4 processes",
                      w, opts, min_share=0.90, max_429=0.05)


def scenario_bare429(tmp: Path, opts: Options) -> Row:
    w = rate_run("bare429", tmp, opts, ["--rpm", str(LIMIT), "--headers", "none"], configured=False)
    return window_row("bare 429s, no headers, no retry-after",
                      "fake `--rpm 1200 --headers none`; no SLUICE_VLLM_RPM, 4 processes",
                      w, opts, min_share=0.80, max_429=0.10)


def scenario_two_pools(tmp: Path, opts: Options) -> Row:
    w = rate_run("two-pools", tmp, opts, ["--rpm", str(LIMIT)], configured=True, pools=2, processes=2)
    return window_row("two worker pools, separate process groups, one key",
                      "fake `--rpm 1200`; 2 x `worker --processes 2` (start_new_session), "
                      "SLUICE_VLLM_RPM=1200 in both", w, opts, min_share=0.95, max_429=1.0,
                      at_most_limit=True)


def sluice_batch(tmp: Path, redis_url: str, port: int, n: int, *, processes: int, concurrency: int,
                 chunk: int, slots: int, timeout: float, **extra: str | int) -> tuple[float, int, int]:
    """(seconds from submit to the batch's end, completed, failed) with workers up and idle."""
    env = sluice_env(redis_url, port, concurrency, chunk, SLUICE_SLOTS=slots, **extra)
    workers = start_workers(env, processes)
    try:
        wait_workers(redis_url, processes * slots)
        client = make_client(env)
        started = time.perf_counter()
        batch_id, _ = client.submit_file(tmp / "requests.jsonl", check_keys="none")
        try:
            state = client.wait(batch_id, poll=0.05, timeout=timeout)
        except TimeoutError:
            state = client.status(batch_id)
            log(f"  batch not finished within {timeout:g}s: {state.counts}")
        elapsed = time.perf_counter() - started
        client.close()
        return elapsed, state.counts.completed, state.counts.failed
    finally:
        stop_workers(workers)


def scenario_latency(tmp: Path, opts: Options, n: int = 4000, processes: int = 4,
                     concurrency: int = 512, chunk: int = 256, slots: int = 2) -> Row:
    from bench.baseline import run_baseline

    write_requests(tmp / "requests.jsonl", n)
    in_flight = processes * min(concurrency, chunk * slots)
    with EmbeddedRedis() as server, fake_provider(tmp, "--latency", "1") as fake:
        base = asyncio.run(run_baseline(fake.base_url, n, in_flight))
        elapsed, done, failed = sluice_batch(tmp, server.url, fake.port, n, processes=processes,
                                             concurrency=concurrency, chunk=chunk, slots=slots,
                                             timeout=120)
    rate = done / elapsed
    log(f"[latency] sluice {rate:.0f} req/s ({done} done, {failed} failed, {elapsed:.2f}s); "
        f"baseline {base:.0f} req/s with {in_flight} in flight")
    setup = (f"fake `--latency 1`; no limit; {processes} processes, SLUICE_CONCURRENCY={concurrency}, "
             f"SLUICE_CHUNK_SIZE={chunk}, SLUICE_SLOTS={slots}")
    return Row("1 s latency, no limit, 4,000 requests", setup, "≥ 800 requests/s",
               f"**{fmt_rate(rate)} req/s** submit→done ({elapsed:.1f} s)",
               f"plain asyncio client, {in_flight} in flight: {fmt_rate(base)} req/s",
               rate >= 800 and done == n)


ZERO_SWEEP = ((2, 128), (2, 256), (3, 128), (3, 256))
"""(processes, chunk size) tried for the zero-latency scenario; concurrency 256, 4 slots."""


def scenario_zero(tmp: Path, opts: Options, n: int = 20000, base_concurrency: int = 128) -> Row:
    """Each sluice setting runs between two baseline runs and is compared with their mean, so a
    change in the machine's load during the sweep hits both sides of each ratio alike."""
    from bench.baseline import run_baseline

    write_requests(tmp / "requests.jsonl", n)
    rates: list[float] = []
    with EmbeddedRedis() as server, fake_provider(tmp) as fake:
        bases = [asyncio.run(run_baseline(fake.base_url, n, base_concurrency))]
        for processes, chunk in ZERO_SWEEP:
            elapsed, done, failed = sluice_batch(tmp, server.url, fake.port, n, processes=processes,
                                                 concurrency=256, chunk=chunk, slots=4, timeout=120)
            rates.append(done / elapsed if done == n else 0.0)
            bases.append(asyncio.run(run_baseline(fake.base_url, n, base_concurrency)))
            log(f"[zero] processes {processes} chunk {chunk}: {rates[-1]:.0f} req/s ({done} done, "
                f"{failed} failed); baselines around it {bases[-2]:.0f}, {bases[-1]:.0f}")
    ratios = [rate / ((bases[i] + bases[i + 1]) / 2) for i, rate in enumerate(rates)]
    best = max(range(len(rates)), key=ratios.__getitem__)
    processes, chunk = ZERO_SWEEP[best]
    around = (bases[best] + bases[best + 1]) / 2
    others = ", ".join(f"{p}p/chunk {c}: {fmt_rate(r)} ({q:.0%})"
                       for (p, c), r, q in zip(ZERO_SWEEP, rates, ratios, strict=True))
    setup = (f"fake (no flags); no limit; best of processes x chunk: **{processes} processes, chunk "
             f"{chunk}**, SLUICE_CONCURRENCY=256, SLUICE_SLOTS=4 (all: {others})")
    return Row("zero latency, no limit, 20,000 requests", setup, "≥ 50% of the plain asyncio client",
               f"{fmt_rate(rates[best])} req/s = **{ratios[best]:.1%}** of the client",
               f"plain asyncio client ({base_concurrency} in flight), mean of the runs just before and "
               f"after: {fmt_rate(around)} req/s (all {len(bases)} runs: "
               f"{', '.join(fmt_rate(b) for b in bases)})",
               ratios[best] >= 0.5)


def scenario_random429(tmp: Path, opts: Options, n: int = 40000, processes: int = 2,
                       rounds: int = 2) -> Row:
    """Without, with, without, with, ..., without: each condition's best run (fastest, as timeit
    does) is compared, so load drift and one-off stalls hit both sides alike. Each rate is the
    fake's 200s over submit→done, so the last retried requests' `retry-after` wait is part of it;
    `n` keeps that tail a small share."""
    write_requests(tmp / "requests.jsonl", n)
    with_429 = ["--random-429", "0.01", "--seed", "4"]
    runs: dict[bool, list[tuple[float, str]]] = {False: [], True: []}
    for limited in [False, *[x for _ in range(rounds) for x in (True, False)]]:
        flags = with_429 if limited else []
        with EmbeddedRedis() as server, fake_provider(tmp, *flags) as fake:
            elapsed, done, failed = sluice_batch(tmp, server.url, fake.port, n, processes=processes,
                                                 concurrency=256, chunk=128, slots=4, timeout=90)
            stats = fake.stats()
        ok = int(stats["by_status"].get("200", 0))
        detail = f"{done:,} done / {failed} failed, {stats['rate_limited']} 429s, {elapsed:.1f} s"
        runs[limited].append((ok / elapsed, detail))
        log(f"[random429] flags {flags}: {ok / elapsed:.0f} ok/s; {detail}")
    best = {limited: max(rs) for limited, rs in runs.items()}
    ratio = best[True][0] / best[False][0]

    def all_of(limited: bool) -> str:
        return ", ".join(fmt_rate(rate) for rate, _ in runs[limited])

    setup = (f"fake `--random-429 0.01` (retry-after: 1) vs no flags, alternating, {rounds} runs with "
             f"and {rounds + 1} without; zero latency, no limit, {n:,} requests, {processes} "
             "processes, SLUICE_CONCURRENCY=256, chunk 128")
    return Row("1% random 429s with retry-after: 1", setup, "≥ 80% of the same run without them",
               f"best {fmt_rate(best[True][0])} req/s = **{ratio:.1%}** ({best[True][1]}; all: "
               f"{all_of(True)})",
               f"same runs without random 429s, best: {fmt_rate(best[False][0])} req/s "
               f"({best[False][1]}; all: {all_of(False)})",
               ratio >= 0.8)


SCENARIOS: dict[str, Callable[[Path, Options], Row]] = {
    "configured": scenario_configured,
    "headers": scenario_headers,
    "bare429": scenario_bare429,
    "latency": scenario_latency,
    "zero": scenario_zero,
    "random429": scenario_random429,
    "two-pools": scenario_two_pools,
}


def revision() -> str:
    """The checked-out commit (read-only), `+local changes` when the tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "shared", "workers", "producer"],
                               cwd=ROOT, timeout=10).returncode
    except (OSError, subprocess.TimeoutExpired):
        return "unknown commit"
    return f"`{head}`" + (" + uncommitted changes in shared/, workers/ or producer/" if dirty else "")


def table(rows: list[Row], command: str, elapsed: float, load: float) -> str:
    lines = [
        f"\n### Rate limits and throughput, issue #4 ({time.strftime('%Y-%m-%d')})\n",
        f"Command: `{command}` ({os.cpu_count()} cores, load average at start "
        f"{load:.1f}; {elapsed / 60:.1f} min; code at {revision()}). Rate figures are the fake provider's "
        "200s per minute over a steady window (see `bench/ratelimit.py`); throughput figures sit "
        "beside a baseline measured in the same run.\n",
        "| scenario | setup | target | measured | reference (same run) | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.setup} | {r.target} | {r.measured} | {r.reference} | "
                     f"{'PASS' if r.passed else '**FAIL**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="all", choices=[*SCENARIOS, "all"])
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds after the first 200 before the rate window opens")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the rate window lasts")
    parser.add_argument("--verbose", action="store_true", help="print each rate run's timeline")
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args(argv)
    opts = Options(args.warmup, args.window, args.verbose)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    began = time.monotonic()
    load = os.getloadavg()[0]
    rows: list[Row] = []
    for name in names:
        log(f"== {name}")
        with tempfile.TemporaryDirectory() as tmpdir:
            rows.append(SCENARIOS[name](Path(tmpdir), opts))
    command = " ".join(["python -m bench.ratelimit", *(argv if argv is not None else sys.argv[1:])])
    out = table(rows, command, time.monotonic() - began, load)
    print(out)
    if args.write:
        append_markdown(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
