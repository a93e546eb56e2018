"""Cohere v2: `/v2/chat`, `/v2/embed` (≤ 96 texts, float vectors) and `/v2/rerank`. Bearer auth.

Usage reports the billed tokens (`usage.billed_units`), which is what Cohere charges; the raw
counts, which include Cohere's own preamble, stay in `raw`. Errors are flat `{"id", "message"}`.
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
    collect_text_blocks,
    embeddings_body,
    error_payload,
    json_schema_of,
    max_tokens_of,
    reject_unsupported,
    response_format_type,
    retry_hint,
    split_system,
    stop_sequences,
    text_inputs,
    usage_of,
)
from shared.errors import (
    BadRequestError,
    ProviderError,
    QuotaExceededError,
    ResponseFormatError,
    ServerError,
)
from shared.schema import Usage

MAX_EMBED_TEXTS: Final = 96
DEFAULT_INPUT_TYPE: Final = "search_document"

FINISH_REASONS: Final[dict[str, str]] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
FAILED_FINISHES: Final = frozenset({"ERROR", "TIMEOUT"})
_CHAT_KEYS: Final = (
    ("temperature", "temperature"),
    ("top_p", "p"),
    ("top_k", "k"),
    ("seed", "seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
)


class CohereAdapter:
    name = "cohere"
    max_embed_inputs = MAX_EMBED_TEXTS

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        return bearer_json_headers(endpoint.api_key)

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        reject_unsupported(body, self.name, json_output=True)
        payload = chat_payload(model, body, self.name)
        return HttpRequest(
            "POST", v2_url(endpoint, "chat"), self.headers(endpoint), dump_json(payload)
        )

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise ResponseFormatError("chat answer has no `message`", provider=self.name)
        reason = str(data.get("finish_reason") or "")
        if reason in FAILED_FINISHES:
            raise ServerError(
                f"Cohere stopped generating: {reason}", provider=self.name, code=reason
            )
        usage = cohere_usage(data.get("usage"))
        request_id = str(data.get("id") or header(headers, "x-request-id") or "")
        finish = FINISH_REASONS.get(reason, "stop") if reason else None
        text = collect_text_blocks(message.get("content"))
        body = chat_body(
            id=request_id, model=model, content=text, finish_reason=finish, usage=usage
        )
        return Parsed(body, usage, model, request_id, data)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        if len(inputs) > MAX_EMBED_TEXTS:
            raise BadRequestError(
                f"Cohere embeds at most {MAX_EMBED_TEXTS} texts per call", provider=self.name
            )
        payload = embed_payload(model, text_inputs(inputs, self.name), body)
        return HttpRequest(
            "POST", v2_url(endpoint, "embed"), self.headers(endpoint), dump_json(payload)
        )

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        embeddings = data.get("embeddings") if isinstance(data, dict) else None
        vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
        if not isinstance(vectors, list):
            raise ResponseFormatError("embed answer has no float embeddings", provider=self.name)
        billed = ((data.get("meta") or {}).get("billed_units") or {}).get("input_tokens")
        usage = usage_of(billed if billed is not None else header(headers, "num_tokens"), 0)
        request_id = str(data.get("id") or "")
        return Parsed(embeddings_body(vectors, model, usage), usage, model, request_id, data)

    def build_rerank(
        self,
        endpoint: Endpoint,
        model: str,
        query: str,
        documents: list[str],
        top_n: int | None = None,
    ) -> HttpRequest:
        payload: dict[str, Any] = {"model": model, "query": query, "documents": documents}
        if top_n is not None:
            payload["top_n"] = top_n
        return HttpRequest(
            "POST", v2_url(endpoint, "rerank"), self.headers(endpoint), dump_json(payload)
        )

    def parse_rerank(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        """`body`: `{"object": "list", "results": [{"index", "relevance_score"}], "model", "id"}`,
        best first, `index` pointing into the documents sent."""
        data = load_json(content, provider=self.name)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise ResponseFormatError("rerank answer has no `results` list", provider=self.name)
        ranked = [_ranked(item) for item in results if isinstance(item, dict)]
        request_id = str(data.get("id") or "")
        body = {"object": "list", "id": request_id, "model": model, "results": ranked}
        return Parsed(body, Usage(), model, request_id, data)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        message, code = error_text(error_payload(content, self.name))
        error = error_from_status(status, message, provider=self.name, code=code)
        if status == 429 and "month" in message.lower():
            error = QuotaExceededError(message, provider=self.name, status=status, code=code)
        if error.retryable:
            error.retry_after = retry_hint(message)
        return error


def v2_url(endpoint: Endpoint, route: str) -> str:
    """`{host}/v2/{route}`; a base URL given with `/v1` or `/v2` is cut back to the host."""
    base = endpoint.base_url.rstrip("/")
    for suffix in ("/v1", "/v2"):
        base = base.removesuffix(suffix)
    return join_url(base, f"/v2/{route}")


def chat_payload(model: str, body: dict[str, Any], provider: str) -> dict[str, Any]:
    system, turns = split_system(body.get("messages"), provider)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages += [{"role": role, "content": cohere_content(parts)} for role, parts in turns]
    payload: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
    if (max_tokens := max_tokens_of(body)) is not None:
        payload["max_tokens"] = max_tokens
    if stops := stop_sequences(body):
        payload["stop_sequences"] = stops
    for ours, theirs in _CHAT_KEYS:
        if body.get(ours) is not None:
            payload[theirs] = body[ours]
    if (response_format := cohere_response_format(body)) is not None:
        payload["response_format"] = response_format
    return payload


def cohere_content(parts: list[ContentPart]) -> str | list[dict[str, Any]]:
    """A plain string for text-only turns; text and `image_url` parts otherwise."""
    if all(part.kind == "text" for part in parts):
        return "".join(part.text for part in parts)
    return [_cohere_part(part) for part in parts]


def _cohere_part(part: ContentPart) -> dict[str, Any]:
    if part.kind == "text":
        return {"type": "text", "text": part.text}
    url = f"data:{part.mime};base64,{part.data}" if part.data else part.url
    return {"type": "image_url", "image_url": {"url": url}}


def cohere_response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    if response_format_type(body) not in ("json_object", "json_schema"):
        return None
    response_format: dict[str, Any] = {"type": "json_object"}
    if (schema := json_schema_of(body)) is not None:
        response_format["json_schema"] = schema
    return response_format


def cohere_usage(raw: Any) -> Usage:
    """Billed tokens; the raw `tokens` counts when no billed units are given."""
    if not isinstance(raw, dict):
        return Usage()
    counts = raw.get("billed_units") or raw.get("tokens") or {}
    return usage_of(counts.get("input_tokens"), counts.get("output_tokens"))


def embed_payload(model: str, texts: list[str], body: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "texts": texts,
        "input_type": body.get("input_type") or DEFAULT_INPUT_TYPE,
        "embedding_types": ["float"],
    }
    if body.get("dimensions"):
        payload["output_dimension"] = int(body["dimensions"])
    if body.get("truncate"):
        payload["truncate"] = body["truncate"]
    return payload


def _ranked(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": int(item.get("index") or 0),
        "relevance_score": float(item.get("relevance_score") or 0),
    }
