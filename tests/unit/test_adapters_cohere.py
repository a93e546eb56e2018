"""Cohere v2 adapter: chat, embed and rerank against recorded and documented bodies."""

from __future__ import annotations

import pytest

from shared.adapters.cohere import CohereAdapter
from shared.errors import (
    BadRequestError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from tests.unit.test_adapters_common import (
    as_bytes,
    endpoint,
    recorded,
    request_body,
    request_url,
    sent,
)

ADAPTER = CohereAdapter()
API = endpoint("cohere", "https://api.cohere.com", "co-key")


def test_chat_sample_reports_billed_tokens() -> None:
    _, headers, content = recorded("cohere_chat_v2.json")
    parsed = ADAPTER.parse_chat(headers, content, "command-r7b-12-2024")
    choice = parsed.body["choices"][0]
    assert choice["message"]["content"] == "Hello! How can I assist you today?"
    assert choice["finish_reason"] == "stop"
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (1, 9)
    assert parsed.raw["usage"]["tokens"]["input_tokens"] == 496
    assert parsed.request_id == "f17a5f6c-1734-4098-bd0d-733ef000ac7b"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("MAX_TOKENS", "length"), ("STOP_SEQUENCE", "stop"), ("TOOL_CALL", "tool_calls")],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    body = {
        "id": "x",
        "finish_reason": reason,
        "message": {"role": "assistant", "content": []},
        "usage": {},
    }
    assert ADAPTER.parse_chat({}, as_bytes(body), "c").body["choices"][0]["finish_reason"] == finish


def test_error_finish_is_a_retryable_failure() -> None:
    body = {"id": "x", "finish_reason": "ERROR", "message": {"role": "assistant", "content": []}}
    with pytest.raises(ServerError) as info:
        ADAPTER.parse_chat({}, as_bytes(body), "c")
    assert info.value.retryable


def test_build_chat_matches_the_recorded_request() -> None:
    request = ADAPTER.build_chat(
        API, "command-r7b-12-2024", {"messages": [{"role": "user", "content": "hello"}]}
    )
    assert request.url == request_url("cohere_chat_v2.json")
    assert sent(request.body) == request_body("cohere_chat_v2.json")
    assert request.headers["authorization"] == "Bearer co-key"


def test_build_chat_parameters_and_json_schema() -> None:
    body = {
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        "max_tokens": 10,
        "top_p": 0.5,
        "top_k": 3,
        "stop": ["."],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
    }
    payload = sent(
        ADAPTER.build_chat(endpoint("cohere", "https://api.cohere.com/v2/", "k"), "c", body).body
    )
    assert payload["messages"][0] == {"role": "system", "content": "Be terse."}
    assert (payload["max_tokens"], payload["p"], payload["k"]) == (10, 0.5, 3)
    assert payload["stop_sequences"] == ["."]
    assert payload["response_format"] == {"type": "json_object", "json_schema": {"type": "object"}}


def test_embed_sample() -> None:
    _, headers, content = recorded("cohere_embed_v2.json")
    parsed = ADAPTER.parse_embeddings(headers, content, "embed-v4.0")
    data = parsed.body["data"]
    assert len(data) == 2 and all(len(d["embedding"]) == 1536 for d in data)
    assert data[0]["embedding"][0] == pytest.approx(0.015943069)
    assert data[1]["embedding"][0] == pytest.approx(-0.0060736495)
    assert parsed.usage.prompt_tokens == 2


def test_build_embeddings_matches_the_recorded_request() -> None:
    request = ADAPTER.build_embeddings(API, "embed-v4.0", ["hello", "world"], {"truncate": "NONE"})
    assert request.url == request_url("cohere_embed_v2.json")
    recorded_body = {k: v for k, v in request_body("cohere_embed_v2.json").items() if v is not None}
    assert sent(request.body) == recorded_body


def test_embed_defaults_and_cap() -> None:
    payload = sent(ADAPTER.build_embeddings(API, "embed-v4.0", ["a"], {"dimensions": 512}).body)
    assert payload["input_type"] == "search_document"
    assert payload["embedding_types"] == ["float"]
    assert payload["output_dimension"] == 512
    assert ADAPTER.max_embed_inputs == 96
    with pytest.raises(BadRequestError, match="96"):
        ADAPTER.build_embeddings(API, "embed-v4.0", ["a"] * 97, {})


def test_embed_404_sample() -> None:
    status, headers, content = recorded("cohere_embed_v2_404.json")
    error = ADAPTER.parse_error(status, headers, content)
    assert isinstance(error, NotFoundError)
    assert error.message.startswith("model 'nonexistent' not found")
    assert not error.retryable


def test_rerank_request_and_answer() -> None:
    request = ADAPTER.build_rerank(API, "rerank-v3.5", "capital?", ["Paris", "Berlin"], top_n=1)
    assert request.url == "https://api.cohere.com/v2/rerank"
    assert sent(request.body) == {
        "model": "rerank-v3.5",
        "query": "capital?",
        "documents": ["Paris", "Berlin"],
        "top_n": 1,
    }
    answer = {
        "id": "r1",
        "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}],
        "meta": {"billed_units": {"search_units": 1}},
    }
    parsed = ADAPTER.parse_rerank({}, as_bytes(answer), "rerank-v3.5")
    assert parsed.body["results"] == [
        {"index": 1, "relevance_score": 0.9},
        {"index": 0, "relevance_score": 0.1},
    ]
    assert parsed.request_id == "r1"


def test_trial_key_monthly_limit_is_not_retried() -> None:
    body = {
        "id": "x",
        "message": "You are using a Trial key, which is limited to 1000 API calls / month.",
    }
    error = ADAPTER.parse_error(429, {}, as_bytes(body))
    assert isinstance(error, QuotaExceededError)
    assert not error.retryable


def test_per_minute_limit_is_retried() -> None:
    error = ADAPTER.parse_error(
        429, {}, as_bytes({"id": "x", "message": "limited to 10 API calls / minute"})
    )
    assert type(error) is RateLimitError
    assert error.retryable
