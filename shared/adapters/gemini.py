"""Google Gemini (Generative Language API): `generateContent` and `batchEmbedContents`.

The key goes only in the `x-goog-api-key` header, never in the URL (httpx logs URLs). The
generateContent body and answer are shared with Vertex AI (`vertex.py` imports them from here), as
is the Google error envelope: quota 429s whose quota id is per day, or whose limit is 0, cannot
clear soon and are not retried; `RetryInfo.retryDelay` becomes `retry_after`.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import quote

from shared.adapters._wire import dump_json, header, join_url, load_json
from shared.adapters.base import Endpoint, HttpRequest, Parsed
from shared.adapters.openai import (
    ContentPart,
    chat_body,
    duration_seconds,
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
    error_class_for_status,
)
from shared.schema import Usage

MAX_BATCH_EMBED: Final = 100
"""`batchEmbedContents` refuses more than 100 requests (400 INVALID_ARGUMENT)."""

FINISH_REASONS: Final[dict[str, str]] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "tool_calls",
    "UNEXPECTED_TOOL_CALL": "tool_calls",
    "TOO_MANY_TOOL_CALLS": "tool_calls",
}
_GENERATION_KEYS: Final = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)
_ZERO_LIMIT: Final = re.compile(r"\blimit: 0\b")


class GeminiAdapter:
    name = "gemini"
    max_embed_inputs = MAX_BATCH_EMBED

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if endpoint.api_key:
            headers["x-goog-api-key"] = endpoint.api_key
        return headers

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        payload = generate_content_payload(body, self.name)
        url = model_url(endpoint.base_url, model, "generateContent")
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        return parse_generate_content(headers, content, model, self.name)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        if len(inputs) > MAX_BATCH_EMBED:
            raise BadRequestError(
                f"Gemini embeds at most {MAX_BATCH_EMBED} inputs per call", provider=self.name
            )
        payload = batch_embed_payload(model_id(model), text_inputs(inputs, self.name), body)
        url = model_url(endpoint.base_url, model, "batchEmbedContents")
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        items = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ResponseFormatError("response has no `embeddings` list", provider=self.name)
        vectors = [_values(item, self.name) for item in items]
        body = embeddings_body(vectors, model, Usage())
        return Parsed(body, Usage(), model, header(headers, "x-request-id") or "", data)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        return google_error(status, content, self.name)


# --- URLs ----------------------------------------------------------------------------------------


def model_id(model: str) -> str:
    """The bare model id (`models/gemini-2.0-flash` → `gemini-2.0-flash`)."""
    return model.removeprefix("models/")


def model_url(base_url: str, model: str, method: str) -> str:
    """`{base}/models/{model}:{method}`; the API key never goes in here."""
    return join_url(base_url, f"models/{quote(model_id(model), safe='')}:{method}")


# --- generateContent (shared with Vertex) -------------------------------------------------------


def generate_content_payload(body: dict[str, Any], provider: str) -> dict[str, Any]:
    reject_unsupported(body, provider, json_output=True)
    system, turns = split_system(body.get("messages"), provider)
    payload: dict[str, Any] = {"contents": contents_of(turns, provider)}
    if system:
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    if config := generation_config(body):
        payload["generationConfig"] = config
    return payload


def contents_of(turns: list[tuple[str, list[ContentPart]]], provider: str) -> list[dict[str, Any]]:
    """Turns as `contents`, roles user/model; consecutive turns of one role are merged."""
    contents: list[dict[str, Any]] = []
    for role, parts in turns:
        google_role = "model" if role == "assistant" else "user"
        converted = [google_part(part, provider) for part in parts]
        if contents and contents[-1]["role"] == google_role:
            contents[-1]["parts"].extend(converted)
        else:
            contents.append({"role": google_role, "parts": converted})
    return contents


def google_part(part: ContentPart, provider: str) -> dict[str, Any]:
    if part.kind == "text":
        return {"text": part.text}
    if part.data:
        return {"inlineData": {"mimeType": part.mime, "data": part.data}}
    if part.url.startswith("gs://"):
        return {"fileData": {"fileUri": part.url}}
    raise BadRequestError(
        f"{provider} takes images as base64 data URLs (or gs:// URIs), not web URLs",
        provider=provider,
    )


def generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if (max_tokens := max_tokens_of(body)) is not None:
        config["maxOutputTokens"] = max_tokens
    if stops := stop_sequences(body):
        config["stopSequences"] = stops
    for ours, theirs in _GENERATION_KEYS:
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    if response_format_type(body) in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if (schema := json_schema_of(body)) is not None:
        config["responseJsonSchema"] = schema
    return config


def parse_generate_content(
    headers: dict[str, str], content: bytes, model: str, provider: str
) -> Parsed:
    data = load_json(content, provider=provider)
    if not isinstance(data, dict):
        raise ResponseFormatError("generateContent answer is not an object", provider=provider)
    text, finish = candidate_answer(data, provider)
    usage = google_usage(data.get("usageMetadata"))
    answered = str(data.get("modelVersion") or model)
    response_id = str(data.get("responseId") or "")
    body = chat_body(
        id=response_id, model=answered, content=text, finish_reason=finish, usage=usage
    )
    return Parsed(body, usage, answered, header(headers, "x-request-id") or response_id, data)


def candidate_answer(data: dict[str, Any], provider: str) -> tuple[str, str | None]:
    """(text, finish_reason) of the first candidate; a blocked prompt is empty `content_filter`."""
    candidates = data.get("candidates")
    if not candidates:
        if (data.get("promptFeedback") or {}).get("blockReason"):
            return "", "content_filter"
        raise ResponseFormatError("answer has no candidates", provider=provider)
    first = candidates[0]
    parts = (first.get("content") or {}).get("parts") or []
    text = "".join(str(p.get("text") or "") for p in parts if not p.get("thought"))
    return text, finish_reason(first.get("finishReason"))


def finish_reason(value: Any) -> str | None:
    if not value or value == "FINISH_REASON_UNSPECIFIED":
        return None
    return FINISH_REASONS.get(str(value), "stop")


def google_usage(raw: Any) -> Usage:
    """Thinking tokens count as completion tokens (as OpenAI's reasoning tokens do)."""
    if not isinstance(raw, dict):
        return Usage()
    completion = int(raw.get("candidatesTokenCount") or 0) + int(raw.get("thoughtsTokenCount") or 0)
    return usage_of(raw.get("promptTokenCount"), completion, raw.get("totalTokenCount"))


# --- embeddings ----------------------------------------------------------------------------------


def batch_embed_payload(model: str, texts: list[str], body: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if task := body.get("task_type") or body.get("taskType"):
        extra["taskType"] = str(task)
    if body.get("dimensions"):
        extra["outputDimensionality"] = int(body["dimensions"])
    requests = [
        {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra}
        for text in texts
    ]
    return {"requests": requests}


def _values(item: Any, provider: str) -> list[float]:
    values = item.get("values") if isinstance(item, dict) else None
    if not isinstance(values, list):
        raise ResponseFormatError("embedding has no `values`", provider=provider)
    return values


# --- errors (shared with Vertex) -----------------------------------------------------------------


def google_error(status: int, content: bytes, provider: str) -> ProviderError:
    """The Google envelope `{"error": {"code", "message", "status", "details"}}` as an exception."""
    payload = error_payload(content, provider)
    inner = payload.get("error") if isinstance(payload, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    message = str(inner.get("message") or (payload if isinstance(payload, str) else ""))
    code = str(inner.get("status") or inner.get("code") or "") or None
    details = [d for d in inner.get("details") or [] if isinstance(d, dict)]
    cls = error_class_for_status(status)
    if status == 429 and is_hard_quota(message, details):
        cls = QuotaExceededError
    error = cls(message or f"HTTP {status}", provider=provider, status=status, code=code)
    if error.retryable:
        error.retry_after = retry_delay(details) or retry_hint(message)
    return error


def is_hard_quota(message: str, details: list[dict[str, Any]]) -> bool:
    """A daily quota or a zero limit: no short wait will clear it."""
    if _ZERO_LIMIT.search(message):
        return True
    quota_ids = [
        str(violation.get("quotaId") or "")
        for detail in details
        for violation in detail.get("violations") or []
        if isinstance(violation, dict)
    ]
    return any("PerDay" in quota_id for quota_id in quota_ids)


def retry_delay(details: list[dict[str, Any]]) -> float | None:
    """`google.rpc.RetryInfo.retryDelay` (`"59s"`) in seconds."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return duration_seconds(str(detail.get("retryDelay") or ""))
    return None
