"""Anthropic Messages API (`POST /v1/messages`).

System messages become the top-level `system`; `max_tokens` is required (4096 when the request has
none). A key is sent as `x-api-key`; an OAuth access token (`sk-ant-oat01-…`) as a Bearer token
with the OAuth beta flag. Cache tokens are reported apart from `input_tokens`; they are added back
into `prompt_tokens` so usage means what it means for OpenAI. Anthropic has no embeddings API.
"""

from __future__ import annotations

from typing import Any, Final

from shared.adapters._wire import dump_json, error_text, header, join_url, load_json
from shared.adapters.base import Endpoint, HttpRequest, Parsed
from shared.adapters.openai import (
    ContentPart,
    chat_body,
    collect_text_blocks,
    error_payload,
    is_sse,
    max_tokens_of,
    obey_should_retry,
    reject_unsupported,
    split_system,
    sse_data,
    stop_sequences,
    usage_of,
)
from shared.errors import (
    BadRequestError,
    ProviderError,
    ResponseFormatError,
    ServerError,
    error_class_for_status,
)
from shared.schema import Usage

API_VERSION: Final = "2023-06-01"
OAUTH_PREFIX: Final = "sk-ant-oat01-"
OAUTH_BETA: Final = "oauth-2025-04-20"
DEFAULT_MAX_TOKENS: Final = 4096

FINISH_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicAdapter:
    name = "anthropic"
    max_embed_inputs = 0

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": endpoint.options.get("anthropic_version", API_VERSION),
        }
        betas = [b for b in endpoint.options.get("anthropic_beta", "").split(",") if b.strip()]
        key = endpoint.api_key or ""
        if key.startswith(OAUTH_PREFIX):
            headers["authorization"] = f"Bearer {key}"
            betas.append(OAUTH_BETA)
        elif key:
            headers["x-api-key"] = key
        if betas:
            headers["anthropic-beta"] = ",".join(b.strip() for b in betas)
        return headers

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        reject_unsupported(body, self.name)
        payload = messages_payload(model, body, self.name)
        url = join_url(endpoint.base_url, messages_path(endpoint.base_url))
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = (
            collect_stream(content) if is_sse(content) else load_json(content, provider=self.name)
        )
        if not isinstance(data, dict) or data.get("type") == "error":
            raise self._body_error(data)
        if not isinstance(data.get("content"), list):
            raise ResponseFormatError("message has no `content` list", provider=self.name)
        usage = anthropic_usage(data.get("usage"))
        answered = str(data.get("model") or model)
        request_id = header(headers, "request-id") or str(data.get("id") or "")
        body = chat_body(
            id=str(data.get("id") or ""),
            model=answered,
            content=collect_text_blocks(data["content"]),
            finish_reason=finish_reason(data.get("stop_reason")),
            usage=usage,
        )
        return Parsed(body, usage, answered, request_id, data)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        raise BadRequestError(
            "Anthropic has no embeddings API; route embeddings to another provider",
            provider=self.name,
            code="unsupported_endpoint",
        )

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        raise ResponseFormatError("Anthropic has no embeddings API", provider=self.name)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        message, code = error_text(error_payload(content, self.name))
        cls = error_class_for_status(status)
        error = cls(message or f"HTTP {status}", provider=self.name, status=status, code=code)
        return obey_should_retry(error, headers)

    def _body_error(self, data: Any) -> ProviderError:
        """An `error` object in a 200 body or stream (e.g. `overloaded_error` mid-stream)."""
        message, code = error_text(data)
        if code in ("overloaded_error", "api_error", "rate_limit_error", "timeout_error"):
            return ServerError(message or code, provider=self.name, code=code)
        return ResponseFormatError(
            message or "unexpected message body", provider=self.name, code=code
        )


def messages_path(base_url: str) -> str:
    """`/v1/messages`, or `/messages` when the base URL already ends in `/v1`."""
    return "/messages" if base_url.rstrip("/").endswith("/v1") else "/v1/messages"


def messages_payload(model: str, body: dict[str, Any], provider: str) -> dict[str, Any]:
    system, turns = split_system(body.get("messages"), provider)
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens_of(body) or DEFAULT_MAX_TOKENS,
        "messages": [{"role": role, "content": content_blocks(parts)} for role, parts in turns],
        "stream": False,
    }
    if system:
        payload["system"] = system
    if stops := stop_sequences(body):
        payload["stop_sequences"] = stops
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            payload[key] = body[key]
    if body.get("user"):
        payload["metadata"] = {"user_id": str(body["user"])}
    return payload


def content_blocks(parts: list[ContentPart]) -> str | list[dict[str, Any]]:
    """A plain string for text-only turns; text and image blocks otherwise."""
    if all(part.kind == "text" for part in parts):
        return "".join(part.text for part in parts)
    return [_block(part) for part in parts]


def _block(part: ContentPart) -> dict[str, Any]:
    if part.kind == "text":
        return {"type": "text", "text": part.text}
    if part.data:
        source = {"type": "base64", "media_type": part.mime, "data": part.data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def finish_reason(stop_reason: Any) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), "stop")


def anthropic_usage(raw: Any) -> Usage:
    """Input tokens including cache writes and reads (Anthropic reports those separately)."""
    if not isinstance(raw, dict):
        return Usage()
    prompt = sum(
        int(raw.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return usage_of(prompt, raw.get("output_tokens"))


def collect_stream(content: bytes) -> dict[str, Any]:
    """A `message` folded from the SSE events of a streamed answer (or the `error` event)."""
    message: dict[str, Any] = {"content": []}
    texts: list[str] = []
    for data in sse_data(content):
        event = load_json(data.encode(), provider="anthropic")
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "error":
            return dict(event)
        _apply_event(message, texts, event)
    message["content"] = [{"type": "text", "text": "".join(texts)}]
    return message


def _apply_event(message: dict[str, Any], texts: list[str], event: dict[str, Any]) -> None:
    kind = event.get("type")
    if kind == "message_start":
        message.update({k: v for k, v in (event.get("message") or {}).items() if k != "content"})
    elif kind == "content_block_delta":
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            texts.append(str(delta.get("text") or ""))
    elif kind == "message_delta":
        message.update(event.get("delta") or {})
        usage = {**(message.get("usage") or {}), **(event.get("usage") or {})}
        message["usage"] = usage
