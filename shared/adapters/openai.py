"""OpenAI Chat Completions and Embeddings, and every OpenAI-compatible server (a registry row each).

Known deviations handled here: whitespace before the JSON (OpenRouter, DeepSeek), integer or string
`error.code` (OpenRouter, vLLM, Mistral), flat error bodies (older vLLM, TGI `{"error": str}`),
embeddings returned out of order or base64-encoded, an error object inside a 200 body (OpenRouter),
and an SSE stream returned although `stream: false` was sent.

The module also holds the helpers every other adapter uses to read an OpenAI-shaped request
(`message_parts`, `split_system`, `reject_unsupported`, ...) and to write an OpenAI-shaped answer
(`chat_body`, `embeddings_body`).
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Iterator
from typing import Any, Final, Literal

import msgspec

from shared.adapters._wire import (
    bearer_json_headers,
    dump_json,
    error_from_status,
    error_text,
    header,
    join_url,
    load_json,
)
from shared.adapters.base import Endpoint, HttpRequest, Parsed
from shared.errors import (
    BadRequestError,
    ProviderError,
    QuotaExceededError,
    ResponseFormatError,
)
from shared.ratelimit import parse_duration, retry_hint_from_body
from shared.schema import Usage


class OpenAIAdapter:
    """Bearer auth, `/chat/completions` and `/embeddings` under the base URL."""

    name = "openai"
    max_embed_inputs = 2048

    def __init__(
        self,
        *,
        chat_path: str = "/chat/completions",
        embeddings_path: str = "/embeddings",
        max_embed_inputs: int = 2048,
    ) -> None:
        self.chat_path = chat_path
        self.embeddings_path = embeddings_path
        self.max_embed_inputs = max_embed_inputs

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = bearer_json_headers(endpoint.api_key)
        for name in ("organization", "project"):
            if value := endpoint.options.get(name):
                headers[f"openai-{name}"] = value
        return headers

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        path = endpoint.options.get("chat_path", self.chat_path)
        payload = {**body, "model": model, "stream": False}
        payload.pop("stream_options", None)
        url = join_url(endpoint.base_url, path)
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        if is_sse(content):
            data = collect_chat_stream(content, self.name)
        else:
            data = load_json(content, provider=self.name)
        if isinstance(data, dict) and "choices" not in data and "error" in data:
            raise self.parse_error(status_in_body(data), headers, content)
        if not isinstance(data, dict) or "choices" not in data:
            raise ResponseFormatError("chat response has no `choices`", provider=self.name)
        normalise_choices(data)
        usage = openai_usage(data.get("usage"))
        answered = str(data.get("model") or model)
        return Parsed(data, usage, answered, request_id_of(headers, data), data)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        path = endpoint.options.get("embeddings_path", self.embeddings_path)
        payload = {**body, "model": model, "input": inputs}
        url = join_url(endpoint.base_url, path)
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ResponseFormatError("embeddings response has no `data` list", provider=self.name)
        items = sorted(data["data"], key=lambda item: item.get("index", 0))
        vectors = [decode_embedding(item.get("embedding")) for item in items]
        usage = openai_usage(data.get("usage"))
        body = embeddings_body(vectors, str(data.get("model") or model), usage)
        return Parsed(body, usage, body["model"], request_id_of(headers, data), data)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        payload = error_payload(content, self.name)
        message, code = error_text(payload)
        message = with_upstream_detail(payload, message)
        error = error_from_status(status, message, provider=self.name, code=code)
        if error.retryable:
            error.retry_after = retry_hint(message)
        return obey_should_retry(error, headers)


# --- answers -------------------------------------------------------------------------------------


def normalise_choices(data: dict[str, Any]) -> None:
    """Fill what some compatible servers leave out: `object`, each choice's `index` and
    `finish_reason` (OpenRouter's padded answers have none)."""
    data.setdefault("object", "chat.completion")
    for position, choice in enumerate(data.get("choices") or []):
        if isinstance(choice, dict):
            choice.setdefault("index", position)
            choice.setdefault("finish_reason", None)


def openai_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    return Usage(prompt, completion, int(raw.get("total_tokens") or prompt + completion))


def request_id_of(headers: dict[str, str], data: dict[str, Any]) -> str:
    for name in ("x-request-id", "request-id", "mistral-correlation-id", "inference-id"):
        if value := header(headers, name):
            return value
    return str(data.get("id") or "")


def decode_embedding(value: Any) -> list[float]:
    """Floats as they are; a base64 string as little-endian float32 (OpenAI `encoding_format`)."""
    if isinstance(value, str):
        raw = base64.b64decode(value)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if isinstance(value, list):
        return value
    raise ResponseFormatError("embedding is neither a list nor base64")


def embeddings_body(vectors: list[list[float]], model: str, usage: Usage) -> dict[str, Any]:
    """The OpenAI embeddings `list` every adapter returns, in input order."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
    }


def chat_body(
    *, id: str, model: str, content: str, finish_reason: str | None, usage: Usage, created: int = 0
) -> dict[str, Any]:
    """The OpenAI `chat.completion` body non-OpenAI adapters build from their own answers."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


def collect_text_blocks(blocks: Any) -> str:
    """The text of content blocks with `type: "text"` (Anthropic, Cohere) or no type (Bedrock).

    Thinking/reasoning and tool blocks are skipped.
    """
    if not isinstance(blocks, list):
        return ""
    texts = [
        str(block.get("text") or "")
        for block in blocks
        if isinstance(block, dict) and block.get("type", "text") == "text"
    ]
    return "".join(texts)


def usage_of(prompt: Any, completion: Any, total: Any = None) -> Usage:
    """A `Usage` from loosely typed counts (missing → 0; total defaults to the sum)."""
    p, c = int(prompt or 0), int(completion or 0)
    return Usage(p, c, int(total or p + c))


# --- errors --------------------------------------------------------------------------------------


def error_payload(content: bytes, provider: str) -> Any:
    """The parsed error body, or its first 500 characters as text when it is not JSON."""
    try:
        return load_json(content, provider=provider)
    except ResponseFormatError:
        return content[:500].decode("utf-8", "replace").strip()


def status_in_body(data: dict[str, Any]) -> int:
    """The HTTP status an error object inside a 200 body stands for (OpenRouter: integer code)."""
    inner = data.get("error")
    code = inner.get("code") if isinstance(inner, dict) else None
    if isinstance(code, int) and 400 <= code <= 599:
        return code
    return 502


def with_upstream_detail(payload: Any, message: str) -> str:
    """OpenRouter's `error.metadata.raw` (the upstream provider's text) appended to its message."""
    inner = payload.get("error") if isinstance(payload, dict) else None
    metadata = inner.get("metadata") if isinstance(inner, dict) else None
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    if isinstance(raw, str) and raw and raw not in message:
        return f"{message}: {raw[:500]}" if message else raw[:500]
    return message


def duration_seconds(text: str) -> float | None:
    """A Go/protobuf duration (`59s`, `1.574s`, `644ms`, `2m59.56s`) in seconds; None if not one."""
    return parse_duration(text) if text.strip() and text.strip()[-1].isalpha() else None


def retry_hint(message: str) -> float | None:
    """The wait a message asks for: OpenAI `Please try again in 1.574s`, Gemini `retry in 45.5s`."""
    return retry_hint_from_body(message)


def obey_should_retry(error: ProviderError, headers: dict[str, str]) -> ProviderError:
    """`x-should-retry` (OpenAI, Anthropic) wins, except that a quota error is never retried."""
    value = (header(headers, "x-should-retry") or "").strip().lower()
    if value == "false":
        error.retryable = False
    elif value == "true" and not isinstance(error, QuotaExceededError):
        error.retryable = True
    return error


# --- reading OpenAI-shaped requests --------------------------------------------------------------


class ContentPart(msgspec.Struct, frozen=True):
    """One piece of a message: text, or an image as a data URL's (mime, base64) or a plain URL."""

    kind: Literal["text", "image"]
    text: str = ""
    mime: str = ""
    data: str = ""
    url: str = ""


_UNSUPPORTED_KEYS: Final = ("tools", "functions", "function_call", "audio", "prediction")


def reject_unsupported(body: dict[str, Any], provider: str, *, json_output: bool = False) -> None:
    """Refuse request fields whose loss would change the answer (tools, n > 1, logprobs, ...).

    Sampling hints a provider lacks (`seed`, penalties) are dropped silently; these are not.
    """
    found = [key for key in _UNSUPPORTED_KEYS if body.get(key)]
    if body.get("tool_choice") not in (None, "none"):
        found.append("tool_choice")
    if body.get("logprobs"):
        found.append("logprobs")
    if int(body.get("n") or 1) > 1:
        found.append("n")
    if response_format_type(body) not in (None, "text") and not json_output:
        found.append("response_format")
    if found:
        fields = ", ".join(found)
        raise BadRequestError(
            f"the {provider} adapter does not support {fields}; remove it or use another provider",
            provider=provider,
            code="unsupported_parameter",
        )


def response_format_type(body: dict[str, Any]) -> str | None:
    value = body.get("response_format")
    if isinstance(value, dict):
        return str(value.get("type") or "text")
    return None


def json_schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of `response_format: {"type": "json_schema", "json_schema": {"schema": ...}}`."""
    value = body.get("response_format")
    spec = value.get("json_schema") if isinstance(value, dict) else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def max_tokens_of(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value else None


def stop_sequences(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [str(s) for s in stop] if isinstance(stop, list) else []


def split_system(messages: Any, provider: str) -> tuple[str, list[tuple[str, list[ContentPart]]]]:
    """(system text, [(role, parts)]) with system/developer messages joined and lifted out."""
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("chat request has no `messages`", provider=provider)
    system: list[str] = []
    turns: list[tuple[str, list[ContentPart]]] = []
    for message in messages:
        role = message_role(message, provider)
        parts = message_parts(message.get("content"), provider)
        if role == "system":
            system.append(parts_text(parts, provider))
        else:
            turns.append((role, parts))
    return "\n\n".join(s for s in system if s), turns


def message_role(message: Any, provider: str) -> str:
    """`system`, `user` or `assistant`; tool traffic is refused (no adapter here translates it)."""
    if not isinstance(message, dict):
        raise BadRequestError("each message must be an object", provider=provider)
    role = str(message.get("role") or "")
    if role in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
        message_text = f"the {provider} adapter does not support tool messages"
        raise BadRequestError(message_text, provider=provider)
    if role == "developer":
        return "system"
    if role not in ("system", "user", "assistant"):
        raise BadRequestError(f"unknown message role {role!r}", provider=provider)
    return role


def message_parts(content: Any, provider: str) -> list[ContentPart]:
    """A message's content (a string or OpenAI content parts) as text and image parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [ContentPart("text", text=content)]
    if isinstance(content, list):
        return [_content_part(part, provider) for part in content]
    raise BadRequestError("message content must be a string or a list of parts", provider=provider)


def _content_part(part: Any, provider: str) -> ContentPart:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return ContentPart("text", text=str(part.get("text") or ""))
    if kind == "image_url":
        image = part.get("image_url")
        url = str(image.get("url") if isinstance(image, dict) else image or "")
        return image_part(url, provider)
    raise BadRequestError(
        f"the {provider} adapter supports text and image_url content parts, not {kind!r}",
        provider=provider,
    )


def image_part(url: str, provider: str) -> ContentPart:
    """An image from a `data:<mime>;base64,<data>` URL (kept split) or any other URL."""
    if not url.startswith("data:"):
        return ContentPart("image", url=url)
    head, _, data = url[5:].partition(",")
    mime, _, encoding = head.partition(";")
    if encoding != "base64" or not data:
        raise BadRequestError("image data URLs must be base64-encoded", provider=provider)
    return ContentPart("image", mime=mime or "application/octet-stream", data=data)


def parts_text(parts: list[ContentPart], provider: str) -> str:
    """The text of parts that must be text only (system prompts, text-only providers)."""
    if any(part.kind != "text" for part in parts):
        raise BadRequestError(f"the {provider} adapter accepts only text here", provider=provider)
    return "".join(part.text for part in parts)


def text_inputs(inputs: list[Any], provider: str) -> list[str]:
    """Embedding inputs that must be strings (token-id arrays are OpenAI-only)."""
    if not all(isinstance(item, str) for item in inputs):
        raise BadRequestError(f"the {provider} adapter embeds strings only", provider=provider)
    return list(inputs)


# --- SSE (a server that streamed although `stream: false` was sent) ----------------------------


def is_sse(content: bytes) -> bool:
    head = content.lstrip()[:6]
    return head.startswith((b"data:", b"event:", b":"))


def sse_data(content: bytes) -> Iterator[str]:
    """Each event's `data` payload; comments (`: keep-alive`), blank lines and `[DONE]` skipped."""
    for block in re.split(r"\r?\n\r?\n", content.decode("utf-8", "replace")):
        lines = [line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")]
        data = "\n".join(lines).strip()
        if data and data != "[DONE]":
            yield data


def collect_chat_stream(content: bytes, provider: str) -> dict[str, Any]:
    """One `chat.completion` folded from a stream of `chat.completion.chunk`s."""
    result: dict[str, Any] = {"object": "chat.completion"}
    choices: dict[int, dict[str, Any]] = {}
    for data in sse_data(content):
        chunk = load_json(data.encode(), provider=provider)
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            return chunk
        _merge_chunk(result, choices, chunk)
    result["choices"] = [choices[i] for i in sorted(choices)]
    return result


def _merge_chunk(
    result: dict[str, Any], choices: dict[int, dict[str, Any]], chunk: dict[str, Any]
) -> None:
    for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
        if chunk.get(key) is not None:
            result[key] = chunk[key]
    if chunk.get("usage"):
        result["usage"] = chunk["usage"]
    for delta_choice in chunk.get("choices") or []:
        index = int(delta_choice.get("index") or 0)
        choice = choices.setdefault(index, _empty_choice(index))
        _merge_delta(choice["message"], delta_choice.get("delta") or {})
        if delta_choice.get("finish_reason"):
            choice["finish_reason"] = delta_choice["finish_reason"]


def _empty_choice(index: int) -> dict[str, Any]:
    message = {"role": "assistant", "content": None}
    return {"index": index, "message": message, "finish_reason": None}


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    if delta.get("content"):
        message["content"] = (message.get("content") or "") + delta["content"]
    for call in delta.get("tool_calls") or []:
        calls: list[dict[str, Any]] = message.setdefault("tool_calls", [])
        index = int(call.get("index") or 0)
        while len(calls) <= index:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        _merge_tool_call(calls[index], call)


def _merge_tool_call(target: dict[str, Any], call: dict[str, Any]) -> None:
    if call.get("id"):
        target["id"] = call["id"]
    function = call.get("function") or {}
    target["function"]["name"] += function.get("name") or ""
    target["function"]["arguments"] += function.get("arguments") or ""
