"""A credential's short-lived token, shared by every request of a worker process.

Vertex (a JWT grant), Copilot (a GitHub token exchange) and Qwen (an OAuth refresh) all hold one
token per credential: fetched on first use, reused while it is usable, fetched again near expiry,
one fetch at a time however many requests wait, and dropped after a 401. `CachedToken` is that
shape once; a subclass says how to fetch and when a token is still usable.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Final, Generic, TypeVar

from shared.errors import ProviderError

T = TypeVar("T")

STALE_AFTER_401: Final = 60.0
"""A 401 on a token minted at least this long ago may be fixed by a new one (retry once);
a 401 on a fresher token will not be (a revoked credential): fail."""


class CachedToken(ABC, Generic[T]):
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._value: T | None = None
        self._minted_at = -math.inf
        """When the cached value was minted here (a subclass may leave it at -inf for a token it
        only read, so a 401 on it counts as stale)."""
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @abstractmethod
    async def _fetch(self) -> T:
        """Mint or load a token (calls `_minted(now)` when it minted one)."""

    @abstractmethod
    def _usable(self, value: T) -> bool:
        """Still good for a request now (not near its expiry)."""

    async def value(self) -> T:
        """A usable token; one fetch at a time however many callers wait."""
        if (value := self._cached()) is not None:
            return value
        async with self._loop_lock():
            if (value := self._cached()) is None:
                value = self._value = await self._fetch()
        return value

    def invalidate(self) -> bool:
        """Drop the cached token after a 401; True if it was old enough that a new one may help."""
        stale = self._value is not None and self._clock() - self._minted_at >= STALE_AFTER_401
        self._value = None
        return stale

    def _minted(self, now: float) -> None:
        self._minted_at = now

    def _cached(self) -> T | None:
        value = self._value
        return value if value is not None and self._usable(value) else None

    def _loop_lock(self) -> asyncio.Lock:
        """A lock for the running loop (a test may run each call under a fresh `asyncio.run`)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock


def forget_on_401(error: ProviderError, status: int, sources: Iterable[CachedToken[Any]]) -> ProviderError:
    """After a 401, drop every cached token; the call is retried only if one of them was old
    enough that a new token may help."""
    if status == 401:
        stale = [source.invalidate() for source in sources]
        error.retryable = any(stale)
    return error
