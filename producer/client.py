"""The Python API: submit single requests or batches, poll, wait, iterate results, subscribe."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import redis
from rq import Worker

from producer import jsonl
from producer.submit import RequestSource, Submitter, Validation
from shared import keys, registry
from shared.config import Settings, load_settings, resolve_endpoint
from shared.errors import SluiceError
from shared.schema import TERMINAL_STATUSES, BatchState, Event, Request, Result, Route
from shared.store import ResultStore, usage_delta

Progress = Callable[[BatchState], None]


class Client:
    """A connection to one sluice deployment (its Redis)."""

    def __init__(self, redis_url: str, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.redis = redis.Redis.from_url(redis_url)
        self.store = ResultStore(self.redis, self.settings.result_ttl)
        self.submitter = Submitter(self.redis, self.store, chunk_size=self.settings.chunk_size)

    # -- submitting -------------------------------------------------------------------------
    def submit_requests(
        self, requests: Iterable[Request], *, check_keys: str = "workers", partial: bool = False
    ) -> str:
        """Submit an iterable of `Request`s as one batch; returns the batch id."""
        items = list(requests)
        batch_id, _ = self.submitter.submit(lambda: items, partial=partial, check=self._checker(check_keys))
        return batch_id

    def submit_file(
        self,
        path: str | Path,
        *,
        provider: str | None = None,
        model: str | None = None,
        kind: str = "chat",
        partial: bool = False,
        check_keys: str = "workers",
        fallbacks: list[str] | tuple[str, ...] = (),
        deadline: float | None = None,
    ) -> tuple[str, Validation]:
        """Submit an OpenAI batch JSONL file, or a plain file of one prompt per line (`model` needed).

        `fallbacks` are `provider/model` routes tried in order when a request's provider keeps
        failing with retryable errors or cools down for long; `deadline` is seconds from now after
        which a request is not tried again.
        """
        path = Path(path)
        routes = jsonl.parse_routes(fallbacks)
        source = request_source(path, provider=provider, model=model, kind=kind, fallbacks=routes)
        return self.submitter.submit(
            source, partial=partial, input_file=str(path), check=self._checker(check_keys),
            deadline=deadline,
        )

    def retry(self, batch_id: str) -> int:
        """Run a batch's failed requests again (results of the retried ones are replaced)."""
        from workers.requeue import enqueue_requests

        self.status(batch_id)
        failed = list(self.store.failed_requests(batch_id))
        reopened = set()
        for start in range(0, len(failed), 1000):
            ids = [r.custom_id for r in failed[start : start + 1000]]
            if self.store.reopen(batch_id, ids):
                reopened.update(ids)
        todo = [r for r in failed if r.custom_id in reopened]
        prefix = f"{batch_id}-retry{int(time.time())}"
        chunks = enqueue_requests(self.redis, batch_id, todo, id_prefix=prefix, size=self.settings.chunk_size)
        return sum(len(chunk.requests) for chunk in chunks)

    def chat(self, messages: list[dict[str, Any]], model: str, *, custom_id: str = "request-1",
             provider: str | None = None, **params: Any) -> str:
        """Submit one chat request as a batch of one; returns the batch id (see `result`)."""
        body = {"model": model, "messages": messages, **params}
        return self.submit_requests([jsonl.make_request(custom_id, "chat", body, provider)])

    def embed(self, inputs: str | list[str], model: str, *, custom_id: str = "request-1",
              provider: str | None = None, **params: Any) -> str:
        body = {"model": model, "input": inputs, **params}
        return self.submit_requests([jsonl.make_request(custom_id, "embeddings", body, provider)])

    def _checker(self, mode: str) -> Callable[[set[str]], None] | None:
        if mode == "none":
            return None
        return lambda providers: check_keys(self.redis, providers, require_local=mode == "local")

    # -- reading ----------------------------------------------------------------------------
    def status(self, batch_id: str) -> BatchState:
        state = self.store.state(batch_id)
        if state is None:
            raise SluiceError(f"no batch {batch_id!r} in this Redis (expired, or a different REDIS_URL?)")
        return state

    def wait(self, batch_id: str, *, poll: float = 0.5, timeout: float | None = None,
             progress: Progress | None = None) -> BatchState:
        """Block until the batch reaches a terminal status (or `timeout` seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.status(batch_id)
            if progress is not None:
                progress(state)
            if state.status in TERMINAL_STATUSES:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {state.status} after {timeout}s")
            time.sleep(poll)

    def result(self, batch_id: str, custom_id: str = "request-1", *, timeout: float | None = None) -> Result:
        """Wait for one request's result (for batches of one made by `chat`/`embed`)."""
        self.wait(batch_id, timeout=timeout, poll=0.1)
        found = self.store.get(batch_id, custom_id)
        if found is None:
            raise SluiceError(f"batch {batch_id} has no result for {custom_id!r}")
        return found

    def results(self, batch_id: str) -> Iterator[Result]:
        return self.store.results(batch_id)

    def subscribe(self, batch_id: str, *, after: str = "0", block_ms: int | None = 1000,
                  until_done: bool = True) -> Iterator[Event]:
        """Events as results arrive, from stream position `after` ("0" = the start); resumable.

        With `block_ms=None` it returns what is there now; else it waits for more until the batch
        is done (`until_done`) or forever.
        """
        position = after
        while True:
            events = self.store.events(batch_id, after=position, block_ms=block_ms)
            yield from events
            if events:
                position = events[-1].position
            elif block_ms is None:
                return
            elif until_done and self.status(batch_id).status in TERMINAL_STATUSES:
                tail = self.store.events(batch_id, after=position)
                yield from tail
                return

    def usage_snapshot(self, batch_id: str | None = None) -> dict[str, dict[str, int]]:
        """Calls and tokens by `provider/model`, for one batch or across every batch."""
        return self.store.usage(batch_id)

    @staticmethod
    def usage_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
        """`total_calls`, `prompt_tokens`, `completion_tokens` spent between two snapshots."""
        return usage_delta(before, after)

    def last_call(self) -> str | None:
        """`provider/model|unix time` of the most recent call recorded."""
        return self.store.last_call()

    def cancel(self, batch_id: str) -> BatchState:
        """Stop a batch: requests not yet run are recorded as `batch_cancelled`."""
        state = self.status(batch_id)
        if state.status not in TERMINAL_STATUSES:
            self.store.set_status(batch_id, "cancelling")
        return self.status(batch_id)

    def close(self) -> None:
        self.redis.close()


def request_source(
    path: Path, *, provider: str | None, model: str | None, kind: str, fallbacks: tuple[Route, ...] = ()
) -> RequestSource:
    if jsonl.looks_like_jsonl(path):
        return lambda: jsonl.read_batch(path, provider=provider, fallbacks=fallbacks)
    if not model:
        raise SluiceError(f"{path.name} is a plain prompt file: pass --model (e.g. openai/gpt-4o-mini)")
    return lambda: jsonl.read_prompts(path, model=model, provider=provider, kind=kind, fallbacks=fallbacks)


def serving_providers(connection: redis.Redis) -> set[str]:
    """Providers some live RQ worker listens to."""
    found: set[str] = set()
    for worker in Worker.all(connection=connection):
        found.update(keys.provider_of_queue(q) for q in worker.queue_names())
    return found


def check_keys(connection: redis.Redis, providers: set[str], *, require_local: bool = False) -> None:
    """Refuse a batch for a provider whose key is missing here, unless a live worker serves it."""
    served = set() if require_local else serving_providers(connection)
    for provider in sorted(providers - served):
        resolve_endpoint(registry.get(provider))  # MissingKeyError names the env vars to set
