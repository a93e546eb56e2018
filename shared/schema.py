"""The messages that cross Redis: jobs (chunks of requests) and results. All msgspec, never pickle.

Structs are frozen; every field added later gets a default so old messages still decode.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Kind = Literal["chat", "embeddings"]
ENDPOINT_KINDS: dict[str, Kind] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
}
KIND_URLS: dict[Kind, str] = {"chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}


class Route(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where a request goes: a provider id and the model name that provider knows."""

    provider: str
    model: str


class Request(msgspec.Struct, frozen=True, omit_defaults=True):
    """One user request. `body` is the OpenAI-shaped request body with `model` already normalised.

    Never carries a secret: `key_alias` names a key the worker holds, not the key.
    """

    custom_id: str
    kind: Kind
    provider: str
    model: str
    body: dict[str, Any]
    key_alias: str | None = None
    fallbacks: tuple[Route, ...] = ()
    keep_raw: bool = False
    deadline: float | None = None
    """Unix time after which the request is not tried again (fails with `deadline_exceeded`)."""
    attempts: int = 0
    """Attempts already made before it was handed back to the queue."""
    throttled: int = 0
    """Of those, 429s not charged to the attempt limit (see `workers.transport.Attempt`)."""


class Chunk(msgspec.Struct, frozen=True, omit_defaults=True):
    """One RQ job: many requests for one provider, run concurrently by one worker process."""

    batch_id: str
    chunk_id: str
    provider: str
    requests: tuple[Request, ...]


class Usage(msgspec.Struct, frozen=True, omit_defaults=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ErrorInfo(msgspec.Struct, frozen=True):
    """A scrubbed error as the OpenAI batch format writes it."""

    code: str
    message: str


class Result(msgspec.Struct, frozen=True, omit_defaults=True):
    """The outcome of one request; written once per (batch, custom_id), first write wins.

    `body` is OpenAI-shaped whatever the provider (a `chat.completion` or an embeddings `list`);
    on failure it may hold the provider's scrubbed error body. `provider`/`model` record who answered.
    """

    custom_id: str
    status_code: int
    provider: str
    model: str
    request_id: str = ""
    body: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    usage: Usage = Usage()
    attempts: int = 1
    finished_at: float = 0.0
    raw: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None


BatchStatus = Literal[
    "validating", "in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled"
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class BatchMeta(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a batch is: written once at submit time."""

    batch_id: str
    total: int
    created_at: float
    providers: tuple[str, ...] = ()
    input_file: str = ""
    chunks: int = 0
    metadata: dict[str, str] = {}


class BatchCounts(msgspec.Struct, frozen=True):
    total: int = 0
    completed: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.completed + self.failed


class BatchState(msgspec.Struct, frozen=True):
    """A batch as a client sees it when polling."""

    batch_id: str
    status: BatchStatus
    counts: BatchCounts
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: float = 0.0
    completed_at: float | None = None
    providers: tuple[str, ...] = ()
    usage_by_model: dict[str, dict[str, int]] = {}


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of a batch's event stream (what `sluice watch` prints)."""

    position: str
    custom_id: str
    ok: bool
    status_code: int = 0
    provider: str = ""
    model: str = ""
