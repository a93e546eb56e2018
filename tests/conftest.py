"""Shared fixtures. Integration tests use a real redis-server: `REDIS_URL` when given (a test
database is flushed per test, so point it at a disposable Redis), else a private one on a unix socket.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.embedded import EmbeddedRedis

SAMPLES = Path(__file__).parent / "samples"


def load_sample(name: str) -> dict[str, Any]:
    """A recorded provider exchange from tests/samples (copied from the team's protocol reference)."""
    with open(SAMPLES / name, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A clean database for one test."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    yield redis_server_url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
