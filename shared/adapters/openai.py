"""OpenAI Chat Completions and Embeddings, and every OpenAI-compatible server (a registry row each).

Known deviations handled here: whitespace before the JSON (OpenRouter, DeepSeek), integer or string
`error.code` (OpenRouter, vLLM, Mistral), flat error bodies (older vLLM, TGI `{"error": str}`),
embeddings returned out of order or base64-encoded.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from shared.adapters._wire import dump_json, error_from_status, error_text, header, join_url, load_json
from shared.adapters.base import Endpoint, HttpRequest, Parsed
from shared.errors import ProviderError, ResponseFormatError
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
        headers = {"content-type": "application/json", "accept": "application/json"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        for name in ("organization", "project"):
            if value := endpoint.options.get(name):
                headers[f"openai-{name}"] = value
        return headers

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        path = endpoint.options.get("chat_path", self.chat_path)
        payload = {**body, "model": model, "stream": False}
        payload.pop("stream_options", None)
        return HttpRequest("POST", join_url(endpoint.base_url, path), self.headers(endpoint), dump_json(payload))

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        if not isinstance(data, dict) or "choices" not in data:
            raise ResponseFormatError("chat response has no `choices`", provider=self.name)
        data.setdefault("object", "chat.completion")
        usage = openai_usage(data.get("usage"))
        return Parsed(data, usage, str(data.get("model") or model), request_id_of(headers, data))

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        path = endpoint.options.get("embeddings_path", self.embeddings_path)
        payload = {**body, "model": model, "input": inputs}
        return HttpRequest("POST", join_url(endpoint.base_url, path), self.headers(endpoint), dump_json(payload))

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise ResponseFormatError("embeddings response has no `data` list", provider=self.name)
        items = sorted(data["data"], key=lambda item: item.get("index", 0))
        vectors = [decode_embedding(item.get("embedding")) for item in items]
        usage = openai_usage(data.get("usage"))
        body = embeddings_body(vectors, str(data.get("model") or model), usage)
        return Parsed(body, usage, body["model"], request_id_of(headers, data))

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        try:
            payload = load_json(content, provider=self.name)
        except ResponseFormatError:
            payload = content[:500].decode("utf-8", "replace")
        message, code = error_text(payload)
        return error_from_status(status, message, provider=self.name, code=code)


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
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
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
