"""Gemini (Generative Language API) adapter against the recorded answers and errors."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.gemini import GeminiAdapter
from shared.errors import BadRequestError, NotFoundError, QuotaExceededError, RateLimitError
from tests.conftest import load_sample
from tests.unit.test_adapters_common import (
    as_bytes,
    endpoint,
    recorded,
    request_body,
    request_url,
    sent,
)

ADAPTER = GeminiAdapter()
KEY = "AIzaSyTESTKEY000000000000000000000000"
API = endpoint("gemini", "https://generativelanguage.googleapis.com/v1beta", KEY)


def error_of(status: int, body: Any) -> Any:
    return ADAPTER.parse_error(status, {}, as_bytes(body))


def test_generate_content_sample() -> None:
    _, headers, content = recorded("gemini_generate_content.json")
    parsed = ADAPTER.parse_chat(headers, content, "gemini-3-pro-preview")
    choice = parsed.body["choices"][0]
    assert choice["message"]["content"].startswith("Cinder was the size of a cathedral")
    assert choice["finish_reason"] == "stop"
    assert parsed.usage.prompt_tokens == 10
    assert parsed.usage.completion_tokens == 110 + 820  # thinking tokens count as output
    assert parsed.usage.total_tokens == 940
    assert parsed.model == "gemini-3-pro-preview"
    assert parsed.request_id == "0kEtabSvAZzg_uMPjb7OwAs"


def test_thought_parts_are_skipped() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "thinking...", "thought": True}, {"text": "Answer"}]
                },
                "finishReason": "MAX_TOKENS",
            }
        ],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2},
    }
    parsed = ADAPTER.parse_chat({}, as_bytes(body), "g")
    assert parsed.body["choices"][0]["message"]["content"] == "Answer"
    assert parsed.body["choices"][0]["finish_reason"] == "length"
    assert parsed.usage.total_tokens == 3


def test_blocked_prompt_is_an_empty_content_filter_answer() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7}}
    parsed = ADAPTER.parse_chat({}, as_bytes(body), "g")
    assert parsed.body["choices"][0]["message"]["content"] == ""
    assert parsed.body["choices"][0]["finish_reason"] == "content_filter"
    assert parsed.usage.prompt_tokens == 7


def test_batch_embed_contents_sample() -> None:
    _, headers, content = recorded("gemini_batch_embed_contents.json")
    parsed = ADAPTER.parse_embeddings(headers, content, "gemini-embedding-2-preview")
    data = parsed.body["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert all(len(d["embedding"]) == 3072 for d in data)
    assert data[0]["embedding"][0] == pytest.approx(-0.006419318)
    assert data[1]["embedding"][0] == pytest.approx(0.017544165)
    assert parsed.usage.total_tokens == 0  # Gemini returns no token counts for embeddings


# --- errors --------------------------------------------------------------------------------------


def test_404_sample() -> None:
    status, headers, content = recorded("gemini_404_model_not_found.json")
    error = ADAPTER.parse_error(status, headers, content)
    assert isinstance(error, NotFoundError)
    assert error.code == "NOT_FOUND"
    assert error.message.startswith("models/nonexistent-model is not found")


def test_429_resource_exhausted_sample_is_a_retryable_rate_limit() -> None:
    status, headers, content = recorded("gemini_429_resource_exhausted.json")
    error = ADAPTER.parse_error(status, headers, content)
    assert type(error) is RateLimitError
    assert error.retryable
    assert error.code == "RESOURCE_EXHAUSTED"
    assert error.retry_after is None


def test_429_with_a_per_day_quota_violation_is_not_retried() -> None:
    body = load_sample("gemini_429_resource_exhausted.json")["_also"][1]["body_excerpt"]
    error = error_of(429, body)
    assert isinstance(error, QuotaExceededError)
    assert not error.retryable


def test_429_per_minute_quota_only_is_retried() -> None:
    body = load_sample("gemini_429_resource_exhausted.json")["_also"][1]["body_excerpt"]
    violations = body["error"]["details"][0]["violations"]
    body["error"]["details"][0]["violations"] = [
        v for v in violations if "PerDay" not in v["quotaId"]
    ]
    error = error_of(429, body)
    assert type(error) is RateLimitError
    assert error.retryable


def test_429_retry_info_delay_becomes_retry_after() -> None:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "59s"}
    body = {
        "error": {
            "code": 429,
            "message": "Quota exceeded",
            "status": "RESOURCE_EXHAUSTED",
            "details": [retry_info],
        }
    }
    error = error_of(429, body)
    assert error.retryable
    assert error.retry_after == 59.0


def test_429_message_hint_becomes_retry_after() -> None:
    message = "Quota exceeded for metric x, limit: 15. Please retry in 45.578569677s."
    error = error_of(
        429, {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}
    )
    assert error.retry_after == pytest.approx(45.578569677)


def test_429_limit_zero_is_not_retried() -> None:
    message = "Quota exceeded for metric: generate_content_free_tier_requests, limit: 0"
    error = error_of(
        429, {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}
    )
    assert isinstance(error, QuotaExceededError)
    assert not error.retryable


def test_400_more_than_100_requests() -> None:
    body = load_sample("gemini_429_resource_exhausted.json")["_also"][2]["body"]
    error = error_of(400, body)
    assert isinstance(error, BadRequestError)
    assert error.code == "INVALID_ARGUMENT"


# --- building ------------------------------------------------------------------------------------


def test_build_chat_matches_the_recorded_request_and_keeps_the_key_out_of_the_url() -> None:
    body = {
        "messages": [{"role": "user", "content": "Write a very short story about a dragon."}],
        "max_tokens": 1000,
    }
    request = ADAPTER.build_chat(API, "gemini-3-pro-preview", body)
    assert request.url == request_url("gemini_generate_content.json")
    assert sent(request.body) == request_body("gemini_generate_content.json")
    assert request.headers["x-goog-api-key"] == KEY
    assert KEY not in request.url and "key=" not in request.url
    assert "authorization" not in request.headers


def test_build_chat_roles_system_instruction_and_generation_config() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
        ],
        "max_completion_tokens": 20,
        "temperature": 0.1,
        "top_p": 0.5,
        "stop": ["X"],
        "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
    }
    payload = sent(ADAPTER.build_chat(API, "models/gemini-2.0-flash", body).body)
    assert payload["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert [c["role"] for c in payload["contents"]] == ["user", "model", "user"]
    assert payload["contents"][0]["parts"] == [{"text": "a"}, {"text": "b"}]
    assert payload["generationConfig"] == {
        "maxOutputTokens": 20,
        "stopSequences": ["X"],
        "temperature": 0.1,
        "topP": 0.5,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


def test_model_prefix_is_not_doubled() -> None:
    request = ADAPTER.build_chat(
        API, "models/gemini-2.0-flash", {"messages": [{"role": "user", "content": "x"}]}
    )
    assert request.url.endswith("/v1beta/models/gemini-2.0-flash:generateContent")


def test_image_data_url_becomes_inline_data() -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]
    payload = sent(
        ADAPTER.build_chat(API, "g", {"messages": [{"role": "user", "content": content}]}).body
    )
    assert payload["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}
    ]


def test_build_embeddings_matches_the_recorded_request() -> None:
    request = ADAPTER.build_embeddings(
        API, "gemini-embedding-2-preview", ["hello", "world"], {"task_type": "RETRIEVAL_DOCUMENT"}
    )
    assert request.url == request_url("gemini_batch_embed_contents.json")
    assert sent(request.body) == request_body("gemini_batch_embed_contents.json")
    assert KEY not in request.url


def test_embeddings_cap_is_100() -> None:
    assert ADAPTER.max_embed_inputs == 100
    with pytest.raises(BadRequestError, match="100"):
        ADAPTER.build_embeddings(API, "e", ["x"] * 101, {})
