"""A loopback fake LLM provider for benchmarks and end-to-end tests.

It speaks OpenAI (chat, embeddings, models; with and without the `/v1` prefix), Anthropic
messages, Gemini generateContent / batchEmbedContents / embedContent, Ollama chat / embed / tags
and Cohere v2 chat / embed, answering with bodies shaped like the recorded responses in
`tests/samples/`. Chat answers echo the request (`echo:` + the first 40 characters of the last
user message) so a test can tell which request an answer belongs to; embeddings are
deterministic functions of the input text, one vector per input, in order.

Chaos and limits (all optional): latency, per-key requests/tokens per minute (token buckets
refilled continuously) answered with 429 and real-format rate-limit headers, random 429s, 5xx
failures, a required key (401 with the provider's real body), requests that never answer.
`GET /_stats` counts what happened, including duplicate request bodies; `POST /_reset` clears
the counters and the rate-limit buckets; `POST /_config` changes options at run time.

Three ways to run it, always on 127.0.0.1:
    python -m bench.fake_provider --port 0 --port-file PATH [options]   # subprocess
    runner, port = await start_fake_provider(FakeConfig(...))           # in a running loop
    with FakeProvider(FakeConfig(...)) as fake: ...                     # background thread
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import functools
import hashlib
import json
import math
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, TypeVar

import msgspec
from aiohttp import web

HOST: Final = "127.0.0.1"
"""The only address the fake listens on."""
ROOT: Final = Path(__file__).resolve().parent.parent
SAMPLES: Final = ROOT / "tests" / "samples"
HeaderMode = Literal["none", "openai", "anthropic"]
FAIL_STATUSES: Final = (500, 502, 503, 504, 529)

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode


class FakeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Options of one fake provider; every field has a CLI flag of the same name."""

    latency: float = 0.0
    """Seconds each metered request waits before it is answered (200 or 5xx)."""
    latency_jitter: float = 0.0
    """Plus a uniform random 0..jitter seconds."""
    rpm: int = 0
    """Requests per minute per API key (token bucket, refilled continuously); 0 = unlimited."""
    tpm: int = 0
    """Tokens (prompt + completion estimate) per minute per API key; 0 = unlimited."""
    headers: HeaderMode = "none"
    """Rate-limit headers to send: OpenAI `x-ratelimit-*` or `anthropic-ratelimit-*`."""
    retry_after: float = 0.0
    """`retry-after` seconds on rate-limit 429s; 0 = no header."""
    random_429: float = 0.0
    """Fraction of requests answered 429 with `retry-after: 1`, regardless of limits."""
    fail_rate: float = 0.0
    """Fraction of requests answered `fail_status`."""
    fail_status: int = 500
    require_key: str | None = None
    """When set, any other key (or none) gets the provider's 401/400 auth error."""
    hang_rate: float = 0.0
    """Fraction of requests never answered (until the server stops): for timeout tests."""
    seed: int | None = None
    echo: bool = True
    """Chat content `echo:<first 40 chars of the last user message>`; else the sample's text."""
    embedding_dim: int = 8
    """Vector size unless the request asks for one (`dimensions`, `outputDimensionality`, ...)."""
    models: tuple[str, ...] = ("gpt-4o-mini", "text-embedding-3-small")
    """What `GET /v1/models` lists."""
    fingerprints: bool = True
    """Hash every request body to count duplicates (memory grows with distinct bodies)."""
    port: int = 0

    def __post_init__(self) -> None:
        for name in ("random_429", "fail_rate", "hang_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.fail_status not in FAIL_STATUSES:
            raise ValueError(f"fail_status must be one of {FAIL_STATUSES}")
        if min(self.latency, self.latency_jitter, self.retry_after, self.rpm, self.tpm) < 0:
            raise ValueError("latency, retry_after, rpm and tpm must not be negative")
        if not 1 <= self.embedding_dim <= 65536:
            raise ValueError("embedding_dim must be between 1 and 65536")


# -- small pure helpers ------------------------------------------------------------------------
def go_duration(seconds: float) -> str:
    """Seconds as OpenAI's `x-ratelimit-reset-*` Go duration: `0s`, `120ms`, `1.5s`, `6m0s`."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, ms = divmod(rest, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rfc3339(epoch: float) -> str:
    """Anthropic's reset format, whole seconds rounded up: `2026-02-17T23:44:11Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(epoch)))


def seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def key_hint(key: str) -> str:
    """The key as OpenAI's 401 echoes it: first 8 and last 4 characters, whole when short."""
    return key if len(key) <= 12 else key[:8] + "*" * (len(key) - 12) + key[-4:]


def estimate_tokens(chars: int) -> int:
    return max(1, chars // 4)


def count_tokens(texts: Sequence[str]) -> int:
    return sum(estimate_tokens(len(t)) for t in texts)


def text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of `{"text": ...}` parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


@functools.lru_cache(maxsize=8192)
def embedding(text: str, dim: int) -> tuple[float, ...]:
    """A deterministic unit vector for `text`."""
    raw = hashlib.shake_128(text.encode()).digest(dim * 2)
    values = [(v - 32767.5) / 32767.5 for v in struct.unpack(f"<{dim}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return tuple(round(v / norm, 6) for v in values)


def float32_base64(vector: Sequence[float]) -> str:
    """OpenAI's `encoding_format: base64`: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def load_sample(name: str) -> dict[str, Any]:
    with open(SAMPLES / name, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def sample_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(load_sample(name)["response"]["body"])
    return body


class Template:
    """A JSON body encoded once, with `"@@name@@"` string slots filled per request."""

    def __init__(self, doc: object) -> None:
        pieces = _encode(doc).split(b'"@@')
        self._head = pieces[0]
        self._slots = [tuple(p.split(b'@@"', 1)) for p in pieces[1:]]

    def render(self, **values: object) -> bytes:
        out = [self._head]
        for name, tail in self._slots:
            out += (_encode(values[name.decode()]), tail)
        return b"".join(out)


# -- requests as the fake reads them (unknown fields are skipped) -------------------------------
class _Message(msgspec.Struct):
    role: str = ""
    content: Any = None


class _Chat(msgspec.Struct):
    """OpenAI, Anthropic, Cohere and Ollama chat bodies share these fields."""

    model: str = ""
    messages: list[_Message] = []
    system: Any = None
    max_tokens: int | None = None
    stream: bool | None = None


class _Part(msgspec.Struct):
    text: str = ""


class _Content(msgspec.Struct):
    role: str = "user"
    parts: list[_Part] = []


class _GeminiChat(msgspec.Struct, rename="camel"):
    contents: list[_Content] = []
    system_instruction: _Content | None = None


class _GeminiEmbed(msgspec.Struct, rename="camel"):
    content: _Content = msgspec.field(default_factory=_Content)
    output_dimensionality: int | None = None


class _GeminiBatch(msgspec.Struct):
    requests: list[_GeminiEmbed] = []


class _Embed(msgspec.Struct):
    """OpenAI, Ollama and Cohere embedding bodies."""

    model: str = ""
    input: Any = None
    encoding_format: str = "float"
    dimensions: int | None = None
    texts: list[str] | None = None
    inputs: list[Any] | None = None
    embedding_types: list[str] | None = None
    output_dimension: int | None = None


class Reject(Exception):
    """The request cannot be answered: becomes the provider's error body."""

    def __init__(self, message: str, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.kind = kind


def decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise Reject(f"invalid request body: {exc}") from None


def last_user_text(messages: Sequence[_Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return text_of(message.content)
    return ""


def inputs_of(value: Any) -> list[str]:
    """OpenAI/Ollama `input`: a string, strings, token ids, or lists of token ids."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise Reject("'input' must be a non-empty string or array")
    if all(isinstance(v, int) for v in value):
        return [repr(value)]
    return [v if isinstance(v, str) else repr(v) for v in value]


def check_count(count: int, limit: int, message: str) -> None:
    if count == 0:
        raise Reject("no inputs to embed")
    if count > limit:
        raise Reject(message.format(limit=limit, count=count))


class Reply(NamedTuple):
    """A 200 answer, built before the limits are checked (tokens is its cost)."""

    body: bytes
    tokens: int
    model: str = ""
    inputs: int = 0
    content_type: str = "application/json"
    headers: Mapping[str, str] | None = None


class Call(NamedTuple):
    body: bytes
    match: Mapping[str, str]
    seq: int


# -- the answers, one per endpoint -------------------------------------------------------------
class Answers:
    """Builds 200 bodies from the recorded samples; templates are made once per server."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.openai_text, self.openai_chat_t = self._openai_chat_template()
        self.anthropic_text, self.anthropic_t = self._anthropic_template()
        self.gemini_text, self.gemini_t = self._gemini_template()
        self.ollama_text, self.ollama_t = self._ollama_template()
        self.cohere_text, self.cohere_t = self._cohere_template()
        self.ollama_doc = sample_body("ollama_api_chat.json")
        self.tags = _encode(sample_body("ollama_api_tags.json"))
        self.models_list = _encode({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1686935002, "owned_by": "system"}
            for m in config.models]})

    # templates
    @staticmethod
    def _openai_chat_template() -> tuple[str, Template]:
        body = sample_body("openai_chat_completion.json")
        text = body["choices"][0]["message"]["content"]
        body.update(id="@@id@@", model="@@model@@", created="@@created@@")
        body["choices"][0]["message"]["content"] = "@@content@@"
        body["usage"].update(prompt_tokens="@@p@@", completion_tokens="@@c@@", total_tokens="@@t@@")
        return text, Template(body)

    @staticmethod
    def _anthropic_template() -> tuple[str, Template]:
        body = sample_body("anthropic_message.json")
        text = body["content"][0]["text"]
        body.update(id="@@id@@", model="@@model@@")
        body["content"][0]["text"] = "@@content@@"
        body["usage"].update(input_tokens="@@p@@", output_tokens="@@c@@")
        return text, Template(body)

    @staticmethod
    def _gemini_template() -> tuple[str, Template]:
        body = sample_body("gemini_generate_content.json")
        candidate = body["candidates"][0]
        text = candidate["content"]["parts"][0]["text"]
        candidate["content"]["parts"] = [{"text": "@@content@@"}]
        body["usageMetadata"] = {
            "promptTokenCount": "@@p@@", "candidatesTokenCount": "@@c@@",
            "totalTokenCount": "@@t@@",
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": "@@p@@"}]}
        body.update(modelVersion="@@model@@", responseId="@@id@@")
        return text, Template(body)

    @staticmethod
    def _ollama_template() -> tuple[str, Template]:
        body = sample_body("ollama_api_chat.json")
        text = body["message"]["content"]
        body["model"] = "@@model@@"
        body["message"]["content"] = "@@content@@"
        body.update(prompt_eval_count="@@p@@", eval_count="@@c@@")
        return text, Template(body)

    @staticmethod
    def _cohere_template() -> tuple[str, Template]:
        body = sample_body("cohere_chat_v2.json")
        text = body["message"]["content"][0]["text"]
        body["id"] = "@@id@@"
        body["message"]["content"][0]["text"] = "@@content@@"
        counts = {"input_tokens": "@@p@@", "output_tokens": "@@c@@"}
        body["usage"] = {"billed_units": counts, "tokens": counts}
        return text, Template(body)

    def content(self, prompt: str, default: str) -> str:
        return "echo:" + prompt[:40] if self.config.echo else default

    def dim(self, asked: int | None) -> int:
        return asked if asked and 0 < asked <= 65536 else self.config.embedding_dim

    # chat
    def _chat_counts(self, chat: _Chat, default: str) -> tuple[str, int, int]:
        chars = sum(len(text_of(m.content)) for m in chat.messages) + len(text_of(chat.system))
        content = self.content(last_user_text(chat.messages), default)
        return content, estimate_tokens(chars), estimate_tokens(len(content))

    def openai_chat(self, call: Call) -> Reply:
        chat = decode(call.body, _Chat)
        if chat.stream:
            raise Reject("the fake provider does not stream: send stream=false")
        content, p, c = self._chat_counts(chat, self.openai_text)
        body = self.openai_chat_t.render(
            id=f"chatcmpl-fake{call.seq:016d}", model=chat.model, created=int(time.time()),
            content=content, p=p, c=c, t=p + c)
        return Reply(body, p + c, chat.model)

    def anthropic_messages(self, call: Call) -> Reply:
        chat = decode(call.body, _Chat)
        if chat.max_tokens is None:
            raise Reject("max_tokens: Field required")
        if chat.stream:
            raise Reject("the fake provider does not stream: send stream=false")
        content, p, c = self._chat_counts(chat, self.anthropic_text)
        body = self.anthropic_t.render(id=f"msg_fake{call.seq:016d}", model=chat.model,
                                       content=content, p=p, c=c)
        return Reply(body, p + c, chat.model)

    def cohere_chat(self, call: Call) -> Reply:
        chat = decode(call.body, _Chat)
        if chat.stream:
            raise Reject("the fake provider does not stream: send stream=false")
        content, p, c = self._chat_counts(chat, self.cohere_text)
        body = self.cohere_t.render(id=f"00000000-0000-4000-8000-{call.seq:012d}",
                                    content=content, p=p, c=c)
        return Reply(body, p + c, chat.model)

    def ollama_chat(self, call: Call) -> Reply:
        chat = decode(call.body, _Chat)
        content, p, c = self._chat_counts(chat, self.ollama_text)
        if chat.stream is False:
            return Reply(self.ollama_t.render(model=chat.model, content=content, p=p, c=c),
                         p + c, chat.model)
        first = {"model": chat.model, "created_at": self.ollama_doc["created_at"],
                 "message": {"role": "assistant", "content": content}, "done": False}
        last = {**self.ollama_doc, "model": chat.model, "prompt_eval_count": p, "eval_count": c,
                "message": {"role": "assistant", "content": ""}}
        lines = _encode(first) + b"\n" + _encode(last) + b"\n"
        return Reply(lines, p + c, chat.model, content_type="application/x-ndjson")

    def gemini(self, call: Call) -> Reply:
        model, _, action = call.match["target"].partition(":")
        answer = {"generateContent": self._gemini_generate,
                  "batchEmbedContents": self._gemini_batch_embed,
                  "embedContent": self._gemini_embed}.get(action)
        if answer is None:
            raise Reject(f"models/{model}:{action} is not supported by the fake provider",
                         "not_found")
        return answer(call, model)

    def _gemini_generate(self, call: Call, model: str) -> Reply:
        chat = decode(call.body, _GeminiChat)
        texts = ["".join(p.text for p in c.parts) for c in chat.contents]
        users = [t for c, t in zip(chat.contents, texts, strict=True) if c.role == "user"]
        system = chat.system_instruction or _Content()
        content = self.content(users[-1] if users else "", self.gemini_text)
        chars = sum(map(len, texts)) + sum(len(part.text) for part in system.parts)
        p, c = estimate_tokens(chars), estimate_tokens(len(content))
        body = self.gemini_t.render(content=content, p=p, c=c, t=p + c, model=model,
                                    id=f"fake{call.seq:016x}")
        return Reply(body, p + c, model)

    def _gemini_batch_embed(self, call: Call, model: str) -> Reply:
        requests = decode(call.body, _GeminiBatch).requests
        check_count(len(requests), 100, "* BatchEmbedContentsRequest.requests: at most {limit} "
                    "requests can be in one batch\n")
        texts = ["".join(p.text for p in r.content.parts) for r in requests]
        vectors = [{"values": embedding(t, self.dim(r.output_dimensionality))}
                   for t, r in zip(texts, requests, strict=True)]
        return self._embed_reply({"embeddings": vectors}, texts, model)

    def _gemini_embed(self, call: Call, model: str) -> Reply:
        request = decode(call.body, _GeminiEmbed)
        text = "".join(p.text for p in request.content.parts)
        vector = embedding(text, self.dim(request.output_dimensionality))
        return self._embed_reply({"embedding": {"values": vector}}, [text], model)

    # embeddings
    @staticmethod
    def _embed_reply(doc: object, texts: Sequence[str], model: str,
                     headers: Mapping[str, str] | None = None) -> Reply:
        return Reply(_encode(doc), count_tokens(texts), model, len(texts), headers=headers)

    def openai_embeddings(self, call: Call) -> Reply:
        request = decode(call.body, _Embed)
        texts = inputs_of(request.input)
        check_count(len(texts), 2048, "'input' must have at most {limit} items, got {count}")
        dim = self.dim(request.dimensions)
        encode: Callable[[tuple[float, ...]], object] = (
            float32_base64 if request.encoding_format == "base64" else list)
        data = [{"object": "embedding", "index": i, "embedding": encode(embedding(t, dim))}
                for i, t in enumerate(texts)]
        tokens = count_tokens(texts)
        doc = {"object": "list", "data": data, "model": request.model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return self._embed_reply(doc, texts, request.model)

    def ollama_embed(self, call: Call) -> Reply:
        request = decode(call.body, _Embed)
        texts = inputs_of(request.input)
        dim = self.dim(request.dimensions)
        tokens = count_tokens(texts)
        doc = {"model": request.model, "embeddings": [embedding(t, dim) for t in texts],
               "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": tokens}
        return self._embed_reply(doc, texts, request.model)

    def cohere_embed(self, call: Call) -> Reply:
        request = decode(call.body, _Embed)
        texts = request.texts or [text_of(i.get("content")) if isinstance(i, dict) else str(i)
                                  for i in request.inputs or ()]
        check_count(len(texts), 96, "invalid request: total number of texts must be at most "
                    "{limit} - received {count}")
        dim = self.dim(request.output_dimension)
        vectors = [embedding(t, dim) for t in texts]
        kinds = request.embedding_types or ["float"]
        by_type = {kind: cohere_vectors(kind, vectors) for kind in kinds}
        tokens = count_tokens(texts)
        doc = {"id": f"00000000-0000-4000-8000-{call.seq:012d}", "embeddings": by_type,
               "texts": texts, "meta": {"api_version": {"version": "2"},
                                        "billed_units": {"image_tokens": 0,
                                                         "input_tokens": tokens}},
               "response_type": "embeddings_by_type"}
        headers = {"num_chars": str(sum(map(len, texts))), "num_tokens": str(tokens)}
        return self._embed_reply(doc, texts, request.model, headers)

    # listings
    def openai_models(self, call: Call) -> Reply:
        return Reply(self.models_list, 0)

    def ollama_tags(self, call: Call) -> Reply:
        return Reply(self.tags, 0)


def _bits(vector: Sequence[float], offset: int) -> list[int]:
    packed = [int("".join("1" if v > 0 else "0" for v in vector[i:i + 8]).ljust(8, "0"), 2)
              for i in range(0, len(vector), 8)]
    return [b - offset for b in packed]


_COHERE_TYPES: Final[dict[str, Callable[[Sequence[float]], object]]] = {
    "float": list,
    "int8": lambda v: [round(x * 127) for x in v],
    "uint8": lambda v: [round((x + 1) * 127.5) for x in v],
    "binary": lambda v: _bits(v, 128),
    "ubinary": lambda v: _bits(v, 0),
    "base64": float32_base64,
}


def cohere_vectors(kind: str, vectors: Sequence[Sequence[float]]) -> list[object]:
    convert = _COHERE_TYPES.get(kind)
    if convert is None:
        raise Reject(f"invalid embedding type {kind!r}: use one of {sorted(_COHERE_TYPES)}")
    return [convert(v) for v in vectors]


# -- errors in each provider's own shape -------------------------------------------------------
class Flavor(NamedTuple):
    """How one provider words and wraps its errors."""

    envelope: Callable[[int, str, str, int], object]
    """(status, kind, message, seq) -> JSON body."""
    messages: Mapping[str, str]
    """kind -> message template; fields: key, model, limit, used, requested, wait, detail."""
    auth_status: Mapping[str, int]
    should_retry_header: bool = False


DEFAULT_MESSAGES: Final[Mapping[str, str]] = {
    "invalid_key": "invalid api key",
    "no_key": "no api key supplied",
    "requests": "too many requests: limit {limit} per minute, try again in {wait}",
    "tokens": "too many tokens: limit {limit} per minute, try again in {wait}",
    "too_large": "request too large: {requested} tokens exceeds the limit of {limit} per minute",
    "random": "too many requests (fake provider random 429), try again in 1s",
    "bad_request": "{detail}",
    "not_found": "{detail}",
    "shutdown": "the fake provider is shutting down",
    "server": "internal server error",
}
_OPENAI_RATE: Final = ("on {unit}: Limit {limit}, Used {used}, Requested {requested}. Please try "
                       "again in {wait}. Visit https://platform.openai.com/account/rate-limits to "
                       "learn more.")
_OPENAI_MESSAGES: Final[Mapping[str, str]] = {
    "invalid_key": "Incorrect API key provided: {key}. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.",
    "no_key": "You didn't provide an API key. You need to provide your API key in an "
              "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or "
              "as the password field (with blank username) if you're accessing the API from your "
              "browser and are prompted for a username and password. You can obtain an API key "
              "from https://platform.openai.com/account/api-keys.",
    "requests": "Rate limit reached for {model} in organization org-fake "
                + _OPENAI_RATE.replace("{unit}", "requests per min (RPM)"),
    "tokens": "Rate limit reached for {model} in organization org-fake "
              + _OPENAI_RATE.replace("{unit}", "tokens per min (TPM)"),
    "too_large": "Request too large for {model} in organization org-fake on tokens per min (TPM): "
                 "Limit {limit}, Requested {requested}. The input or output tokens must be reduced "
                 "in order to run successfully. Visit https://platform.openai.com/account/"
                 "rate-limits to learn more.",
    "random": "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
              "Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to "
              "learn more.",
    "server": "The server had an error while processing your request. Sorry about that!",
    "503": "The server is overloaded or not ready yet.",
}
_OPENAI_TYPES: Final[Mapping[str, tuple[str, str | None]]] = {
    "invalid_key": ("invalid_request_error", "invalid_api_key"),
    "no_key": ("invalid_request_error", None),
    "requests": ("requests", "rate_limit_exceeded"),
    "tokens": ("tokens", "rate_limit_exceeded"),
    "too_large": ("tokens", "rate_limit_exceeded"),
    "random": ("requests", "rate_limit_exceeded"),
    "bad_request": ("invalid_request_error", None),
    "not_found": ("invalid_request_error", "unknown_url"),
}
_ANTHROPIC_TOKENS: Final = (
    "Number of request tokens has exceeded your per-minute rate limit (https://docs.anthropic.com"
    "/en/api/rate-limits); see the response headers for current usage. Please reduce the prompt "
    "length or the maximum tokens requested, or try again later. You may also contact sales at "
    "https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.")
_ANTHROPIC_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
    429: "rate_limit_error", 529: "overloaded_error"}
_GOOGLE_STATUS: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_GEMINI_429: Final = ("Resource exhausted. Please try again later. Please refer to https://cloud."
                      "google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.")

OPENAI: Final = Flavor(
    lambda status, kind, msg, seq: {"error": dict(zip(
        ("message", "type", "param", "code"),
        (msg, *_OPENAI_TYPES.get(kind, ("server_error", None))[:1], None,
         _OPENAI_TYPES.get(kind, ("", None))[1]), strict=True))},
    _OPENAI_MESSAGES, {})
ANTHROPIC: Final = Flavor(
    lambda status, kind, msg, seq: {
        "type": "error",
        "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": msg},
        "request_id": f"req_fake{seq:016d}"},
    {"invalid_key": "invalid x-api-key", "no_key": "x-api-key header is required",
     "requests": "This request would exceed the rate limit for your organization of {limit} "
                 "requests per minute. Please try again later.",
     "tokens": _ANTHROPIC_TOKENS, "too_large": _ANTHROPIC_TOKENS,
     "random": "Number of concurrent connections has exceeded your rate limit. Please try again "
               "later.",
     "server": "Internal server error", "529": "Overloaded"},
    {}, should_retry_header=True)
GEMINI: Final = Flavor(
    lambda status, kind, msg, seq: {"error": {
        "code": status, "message": msg, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}},
    {"invalid_key": "API key not valid. Please pass a valid API key.",
     "no_key": "Method doesn't allow unregistered callers (callers without established identity). "
               "Please use API Key or other form of API consumer identity to call this API.",
     **dict.fromkeys(("requests", "tokens", "too_large", "random"), _GEMINI_429),
     "server": "An internal error has occurred. Please retry or report in "
               "https://developers.generativeai.google/guide/troubleshooting",
     "503": "The model is overloaded. Please try again later."},
    {"invalid_key": 400, "no_key": 403})
COHERE: Final = Flavor(
    lambda status, kind, msg, seq: {"id": f"00000000-0000-4000-8000-{seq:012d}", "message": msg},
    {"invalid_key": "invalid api token"}, {})
OLLAMA: Final = Flavor(
    lambda status, kind, msg, seq: {"error": msg},
    {"invalid_key": "unauthorized", "no_key": "unauthorized",
     "503": "server busy, please try again.  maximum pending requests exceeded"}, {})


class _Fields(dict[str, object]):
    def __missing__(self, name: str) -> str:
        return ""


def status_for(kind: str, flavor: Flavor) -> int:
    if kind.isdigit():
        return int(kind)
    if kind in ("invalid_key", "no_key"):
        return flavor.auth_status.get(kind, 401)
    return {"bad_request": 400, "not_found": 404, "shutdown": 503}.get(kind, 429)


def error_body(flavor: Flavor, kind: str, status: int, seq: int,
               fields: Mapping[str, object]) -> bytes:
    template = flavor.messages.get(kind) or DEFAULT_MESSAGES.get(kind) or (
        flavor.messages.get("server") or DEFAULT_MESSAGES["server"])
    return _encode(flavor.envelope(status, kind, template.format_map(_Fields(fields)), seq))


# -- per-key rate limits -----------------------------------------------------------------------
class Bucket:
    """A token bucket holding up to one minute's allowance, refilled continuously."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = per_minute
        self.level = float(per_minute)
        self.rate = per_minute / 60.0
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)

    def reset_in(self) -> float:
        return (self.capacity - self.level) / self.rate


class Denial(NamedTuple):
    kind: str
    """`requests`, `tokens` or `too_large` (one request costs more than a minute's tokens)."""
    wait: float
    limit: int
    used: int
    requested: int


class Limits:
    """Requests and tokens per minute for each API key."""

    def __init__(self, rpm: int, tpm: int) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._keys: dict[str, tuple[Bucket | None, Bucket | None]] = {}

    def buckets(self, key: str, now: float) -> tuple[Bucket | None, Bucket | None]:
        pair = self._keys.get(key)
        if pair is None:
            pair = self._keys[key] = (Bucket(self.rpm, now) if self.rpm else None,
                                      Bucket(self.tpm, now) if self.tpm else None)
        for bucket in pair:
            if bucket is not None:
                bucket.refill(now)
        return pair

    def acquire(self, key: str, tokens: int, now: float) -> Denial | None:
        """Take one request and `tokens` from the key's buckets, or say why not."""
        if not (self.rpm or self.tpm):
            return None
        req, tok = self.buckets(key, now)
        if tok is not None and tokens > tok.capacity:
            return Denial("too_large", 0.0, tok.capacity, 0, tokens)
        for kind, bucket, amount in (("requests", req, 1), ("tokens", tok, tokens)):
            if bucket is not None and bucket.level < amount:
                used = round(bucket.capacity - bucket.level)
                return Denial(kind, bucket.wait(amount), bucket.capacity, used, amount)
        for bucket, amount in ((req, 1), (tok, tokens)):
            if bucket is not None:
                bucket.level -= amount
        return None

    def headers(self, key: str, mode: HeaderMode, now: float) -> dict[str, str]:
        if mode == "none" or not (self.rpm or self.tpm):
            return {}
        out: dict[str, str] = {}
        wall = time.time()
        for name, bucket in zip(("requests", "tokens"), self.buckets(key, now), strict=True):
            if bucket is None:
                continue
            if mode == "openai":
                out[f"x-ratelimit-limit-{name}"] = str(bucket.capacity)
                out[f"x-ratelimit-remaining-{name}"] = str(int(bucket.level))
                out[f"x-ratelimit-reset-{name}"] = go_duration(bucket.reset_in())
            else:
                out[f"anthropic-ratelimit-{name}-limit"] = str(bucket.capacity)
                out[f"anthropic-ratelimit-{name}-remaining"] = str(int(bucket.level))
                out[f"anthropic-ratelimit-{name}-reset"] = rfc3339(wall + bucket.reset_in())
        return out


# -- statistics --------------------------------------------------------------------------------
class Stats:
    """What the fake saw; `GET /_stats` renders `snapshot()`."""

    def __init__(self, fingerprints: bool) -> None:
        self.fingerprints = fingerprints
        self.in_flight = 0
        self.clear()

    def clear(self) -> None:
        self.total = self.rate_limited = self.hung = self.tokens = self.inputs = 0
        self.max_in_flight = self.in_flight
        self.by_status: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.by_key: Counter[str] = Counter()
        self.rate_limited_by_key: Counter[str] = Counter()
        self.bodies: Counter[bytes] = Counter()
        self.ok_bodies: Counter[bytes] = Counter()

    def arrive(self, path: str, key: str, body: bytes) -> bytes:
        self.total += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.by_path[path] += 1
        self.by_key[key] += 1
        if not self.fingerprints:
            return b""
        fingerprint = hashlib.blake2b(path.encode() + b"\n" + body, digest_size=8).digest()
        self.bodies[fingerprint] += 1
        return fingerprint

    def finish(self, status: int | str, key: str, fingerprint: bytes, reply: Reply | None) -> None:
        self.in_flight -= 1
        self.by_status[str(status)] += 1
        if status == 429:
            self.rate_limited += 1
            self.rate_limited_by_key[key] += 1
        if reply is not None and status == 200:
            self.tokens += reply.tokens
            self.inputs += reply.inputs
            if fingerprint:
                self.ok_bodies[fingerprint] += 1

    def snapshot(self, full: bool = False) -> dict[str, object]:
        repeated = {fp.hex(): n for fp, n in self.bodies.items() if n > 1}
        doc: dict[str, object] = {
            "total": self.total, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
            "by_status": dict(self.by_status), "by_path": dict(self.by_path),
            "by_key": dict(self.by_key), "rate_limited": self.rate_limited,
            "rate_limited_by_key": dict(self.rate_limited_by_key), "hung": self.hung,
            "tokens": self.tokens, "inputs": self.inputs, "distinct_bodies": len(self.bodies),
            "dupes": len(repeated), "dupes_ok": sum(1 for n in self.ok_bodies.values() if n > 1),
            "duplicates": dict(list(repeated.items())[:1000]),
            "cpu_s": round(time.process_time(), 3),
        }
        if full:
            doc["fingerprints"] = {fp.hex(): n for fp, n in self.bodies.items()}
        return doc


# -- the server --------------------------------------------------------------------------------
class FakeState:
    """Everything one running fake provider holds."""

    def __init__(self, config: FakeConfig) -> None:
        self.stats = Stats(config.fingerprints)
        self.stopping = asyncio.Event()
        self.seq = 0
        self.configure(config)

    def configure(self, config: FakeConfig) -> None:
        self.config = config
        self.answers = Answers(config)
        self.limits = Limits(config.rpm, config.tpm)
        self.rng = random.Random(config.seed)
        self.stats.fingerprints = config.fingerprints

    def reset(self) -> None:
        self.stats.clear()
        self.limits = Limits(self.config.rpm, self.config.tpm)

    def chance(self, p: float) -> bool:
        return p > 0.0 and self.rng.random() < p

    async def delay(self) -> None:
        seconds = self.config.latency
        if self.config.latency_jitter:
            seconds += self.rng.uniform(0.0, self.config.latency_jitter)
        if seconds > 0:
            await asyncio.sleep(seconds)

    def error(self, flavor: Flavor, kind: str, headers: Mapping[str, str] | None = None,
              **fields: object) -> web.Response:
        status = status_for(kind, flavor)
        out = {"Content-Type": "application/json", **(headers or {})}
        if flavor.should_retry_header and status >= 429:
            out["x-should-retry"] = "true"
        body = error_body(flavor, kind, status, self.seq, fields)
        return web.Response(body=body, status=status, headers=out)

    def rate_limited(self, flavor: Flavor, denial: Denial, model: str,
                     headers: dict[str, str]) -> web.Response:
        if self.config.retry_after > 0:
            headers["retry-after"] = seconds_text(self.config.retry_after)
        return self.error(flavor, denial.kind, headers, model=model, limit=denial.limit,
                          used=denial.used, requested=denial.requested,
                          wait=go_duration(denial.wait))


class Endpoint(NamedTuple):
    method: str
    paths: tuple[str, ...]
    flavor: Flavor
    answer: Callable[[Answers, Call], Reply]
    metered: bool = True
    """Subject to limits and chaos; listings are not (they only check the key)."""


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint("POST", ("/v1/chat/completions", "/chat/completions"), OPENAI, Answers.openai_chat),
    Endpoint("POST", ("/v1/embeddings", "/embeddings"), OPENAI, Answers.openai_embeddings),
    Endpoint("GET", ("/v1/models", "/models"), OPENAI, Answers.openai_models, metered=False),
    Endpoint("POST", ("/v1/messages",), ANTHROPIC, Answers.anthropic_messages),
    Endpoint("POST", ("/v1beta/models/{target}",), GEMINI, Answers.gemini),
    Endpoint("POST", ("/api/chat",), OLLAMA, Answers.ollama_chat),
    Endpoint("POST", ("/api/embed",), OLLAMA, Answers.ollama_embed),
    Endpoint("GET", ("/api/tags",), OLLAMA, Answers.ollama_tags, metered=False),
    Endpoint("POST", ("/v2/chat",), COHERE, Answers.cohere_chat),
    Endpoint("POST", ("/v2/embed",), COHERE, Answers.cohere_embed),
)
STATE: Final = web.AppKey("fake_provider_state", FakeState)


def api_key(request: web.Request) -> str:
    """The caller's key: `Authorization: Bearer`, `x-api-key`, `x-goog-api-key` or `?key=`."""
    headers = request.headers
    if auth := headers.get("Authorization"):
        return auth[7:] if auth[:7].lower() == "bearer " else auth
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or request.query.get("key", "")


def ok(reply: Reply, headers: Mapping[str, str] | None = None) -> web.Response:
    out = {"Content-Type": reply.content_type}
    if reply.headers or headers:
        out.update(reply.headers or {}, **(headers or {}))
    return web.Response(body=reply.body, headers=out)


async def respond(state: FakeState, endpoint: Endpoint, request: web.Request, body: bytes,
                  key: str) -> tuple[web.Response, Reply | None]:
    """auth, hang, answer (400 if unreadable), random 429, limits, latency, 5xx, else 200."""
    config, flavor = state.config, endpoint.flavor
    if config.require_key is not None and key != config.require_key:
        return state.error(flavor, "invalid_key" if key else "no_key", key=key_hint(key)), None
    if endpoint.metered and state.chance(config.hang_rate):
        state.stats.hung += 1
        await state.stopping.wait()
        return state.error(flavor, "shutdown"), None
    state.seq += 1
    try:
        reply = endpoint.answer(state.answers, Call(body, request.match_info, state.seq))
    except Reject as exc:
        return state.error(flavor, exc.kind, detail=str(exc)), None
    if not endpoint.metered:
        return ok(reply), reply
    if state.chance(config.random_429):
        return state.error(flavor, "random", {"retry-after": "1"}, model=reply.model), None
    now = time.monotonic()
    denial = state.limits.acquire(key, reply.tokens, now)
    headers = state.limits.headers(key, config.headers, now)
    if denial is not None:
        return state.rate_limited(flavor, denial, reply.model, headers), None
    if config.latency or config.latency_jitter:
        await state.delay()
    if state.chance(config.fail_rate):
        return state.error(flavor, str(config.fail_status)), None
    return ok(reply, headers), reply


def handler(state: FakeState, endpoint: Endpoint) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        key = api_key(request)
        fingerprint = state.stats.arrive(request.path, key, body)
        try:
            response, reply = await respond(state, endpoint, request, body, key)
        except asyncio.CancelledError:
            state.stats.finish("cancelled", key, fingerprint, None)
            raise
        state.stats.finish(response.status, key, fingerprint, reply)
        return response

    return handle


async def get_stats(request: web.Request) -> web.Response:
    full = request.query.get("fingerprints", "") not in ("", "0", "false")
    return web.json_response(request.app[STATE].stats.snapshot(full))


async def post_reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def get_config(request: web.Request) -> web.Response:
    return web.Response(body=_encode(request.app[STATE].config), content_type="application/json")


async def post_config(request: web.Request) -> web.Response:
    """Change options at run time, e.g. `{"fail_rate": 1.0}`; limits restart from full buckets."""
    state = request.app[STATE]
    try:
        patch = msgspec.json.decode(await request.read(), type=dict[str, Any])
        config = msgspec.convert({**msgspec.structs.asdict(state.config), **patch}, FakeConfig)
    except (msgspec.DecodeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.configure(msgspec.structs.replace(config, port=state.config.port))
    return await get_config(request)


async def on_shutdown(app: web.Application) -> None:
    app[STATE].stopping.set()


def build_app(config: FakeConfig | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 2**20)
    state = app[STATE] = FakeState(config or FakeConfig())
    for endpoint in ENDPOINTS:
        for path in endpoint.paths:
            app.router.add_route(endpoint.method, path, handler(state, endpoint))
    app.router.add_get("/_stats", get_stats)
    app.router.add_post("/_reset", post_reset)
    app.router.add_get("/_config", get_config)
    app.router.add_post("/_config", post_config)
    app.on_shutdown.append(on_shutdown)
    return app


async def start_fake_provider(config: FakeConfig | None = None) -> tuple[web.AppRunner, int]:
    """Serve on 127.0.0.1 (port 0: any free port) in the running loop; stop: `runner.cleanup()`."""
    config = config or FakeConfig()
    runner = web.AppRunner(build_app(config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, HOST, config.port, backlog=4096)
    await site.start()
    port: int = runner.addresses[0][1]
    return runner, port


def state_of(runner: web.AppRunner) -> FakeState:
    """The in-process state (stats, limits, config) of a fake started by `start_fake_provider`."""
    return runner.app[STATE]


# -- running it from tests ---------------------------------------------------------------------
class _Control:
    """`stats()`, `reset()`, `configure()` over HTTP, for a fake in another thread or process."""

    port: int = 0

    @property
    def url(self) -> str:
        """Root URL: OpenAI base URL is `url + "/v1"`, Gemini `url + "/v1beta"`."""
        return f"http://{HOST}:{self.port}"

    def _call(self, method: str, path: str, doc: object = None) -> Any:
        data = None if doc is None else _encode(doc)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.load(response)

    def stats(self, fingerprints: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_stats" + ("?fingerprints=1" * fingerprints))
        return result

    def reset(self) -> None:
        self._call("POST", "/_reset", {})

    def configure(self, **changes: object) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/_config", changes)
        return result


class FakeProvider(_Control):
    """A fake provider on a background thread: `with FakeProvider(FakeConfig(rpm=60)) as fake:`."""

    def __init__(self, config: FakeConfig | None = None, start_timeout: float = 10.0) -> None:
        self.config = config or FakeConfig()
        self.start_timeout = start_timeout
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        if not self._ready.wait(self.start_timeout) or self._error is not None:
            self.close()
            raise RuntimeError(f"fake provider did not start: {self._error!r}")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by __enter__, never as a thread warning
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        runner, self.port = await start_fake_provider(self.config)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()


class FakeProviderProcess(_Control):
    """`python -m bench.fake_provider` as a child process; flags as on the command line.

    `with FakeProviderProcess(tmp_path / "port", "--rpm", "60") as fake: fake.url`
    """

    def __init__(self, port_file: Path, *flags: str, start_timeout: float = 15.0) -> None:
        self.port_file = Path(port_file)
        self.log_file = self.port_file.with_name(self.port_file.name + ".log")
        self.flags = flags
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FakeProviderProcess:
        self.port_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        command = [sys.executable, "-m", "bench.fake_provider", "--port", "0", "--port-file",
                   str(self.port_file), "--exit-with-parent", *self.flags]
        with open(self.log_file, "wb") as log:  # a file, not a pipe: a full pipe would block it
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=log)
        self.port = self._wait_for_port()
        return self

    def _wait_for_port(self) -> int:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.port_file.exists():
                return int(self.port_file.read_text())
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.__exit__(None, None, None)
        raise RuntimeError(f"fake provider did not start: {self.stderr()}")

    def stderr(self) -> str:
        """The last lines the child wrote to stderr (kept beside the port file)."""
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")[-2000:]
        return ""

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# -- command line ------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fake_provider", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--port", type=int, default=0, help="Port on 127.0.0.1 (0 = any free port).")
    add("--port-file", type=Path, help="Write the bound port here once listening (atomically).")
    add("--latency", type=float, default=0.0, help="Seconds before each answer.")
    add("--latency-jitter", type=float, default=0.0, help="Plus uniform 0..S seconds.")
    add("--rpm", type=int, default=0, help="Requests per minute per API key (0 = unlimited).")
    add("--tpm", type=int, default=0, help="Tokens per minute per API key (0 = unlimited).")
    add("--headers", choices=("none", "openai", "anthropic"), default="none",
        help="Rate-limit headers to send (needs --rpm and/or --tpm).")
    add("--retry-after", type=float, default=0.0, help="retry-after seconds on limit 429s.")
    add("--random-429", type=float, default=0.0, help="Fraction answered 429 (retry-after: 1).")
    add("--fail-rate", type=float, default=0.0, help="Fraction answered --fail-status.")
    add("--fail-status", type=int, choices=FAIL_STATUSES, default=500)
    add("--require-key", help="Only this key is accepted (else 401 with the provider's body).")
    add("--hang-rate", type=float, default=0.0, help="Fraction never answered.")
    add("--seed", type=int, help="Seed for every random choice.")
    add("--no-echo", dest="echo", action="store_false", help="Sample text instead of echo.")
    add("--embedding-dim", "--dim", type=int, default=8, help="Default embedding size.")
    add("--models", default="gpt-4o-mini,text-embedding-3-small", help="GET /v1/models list.")
    add("--no-fingerprints", dest="fingerprints", action="store_false",
        help="Do not hash bodies (no duplicate counting; flat memory for long runs).")
    add("--exit-with-parent", action="store_true", help="Stop when the parent process dies.")
    return p


def config_from(args: argparse.Namespace) -> FakeConfig:
    values = {k: v for k, v in vars(args).items() if k not in ("port_file", "exit_with_parent")}
    values["models"] = tuple(m for m in values["models"].split(",") if m)
    return FakeConfig(**values)


def write_port_file(path: Path, port: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{port}\n")
    os.replace(temporary, path)


async def watch_parent(stop: asyncio.Event) -> None:
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
        await asyncio.sleep(1.0)


async def serve(config: FakeConfig, port_file: Path | None, exit_with_parent: bool) -> None:
    runner, port = await start_fake_provider(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(watch_parent(stop)) if exit_with_parent else None
    if port_file is not None:
        write_port_file(port_file, port)
    print(f"fake provider listening on http://{HOST}:{port}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        config = config_from(args)
    except ValueError as exc:
        p.error(str(exc))
    asyncio.run(serve(config, args.port_file, args.exit_with_parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
