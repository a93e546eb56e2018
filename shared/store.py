"""The result store: one record per (batch, custom_id), written once; counters in the same step.

Writers (workers) are async; readers (producers, the CLI) are sync. Both use the keys in
`shared.keys` and one Lua script, `lua/record.lua`, so a re-run chunk never double counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any, Final

import msgspec
import redis
import redis.asyncio as aredis

from shared import keys
from shared.schema import BatchCounts, BatchMeta, BatchState, Event, Request, Result

EVENTS_MAXLEN: Final = 1_000_000
"""Approximate cap on a batch's event stream (one entry per finished request)."""

_result_encoder: Final = msgspec.msgpack.Encoder()
_result_decoder: Final = msgspec.msgpack.Decoder(Result)
_meta_decoder: Final = msgspec.msgpack.Decoder(BatchMeta)
_request_encoder: Final = msgspec.msgpack.Encoder()
_request_decoder: Final = msgspec.msgpack.Decoder(Request)


def load_script(name: str) -> str:
    return resources.files("shared").joinpath("lua", name).read_text(encoding="utf-8")


def encode_result(result: Result) -> bytes:
    return _result_encoder.encode(result)


def decode_result(data: bytes) -> Result:
    return _result_decoder.decode(data)


def _batch_keys(batch_id: str) -> list[str]:
    keys_ = [keys.batch_key(batch_id, p) for p in ("results", "state", "events", "usage")]
    keys_.append(keys.usage_totals())
    return keys_


def _result_args(result: Result) -> tuple[Any, ...]:
    """The seven values `record.lua` takes per result."""
    usage = result.usage
    return (result.custom_id, encode_result(result), "1" if result.ok else "0", usage.prompt_tokens,
            usage.completion_tokens, f"{result.provider}/{result.model}", result.status_code)


Pending = tuple[str, Result, "asyncio.Future[bool]"]


class ResultWriter:
    """The worker side: record results, find what a re-run chunk can skip, see cancellation.

    Writes are group-committed: results that finish while a write is in flight go to Redis
    together, one atomic script call per batch (first write wins for each result).
    """

    def __init__(self, client: aredis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self._record = client.register_script(load_script("record.lua"))
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, batch_id: str, result: Result) -> bool:
        """Write a result unless one exists; True when this call wrote it."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((batch_id, result, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            items, self._pending = self._pending, []
            by_batch: dict[str, list[Pending]] = {}
            for item in items:
                by_batch.setdefault(item[0], []).append(item)
            await asyncio.gather(*(self._commit(batch_id, group) for batch_id, group in by_batch.items()))

    async def _commit(self, batch_id: str, group: list[Pending]) -> None:
        args: list[Any] = [self.ttl, repr(time.time()), EVENTS_MAXLEN]
        for _, result, _ in group:
            args.extend(_result_args(result))
        try:
            replies = await self._record(keys=_batch_keys(batch_id), args=args)
        except Exception as exc:
            for _, _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(group, replies, strict=True):
            if not future.done():
                future.set_result(bool(reply))

    async def keep_failed(self, batch_id: str, request: Request) -> None:
        """Keep a finally-failed request (no secret in it) so `sluice retry` can run it again."""
        key = keys.batch_key(batch_id, "failed_requests")
        await self.client.hset(key, request.custom_id, _request_encoder.encode(request))
        await self.client.expire(key, self.ttl)

    async def done_ids(self, batch_id: str, custom_ids: list[str]) -> set[str]:
        if not custom_ids:
            return set()
        found = await self.client.hmget(keys.batch_key(batch_id, "results"), custom_ids)
        return {cid for cid, value in zip(custom_ids, found, strict=True) if value is not None}

    async def status(self, batch_id: str) -> str | None:
        value = await self.client.hget(keys.batch_key(batch_id, "state"), "status")
        return value.decode() if value is not None else None


class ResultStore:
    """The client side: create batches, poll state, read and subscribe to results."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl

    def create_batch(self, meta: BatchMeta, status: str = "validating") -> None:
        state = keys.batch_key(meta.batch_id, "state")
        with self.client.pipeline() as pipe:
            pipe.set(keys.batch_key(meta.batch_id, "meta"), msgspec.msgpack.encode(meta), ex=self.ttl)
            pipe.hset(state, mapping={"status": status, "total": meta.total, "created_at": meta.created_at})
            pipe.expire(state, self.ttl)
            pipe.zadd(keys.batches_index(), {meta.batch_id: meta.created_at})
            pipe.execute()

    def start(self, batch_id: str, total: int, pipeline: Any = None) -> None:
        """Mark a validated batch in progress with its final request count (before any enqueue)."""
        target = pipeline if pipeline is not None else self.client
        target.hset(keys.batch_key(batch_id, "state"), mapping={"status": "in_progress", "total": total})

    def set_status(self, batch_id: str, status: str) -> None:
        self.client.hset(keys.batch_key(batch_id, "state"), "status", status)

    def meta(self, batch_id: str) -> BatchMeta | None:
        raw = self.client.get(keys.batch_key(batch_id, "meta"))
        return _meta_decoder.decode(raw) if raw is not None else None

    def state(self, batch_id: str) -> BatchState | None:
        raw = self.client.hgetall(keys.batch_key(batch_id, "state"))
        if not raw:
            return None
        state = {k.decode(): v.decode() for k, v in raw.items()}
        meta = self.meta(batch_id)
        return BatchState(
            batch_id=batch_id,
            status=state.get("status", "in_progress"),
            counts=BatchCounts(
                total=int(state.get("total", 0)),
                completed=int(state.get("completed", 0)),
                failed=int(state.get("failed", 0)),
            ),
            prompt_tokens=int(state.get("prompt_tokens", 0)),
            completion_tokens=int(state.get("completion_tokens", 0)),
            created_at=float(state.get("created_at", 0)),
            completed_at=float(state["completed_at"]) if "completed_at" in state else None,
            providers=meta.providers if meta else (),
            usage_by_model=self.usage(batch_id),
        )

    def usage(self, batch_id: str | None = None) -> dict[str, dict[str, int]]:
        """`provider/model` → {calls, completed, failed, prompt_tokens, completion_tokens}."""
        key = keys.batch_key(batch_id, "usage") if batch_id else keys.usage_totals()
        return parse_usage(self.client.hgetall(key))

    def last_call(self) -> str | None:
        value = self.client.hget(keys.usage_totals(), "last_call")
        return value.decode() if value is not None else None

    def get(self, batch_id: str, custom_id: str) -> Result | None:
        raw = self.client.hget(keys.batch_key(batch_id, "results"), custom_id)
        return decode_result(raw) if raw is not None else None

    def results(self, batch_id: str, count: int = 1000) -> Iterator[Result]:
        """Every stored result of a batch, in no particular order (HSCAN: memory stays flat)."""
        key = keys.batch_key(batch_id, "results")
        for _, raw in self.client.hscan_iter(key, count=count):
            yield decode_result(raw)

    def events(self, batch_id: str, after: str = "0", count: int = 1000, block_ms: int | None = None) -> list[Event]:
        """Events after stream position `after` ("0" = from the start); resumable by position."""
        key = keys.batch_key(batch_id, "events")
        reply = self.client.xread({key: after}, count=count, block=block_ms)
        return [_event(pos, fields) for _, entries in reply or [] for pos, fields in entries]

    def failed_requests(self, batch_id: str) -> Iterator[Request]:
        """Requests kept because they failed (after every retry and fallback)."""
        key = keys.batch_key(batch_id, "failed_requests")
        for _, raw in self.client.hscan_iter(key, count=1000):
            yield _request_decoder.decode(raw)

    def reopen(self, batch_id: str, custom_ids: list[str]) -> int:
        """Drop the results of failed requests so they can run again; returns how many."""
        script = self.client.register_script(load_script("reopen.lua"))
        names = ("results", "state", "failed_requests")
        return int(script(keys=[keys.batch_key(batch_id, n) for n in names], args=custom_ids))

    def batch_ids(self, limit: int = 50) -> list[str]:
        return [b.decode() for b in self.client.zrevrange(keys.batches_index(), 0, limit - 1)]


def _event(position: bytes, fields: dict[bytes, bytes]) -> Event:
    provider, _, model = fields.get(b"route", b"").decode().partition("/")
    return Event(
        position=position.decode(),
        custom_id=fields[b"custom_id"].decode(),
        ok=fields.get(b"ok") == b"1",
        status_code=int(fields.get(b"status", b"0")),
        provider=provider,
        model=model,
    )


def parse_usage(raw: dict[bytes, bytes]) -> dict[str, dict[str, int]]:
    usage: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        route, sep, name = field.decode().rpartition("|")
        if sep and route:
            usage.setdefault(route, {})[name] = int(value)
    return usage


def usage_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    """Calls and tokens spent between two `usage()` snapshots (RLM Code's `usage_delta`)."""
    fields = ("calls", "prompt_tokens", "completion_tokens")
    totals = dict.fromkeys(("total_calls", "prompt_tokens", "completion_tokens"), 0)
    for route, counts in after.items():
        prior = before.get(route, {})
        for name, out in zip(fields, totals, strict=True):
            totals[out] += counts.get(name, 0) - prior.get(name, 0)
    return totals


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
