"""End-to-end fixtures: the loopback fake provider and real `sluice` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeProvider:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self, **changes: Any) -> None:
        request = urllib.request.Request(f"{self.url}/_config", data=json.dumps(changes).encode(),
                                         method="POST", headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=5) as response:
            data: dict[str, Any] = json.load(response)
        return data


def start_fake(tmp_path: Path, *args: str) -> FakeProvider:
    port_file = tmp_path / f"fake-{time.monotonic_ns()}.port"
    cmd = [sys.executable, "-m", "bench.fake_provider", "--port", "0", "--port-file", str(port_file), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return FakeProvider(proc, int(port_file.read_text().strip()))
        if proc.poll() is not None:
            raise RuntimeError("fake provider exited at start")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fake provider did not start")


@pytest.fixture
def fake_provider(tmp_path: Path) -> Iterator[Callable[..., FakeProvider]]:
    started: list[FakeProvider] = []

    def start(*args: str) -> FakeProvider:
        fake = start_fake(tmp_path, *args)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.proc.terminate()
        fake.proc.wait(10)


@dataclass
class Sluice:
    """Runs the real `sluice` command with a controlled environment; keeps every output."""

    env: dict[str, str]
    cwd: Path
    log_dir: Path
    outputs: list[str] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "producer.cli", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        self.outputs += [done.stdout, done.stderr]
        if check and done.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{len(self.workers)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "producer.cli", "worker", *args], cwd=self.cwd,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def base_env(redis_url: str | None) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONPATH"] = str(ROOT)
    env["SLUICE_LOG_LEVEL"] = "INFO"
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@pytest.fixture
def sluice(redis_url: str, tmp_path: Path) -> Iterator[Sluice]:
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = Sluice(base_env(redis_url), tmp_path, logs)
    yield runner
    runner.stop_workers()


def write_requests(path: Path, n: int, *, model_prefix: str = "vllm", embed_every: int = 3) -> list[str]:
    ids = []
    with open(path, "w") as fh:
        for i in range(n):
            cid = f"req-{i:05d}"
            ids.append(cid)
            if embed_every and i % embed_every == 0:
                line = {"custom_id": cid, "method": "POST", "url": "/v1/embeddings",
                        "body": {"model": f"{model_prefix}/text-embed", "input": [f"doc {i}", f"doc {i} b"]}}
            else:
                line = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                        "body": {"model": f"{model_prefix}/llama",
                                 "messages": [{"role": "user", "content": f"question {i}"}]}}
            fh.write(json.dumps(line) + "\n")
    return ids


def read_output(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
