"""Run one chunk: its requests concurrently on this process's event loop, each result written once.

Per request: skip if already done (a re-run after a crash) → resolve endpoint → split embeddings
to the provider's per-call cap → transport (limiter, retries) → OpenAI-shaped result → store.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from shared import registry
from shared.adapters import Adapter, Endpoint, Parsed, get_adapter
from shared.adapters.openai import embeddings_body
from shared.config import Settings, provider_limits, resolve_endpoint
from shared.errors import ProviderError, SluiceError
from shared.limiter import Limits, estimate_tokens, key_fingerprint, limit_scope
from shared.schema import Chunk, ErrorInfo, Request, Result, Usage
from shared.scrub import scrub
from shared.store import ResultWriter
from workers.gate import Budget
from workers.transport import Attempt, DeferRequest, Transport

log = structlog.get_logger("sluice.worker")

@dataclass(frozen=True)
class Handoff:
    """A request leaving this chunk: to its next route, or back to the queue after `delay` seconds."""

    request: Request
    delay: float = 0.0


@dataclass
class WorkerContext:
    """Per-process resources, built once when the worker starts (never at import)."""

    settings: Settings
    transport: Transport
    writer: ResultWriter
    endpoints: dict[str, Endpoint | SluiceError] = field(default_factory=dict)
    adapters: dict[str, Adapter] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)
    scopes: dict[tuple[str, str], str] = field(default_factory=dict)

    def budget(self, request: Request, endpoint: Endpoint, body: dict[str, Any]) -> Budget:
        """The limiter scope (provider x key fingerprint x model), limits and token estimate.

        Limits and scopes are computed once per route: the key fingerprint is a SHA-256.
        """
        if request.provider not in self.limits:
            self.limits[request.provider] = provider_limits(registry.get(request.provider))
        route = (request.provider, request.model)
        if route not in self.scopes:
            key_ref = key_fingerprint(endpoint.api_key) if endpoint.api_key else None
            self.scopes[route] = limit_scope(request.provider, key_ref, request.model)
        return Budget(
            scope=self.scopes[route],
            limits=self.limits[request.provider],
            tokens=estimate_tokens(request.kind, body),
            provider=request.provider,
        )

    def endpoint(self, provider: str) -> Endpoint:
        if provider not in self.endpoints:
            try:
                self.endpoints[provider] = resolve_endpoint(registry.get(provider))
            except SluiceError as exc:
                self.endpoints[provider] = exc
        found = self.endpoints[provider]
        if isinstance(found, SluiceError):
            raise found
        return found

    def adapter(self, provider: str) -> Adapter:
        if provider not in self.adapters:
            self.adapters[provider] = get_adapter(registry.get(provider).adapter)
        return self.adapters[provider]


async def execute_chunk(chunk: Chunk, ctx: WorkerContext) -> tuple[dict[str, int], list[Handoff]]:
    """Run every request of a chunk not already done; returns counts (RQ's job result) and the
    requests handed off to another route or back to the queue."""
    ids = [r.custom_id for r in chunk.requests]
    done = await ctx.writer.done_ids(chunk.batch_id, ids)
    cancelled = await ctx.writer.status(chunk.batch_id) in ("cancelling", "cancelled")
    todo = [r for r in chunk.requests if r.custom_id not in done]
    bound = structlog.contextvars.bound_contextvars
    with bound(batch_id=chunk.batch_id, chunk_id=chunk.chunk_id, provider=chunk.provider):
        log.info("chunk_started", requests=len(ids), skipped=len(done), cancelled=cancelled)
        outcomes = await _run_all(chunk.batch_id, todo, ctx, cancelled)
        handoffs = [o for o in outcomes if isinstance(o, Handoff)]
        written = sum(1 for o in outcomes if o is True)
        log.info("chunk_finished", written=written, handed_off=len(handoffs))
    return {"requests": len(ids), "skipped": len(done), "written": written}, handoffs


async def _run_all(
    batch_id: str, todo: list[Request], ctx: WorkerContext, cancelled: bool
) -> list[bool | Handoff]:
    """Every request concurrently. An unexpected failure (Redis gone) cancels the others, so none
    keeps sending after the chunk has failed and RQ has put it back for a retry."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_run_one(batch_id, r, ctx, cancelled)) for r in todo]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _run_one(batch_id: str, request: Request, ctx: WorkerContext, cancelled: bool) -> bool | Handoff:
    if cancelled:
        outcome: Result | Handoff = failure(request, ErrorInfo("batch_cancelled", "the batch was cancelled"), 0, 0)
    else:
        outcome = await run_request(request, ctx)
    if isinstance(outcome, Handoff):
        return outcome
    if outcome.error is not None and not cancelled:
        log.info("request_failed", custom_id=request.custom_id, status=outcome.status_code,
                 code=outcome.error.code, attempts=outcome.attempts)
        await ctx.writer.keep_failed(batch_id, request)
    return await ctx.writer.record(batch_id, outcome)


async def run_request(request: Request, ctx: WorkerContext) -> Result | Handoff:
    """One request to its final Result (success or scrubbed failure) or a hand-off; never raises
    for provider errors."""
    allowance = 0 if request.fallbacks else ctx.transport.policy.max_throttled
    attempt = Attempt(attempts=request.attempts, throttled=request.throttled,
                      throttle_allowance=allowance, deadline=request.deadline)
    if request.deadline is not None and time.time() >= request.deadline:
        return failure(request, ErrorInfo("deadline_exceeded", "the request's deadline passed"), 0, 0)
    try:
        parsed = await call_provider(request, ctx, attempt)
    except DeferRequest as exc:
        if request.fallbacks:
            return next_route(request, f"cooling down {exc.delay:.0f}s")
        handed = msgspec.structs.replace(request, attempts=attempt.attempts,
                                         throttled=attempt.throttled)
        return Handoff(handed, exc.delay)
    except ProviderError as exc:
        if exc.retryable and request.fallbacks:
            return next_route(request, type(exc).__name__)
        return failure(request, error_info(exc), exc.status, attempt.attempts)
    except SluiceError as exc:
        return failure(request, error_info(exc), 0, attempt.attempts)
    return Result(
        custom_id=request.custom_id,
        status_code=200,
        provider=request.provider,
        model=parsed.model or request.model,
        request_id=parsed.request_id,
        body=parsed.body,
        usage=parsed.usage,
        attempts=attempt.attempts,
        finished_at=time.time(),
        raw=parsed.raw if request.keep_raw else None,
    )


async def call_provider(request: Request, ctx: WorkerContext, attempt: Attempt) -> Parsed:
    endpoint = ctx.endpoint(request.provider)
    adapter = ctx.adapter(request.provider)
    if request.kind == "chat":
        return await ctx.transport.call(
            adapter,
            endpoint,
            lambda: adapter.build_chat(endpoint, request.model, request.body),
            lambda h, c: adapter.parse_chat(h, c, request.model),
            attempt,
            ctx.budget(request, endpoint, request.body),
        )
    return await embed(request, ctx, adapter, endpoint, attempt)


async def embed(
    request: Request, ctx: WorkerContext, adapter: Adapter, endpoint: Endpoint, attempt: Attempt
) -> Parsed:
    """Split the inputs to the provider's per-call cap, call concurrently, reassemble in order."""
    raw_input = request.body.get("input", [])
    inputs: list[Any] = raw_input if isinstance(raw_input, list) else [raw_input]
    body = {k: v for k, v in request.body.items() if k != "input"}
    cap = embed_cap(adapter, request.provider, request.model, len(inputs))
    parts = [inputs[i : i + cap] for i in range(0, len(inputs), cap)] or [[]]

    async def one(part: list[Any]) -> Parsed:
        return await ctx.transport.call(
            adapter,
            endpoint,
            lambda: adapter.build_embeddings(endpoint, request.model, part, body),
            lambda h, c: adapter.parse_embeddings(h, c, request.model),
            attempt,
            ctx.budget(request, endpoint, {"input": part}),
        )

    answers = await asyncio.gather(*(one(p) for p in parts))
    return merge_embeddings(answers, request.model)


def embed_cap(adapter: Adapter, provider: str, model: str, count: int) -> int:
    """Inputs per call: the adapter's per-model cap, the registry row's, else all of them."""
    per_model = getattr(adapter, "max_embed_inputs_for", None)
    caps = [per_model(model) if per_model else adapter.max_embed_inputs,
            registry.get(provider).max_embed_inputs]
    return max(1, min([c for c in caps if c] or [count or 1]))


def merge_embeddings(answers: list[Parsed], model: str) -> Parsed:
    if len(answers) == 1:
        return answers[0]
    vectors = [item["embedding"] for a in answers for item in a.body["data"]]
    prompt = sum(a.usage.prompt_tokens for a in answers)
    usage = Usage(prompt_tokens=prompt, total_tokens=sum(a.usage.total_tokens for a in answers))
    body = embeddings_body(vectors, answers[0].model or model, usage)
    return Parsed(body, usage, answers[0].model or model, answers[0].request_id)


def next_route(request: Request, reason: str) -> Handoff:
    """The request moved to its first fallback route (which keeps the remaining ones)."""
    route, rest = request.fallbacks[0], request.fallbacks[1:]
    log.info("request_failover", custom_id=request.custom_id, to=f"{route.provider}/{route.model}",
             reason=reason)
    moved = msgspec.structs.replace(request, provider=route.provider, model=route.model, fallbacks=rest)
    return Handoff(moved)


def error_info(exc: SluiceError) -> ErrorInfo:
    code = getattr(exc, "code", None) or _snake(type(exc).__name__)
    return ErrorInfo(code=str(code), message=scrub(str(exc)))


def failure(request: Request, error: ErrorInfo, status: int, attempts: int) -> Result:
    return Result(
        custom_id=request.custom_id,
        status_code=status,
        provider=request.provider,
        model=request.model,
        error=error,
        attempts=attempts,
        finished_at=time.time(),
    )


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
