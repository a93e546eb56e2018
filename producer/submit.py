"""Submission: validate everything, then pack requests into chunks and enqueue them in pipelines.

Two passes over the input: the first validates (nothing is enqueued for a batch with a bad line
unless `partial=True`), the second enqueues. Memory stays flat: only custom_id digests are kept.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

import msgspec
import redis
from rq import Queue

from shared.errors import InputError
from shared.schema import BatchMeta, Chunk, Request
from shared.store import ResultStore
from workers.requeue import job_data

ENQUEUE_BATCH: Final = 200
"""Jobs per `enqueue_many` pipeline."""

RequestSource = Callable[[], Iterable[Request | InputError]]
"""Called once per pass; each call yields the batch's requests from the start (a bad input line
as its `InputError`)."""


@dataclass
class Validation:
    total: int = 0
    providers: set[str] = field(default_factory=set)
    errors: list[InputError] = field(default_factory=list)
    skipped_lines: set[int] = field(default_factory=set)


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex[:24]}"


def validate(source: RequestSource, *, partial: bool = False) -> Validation:
    """Pass one: count, collect providers, refuse duplicates; raise the first error unless partial."""
    report = Validation()
    seen: set[int] = set()
    for request in _guarded(source, report, partial):
        digest = int.from_bytes(hashlib.blake2b(request.custom_id.encode(), digest_size=8).digest())
        if digest in seen:
            error = InputError(f"duplicate custom_id {request.custom_id!r}")
            if not partial:
                raise error
            report.errors.append(error)
            continue
        seen.add(digest)
        report.total += 1
        report.providers.add(request.provider)
        report.providers.update(route.provider for route in request.fallbacks)
    return report


def _guarded(source: RequestSource, report: Validation, partial: bool) -> Iterator[Request]:
    """The source's requests; with `partial`, a bad line is recorded and skipped instead of raised."""
    for item in source():
        if not isinstance(item, InputError):
            yield item
            continue
        if not partial:
            raise item
        report.errors.append(item)
        if item.line is not None:
            report.skipped_lines.add(item.line)


class Submitter:
    """Packs requests into per-provider chunks and enqueues them with one pipeline per group."""

    def __init__(self, connection: redis.Redis, store: ResultStore, *, chunk_size: int) -> None:
        self.connection = connection
        self.store = store
        self.chunk_size = chunk_size
        self.queues: dict[str, Queue] = {}

    def submit(
        self,
        source: RequestSource,
        *,
        partial: bool = False,
        input_file: str = "",
        check: Callable[[set[str]], None] | None = None,
        batch_id: str | None = None,
        deadline: float | None = None,
    ) -> tuple[str, Validation]:
        """Validate, then enqueue; `deadline` (seconds from now) bounds every request's retries."""
        report = validate(source, partial=partial)
        if report.total == 0:
            raise InputError("no requests to submit")
        if check is not None:
            check(report.providers)
        batch_id = batch_id or new_batch_id()
        meta = BatchMeta(batch_id, report.total, time.time(), tuple(sorted(report.providers)), input_file)
        self.store.create_batch(meta)
        self.store.start(batch_id, report.total)
        requests = _skip_bad(source, partial)
        if deadline is not None:
            until = time.time() + deadline
            requests = (msgspec.structs.replace(r, deadline=until) for r in requests)
        self._enqueue_all(batch_id, requests)
        return batch_id, report

    def _enqueue_all(self, batch_id: str, requests: Iterable[Request]) -> None:
        buffers: dict[str, list[Request]] = {}
        pending: list[tuple[str, Chunk]] = []
        seq = 0
        for request in requests:
            buffer = buffers.setdefault(request.provider, [])
            buffer.append(request)
            if len(buffer) >= self.chunk_size:
                pending.append(self._chunk(batch_id, seq, buffer))
                buffers[request.provider] = []
                seq += 1
                if len(pending) >= ENQUEUE_BATCH:
                    self._flush(pending)
        for buffer in buffers.values():
            if buffer:
                pending.append(self._chunk(batch_id, seq, buffer))
                seq += 1
        self._flush(pending)

    def _chunk(self, batch_id: str, seq: int, requests: list[Request]) -> tuple[str, Chunk]:
        chunk_id = f"{batch_id}-{seq:06d}"
        provider = requests[0].provider
        return provider, Chunk(batch_id, chunk_id, provider, tuple(requests))

    def _flush(self, pending: list[tuple[str, Chunk]]) -> None:
        by_queue: dict[str, list[Chunk]] = {}
        for provider, chunk in pending:
            by_queue.setdefault(provider, []).append(chunk)
        with self.connection.pipeline() as pipe:
            for provider, chunks in by_queue.items():
                queue = self.queue(provider)
                queue.enqueue_many([job_data(c) for c in chunks], pipeline=pipe)
            pipe.execute()
        pending.clear()

    def queue(self, provider: str) -> Queue:
        from workers.queueing import make_queue

        if provider not in self.queues:
            self.queues[provider] = make_queue(provider, self.connection)
        return self.queues[provider]


def _skip_bad(source: RequestSource, partial: bool) -> Iterator[Request]:
    report = Validation()
    seen: set[str] = set()
    for request in _guarded(source, report, partial):
        if partial:
            if request.custom_id in seen:
                continue
            seen.add(request.custom_id)
        yield request


