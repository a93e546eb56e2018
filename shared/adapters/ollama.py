"""Ollama's native API: `/api/chat` (`stream: false`), `/api/embed`, and `/api/tags`.

No auth locally; a configured key (ollama.com) is sent as a Bearer token. Sampling settings go in
`options` (`num_predict` is the output cap). Usage is `prompt_eval_count`/`eval_count`. Errors are
`{"error": "text"}`; a 503 means the queue is full and is retried.
"""

from __future__ import annotations

from typing import Any, Final

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
from shared.adapters.openai import (
    ContentPart,
    chat_body,
    embeddings_body,
    error_payload,
    json_schema_of,
    max_tokens_of,
    parts_text,
    reject_unsupported,
    response_format_type,
    split_system,
    stop_sequences,
    text_inputs,
    usage_of,
)
from shared.errors import BadRequestError, ProviderError, ResponseFormatError

FINISH_REASONS: Final[dict[str, str]] = {"stop": "stop", "length": "length", "load": "stop"}
_OPTION_KEYS: Final = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("seed", "seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
)


class OllamaAdapter:
    name = "ollama"
    max_embed_inputs = 0
    """Ollama documents no per-call cap on `/api/embed`."""

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        return bearer_json_headers(endpoint.api_key)

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        reject_unsupported(body, self.name, json_output=True)
        payload = chat_payload(model, body, self.name)
        url = join_url(native_base(endpoint.base_url), "/api/chat")
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        if not isinstance(data, dict):
            raise ResponseFormatError("chat answer is not an object", provider=self.name)
        if "error" in data:
            raise self.parse_error(500, headers, content)
        text = answer_text(data, self.name)
        usage = usage_of(data.get("prompt_eval_count"), data.get("eval_count"))
        answered = str(data.get("model") or model)
        request_id = header(headers, "x-request-id") or ""
        finish = finish_reason(data)
        body = chat_body(
            id=request_id, model=answered, content=text, finish_reason=finish, usage=usage
        )
        return Parsed(body, usage, answered, request_id, data)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        payload: dict[str, Any] = {"model": model, "input": text_inputs(inputs, self.name)}
        for key in ("dimensions", "truncate", "keep_alive"):
            if body.get(key) is not None:
                payload[key] = body[key]
        url = join_url(native_base(endpoint.base_url), "/api/embed")
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list):
            raise ResponseFormatError("embed answer has no `embeddings` list", provider=self.name)
        usage = usage_of(data.get("prompt_eval_count"), 0)
        answered = str(data.get("model") or model)
        body = embeddings_body(vectors, answered, usage)
        return Parsed(body, usage, answered, header(headers, "x-request-id") or "", data)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        message, code = error_text(error_payload(content, self.name))
        return error_from_status(status, message, provider=self.name, code=code)

    def build_tags(self, endpoint: Endpoint) -> HttpRequest:
        """`GET /api/tags`: the models this server has (or ollama.com offers)."""
        url = join_url(native_base(endpoint.base_url), "/api/tags")
        return HttpRequest("GET", url, self.headers(endpoint))

    def parse_tags(self, content: bytes) -> list[str]:
        return parse_tags(content)


def parse_tags(content: bytes) -> list[str]:
    """Model names (with tags, e.g. `gemma3n:e2b`) from a `/api/tags` answer."""
    data = load_json(content, provider="ollama")
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ResponseFormatError("tags answer has no `models` list", provider="ollama")
    names = (m.get("name") or m.get("model") for m in models if isinstance(m, dict))
    return [str(name) for name in names if name]


def native_base(base_url: str) -> str:
    """The server root: a base URL given with `/v1` (OpenAI-compat) or `/api` is cut back."""
    base = base_url.rstrip("/")
    for suffix in ("/v1", "/api"):
        base = base.removesuffix(suffix)
    return base


def chat_payload(model: str, body: dict[str, Any], provider: str) -> dict[str, Any]:
    system, turns = split_system(body.get("messages"), provider)
    messages = [{"role": "system", "content": system}] if system else []
    messages += [ollama_message(role, parts, provider) for role, parts in turns]
    payload: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
    if options := chat_options(body):
        payload["options"] = options
    if (output_format := format_of(body)) is not None:
        payload["format"] = output_format
    if body.get("keep_alive") is not None:
        payload["keep_alive"] = body["keep_alive"]
    return payload


def ollama_message(role: str, parts: list[ContentPart], provider: str) -> dict[str, Any]:
    """Text joined into `content`; images (base64 data URLs only) into `images`."""
    images = [part.data for part in parts if part.kind == "image" and part.data]
    if any(part.kind == "image" and not part.data for part in parts):
        raise BadRequestError("Ollama takes images as base64 data URLs", provider=provider)
    text = parts_text([part for part in parts if part.kind == "text"], provider)
    message: dict[str, Any] = {"role": role, "content": text}
    if images:
        message["images"] = images
    return message


def chat_options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if (max_tokens := max_tokens_of(body)) is not None:
        options["num_predict"] = max_tokens
    if stops := stop_sequences(body):
        options["stop"] = stops
    for ours, theirs in _OPTION_KEYS:
        if body.get(ours) is not None:
            options[theirs] = body[ours]
    return options


def format_of(body: dict[str, Any]) -> Any:
    """`format`: a JSON schema for `json_schema`, `"json"` for `json_object`, else None."""
    if (schema := json_schema_of(body)) is not None:
        return schema
    return "json" if response_format_type(body) in ("json_object", "json_schema") else None


def answer_text(data: dict[str, Any], provider: str) -> str:
    """`message.content` (`/api/chat`), or `response` (the `/api/generate` shape)."""
    message = data.get("message")
    if isinstance(message, dict):
        return str(message.get("content") or "")
    if isinstance(data.get("response"), str):
        return str(data["response"])
    raise ResponseFormatError("answer has neither `message` nor `response`", provider=provider)


def finish_reason(data: dict[str, Any]) -> str | None:
    message = data.get("message")
    if isinstance(message, dict) and message.get("tool_calls"):
        return "tool_calls"
    reason = data.get("done_reason")
    if reason is None:
        return "stop" if data.get("done") else None
    return FINISH_REASONS.get(str(reason), "stop")
