"""OpenAI adapter against every recorded OpenAI / OpenAI-compatible exchange, plus synthetic
bodies (per the protocol reference) where no recording exists."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from shared.adapters.openai import (
    OpenAIAdapter,
    duration_seconds,
    image_part,
    reject_unsupported,
    retry_hint,
    split_system,
)
from shared.errors import (
    BadRequestError,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)
from tests.conftest import load_sample
from tests.unit.test_adapters_common import as_bytes, endpoint, norm, recorded, sent

ADAPTER = OpenAIAdapter()


def error_of(status: int, body: Any, headers: dict[str, str] | None = None) -> ProviderError:
    return ADAPTER.parse_error(status, headers or {}, as_bytes(body))


def example(name: str, index: int) -> dict[str, Any]:
    examples: list[dict[str, Any]] = load_sample(name)["examples"]
    return examples[index]


# --- chat ----------------------------------------------------------------------------------------


def test_chat_completion_sample() -> None:
    _, headers, content = recorded("openai_chat_completion.json")
    parsed = ADAPTER.parse_chat(headers, content, "gpt-4o-mini")
    choice = parsed.body["choices"][0]
    assert choice["message"]["content"].endswith("The result of the calculation 2 + 2 is 4.")
    assert choice["finish_reason"] == "stop"
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (161, 25)
    assert parsed.usage.total_tokens == 186
    assert parsed.model == "gpt-4o-mini-2024-07-18"
    assert parsed.request_id == "req_463fbd324e01320dc253008f919713bd"
    assert parsed.raw["system_fingerprint"] == "fp_bd83329f63"


def test_stream_sent_despite_stream_false_is_folded_into_one_completion() -> None:
    _, headers, content = recorded("openai_chat_completion_stream.json")
    parsed = ADAPTER.parse_chat(headers, content, "gpt-4o-mini")
    choice = parsed.body["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "call_1EYWDzueHEp8OsB8jJSEp7WB"
    assert call["function"] == {"name": "multiply", "arguments": '{"a":1231,"b":2331}'}
    assert choice["finish_reason"] == "tool_calls"
    assert parsed.body["object"] == "chat.completion"
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (54, 20)
    assert parsed.request_id == "req_c3e995e7a86953713a6dc1b17e399fd5"


def test_stream_text_deltas_are_concatenated_and_keepalive_comments_skipped() -> None:
    chunks = [
        ": keep-alive",
        'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}',
        'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"lo"},'
        '"finish_reason":"stop"}]}',
        "data: [DONE]",
    ]
    parsed = ADAPTER.parse_chat({}, "\n\n".join(chunks).encode(), "m")
    assert parsed.body["choices"][0]["message"]["content"] == "Hello"
    assert parsed.body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("sample", "text_start", "usage", "request_id"),
    [
        ("groq_chat.json", "Hello! How can I assist", (48, 8, 56), "chatcmpl-7586b6a9"),
        ("deepseek_chat.json", "Let me load the dice", (563, 116, 679), "0841b0a3-0321"),
        ("mistral_chat.json", "", (65, 16, 81), "019b4b62-4dc0-7853-9966-6c1f2fbef5e5"),
        ("openrouter_chat.json", "Hello! How can I help", (550, 12, 562), "gen-1779760224"),
        ("cerebras_chat.json", "The answer is 4.", (13, 7, 20), "chatcmpl-a1af5a3c"),
        ("ollama_openai_compat_chat.json", '{ "city": "Paris"', (136, 15, 151), "chatcmpl-150"),
        ("huggingface_router_chat.json", "<think>", (4, 197, 201), "oV1mmQk-28Eivz"),
    ],
)
def test_openai_compatible_chat_samples(
    sample: str, text_start: str, usage: tuple[int, int, int], request_id: str
) -> None:
    _, headers, content = recorded(sample)
    parsed = ADAPTER.parse_chat(headers, content, "requested-model")
    text = parsed.body["choices"][0]["message"]["content"]
    assert text.startswith(text_start)
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == usage[:2]
    assert parsed.usage.total_tokens == usage[2]
    assert parsed.request_id.startswith(request_id)
    assert parsed.model != "requested-model"


def test_finish_reasons_of_tool_call_samples_survive() -> None:
    for sample in ("deepseek_chat.json", "mistral_chat.json"):
        _, headers, content = recorded(sample)
        assert ADAPTER.parse_chat(headers, content, "m").body["choices"][0]["finish_reason"] == (
            "tool_calls"
        )


def test_openrouter_body_padded_with_kilobytes_of_whitespace() -> None:
    _, headers, content = recorded("openrouter_nonstream_whitespace_padding.json")
    assert content.startswith(b"\n") and len(content) > 2000
    parsed = ADAPTER.parse_chat(headers, content, "deepseek/deepseek-r1")
    assert parsed.body["choices"][0]["message"]["content"].startswith(
        "The capital of France is **Paris**."
    )
    assert parsed.usage.completion_tokens == 261
    assert parsed.body["choices"][0]["finish_reason"] is None


def test_error_object_inside_a_200_body_is_raised_as_its_status() -> None:
    body = {"error": {"code": 429, "message": "Provider returned error"}, "user_id": "u"}
    with pytest.raises(RateLimitError) as info:
        ADAPTER.parse_chat({}, as_bytes(body), "m")
    assert info.value.retryable


def test_body_without_choices_is_a_format_error() -> None:
    with pytest.raises(ResponseFormatError):
        ADAPTER.parse_chat({}, b'{"id": "x"}', "m")


# --- embeddings ----------------------------------------------------------------------------------


def test_embeddings_sample_base64_is_decoded_to_unit_float32_vector() -> None:
    _, headers, content = recorded("openai_embeddings.json")
    parsed = ADAPTER.parse_embeddings(headers, content, "text-embedding-3-small")
    vector = parsed.body["data"][0]["embedding"]
    assert len(vector) == 1536
    assert norm(vector) == pytest.approx(1.0, abs=1e-3)
    assert parsed.usage.prompt_tokens == 12
    assert parsed.request_id == "req_85d126466fc11bbf5ef4ee743d0c157a"
    assert parsed.body["object"] == "list"


def test_embeddings_batch_sample_is_returned_in_index_order() -> None:
    _, headers, content = recorded("openai_embeddings_batch2.json")
    body = load_sample("openai_embeddings_batch2.json")["response"]["body"]
    in_order = ADAPTER.parse_embeddings(headers, content, "m").body["data"]
    body["data"].reverse()
    reordered = ADAPTER.parse_embeddings(headers, as_bytes(body), "m").body["data"]
    assert [d["index"] for d in reordered] == [0, 1]
    assert reordered[0]["embedding"] == in_order[0]["embedding"]
    assert reordered[0]["embedding"] != reordered[1]["embedding"]
    assert all(len(d["embedding"]) == 1536 for d in reordered)


def test_float_embeddings_pass_through() -> None:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "m",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    parsed = ADAPTER.parse_embeddings({}, as_bytes(body), "m")
    assert parsed.body["data"][0]["embedding"] == [0.5, -0.25]
    assert parsed.usage.total_tokens == 3


def test_base64_decoding_is_little_endian_float32() -> None:
    packed = base64.b64encode(struct.pack("<2f", 1.5, -2.0)).decode()
    body = {"data": [{"index": 0, "embedding": packed}], "model": "m"}
    assert ADAPTER.parse_embeddings({}, as_bytes(body), "m").body["data"][0]["embedding"] == [
        1.5,
        -2.0,
    ]


# --- errors --------------------------------------------------------------------------------------


def test_404_model_not_found_sample() -> None:
    status, headers, content = recorded("openai_404_model_not_found.json")
    error = ADAPTER.parse_error(status, headers, content)
    assert isinstance(error, NotFoundError)
    assert error.code == "model_not_found"
    assert not error.retryable
    assert "does not exist" in error.message


def test_429_request_too_large_is_never_retried() -> None:
    case = example("openai_429_error.json", 0)
    error = error_of(case["status"], case["body"])
    assert isinstance(error, QuotaExceededError)
    assert not error.retryable
    assert error.code == "rate_limit_exceeded"


def test_429_rate_limit_is_retried_after_the_hinted_delay() -> None:
    case = example("openai_429_error.json", 1)
    error = error_of(case["status"], {"error": case["error_object"]})
    assert type(error) is RateLimitError
    assert error.retryable
    assert error.retry_after == pytest.approx(1.574)


def test_429_insufficient_quota_is_never_retried() -> None:
    case = example("openai_429_error.json", 2)
    error = error_of(case["status"], case["body"])
    assert isinstance(error, QuotaExceededError)
    assert error.code == "insufficient_quota"
    assert not error.retryable


def test_429_with_headers_but_no_hint_is_plain_rate_limit() -> None:
    case = example("openai_429_error.json", 3)
    body = {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}
    error = error_of(case["status"], body, case["headers"])
    assert type(error) is RateLimitError
    assert error.retry_after is None


def test_429_millisecond_hint() -> None:
    body = {"error": {"message": "Rate limit reached. Please try again in 644ms.", "code": "x"}}
    assert error_of(429, body).retry_after == pytest.approx(0.644)


@pytest.mark.parametrize(("index", "code"), [(0, None), (1, "1300"), (2, "1300")])
def test_mistral_429_bodies(index: int, code: str | None) -> None:
    case = example("mistral_429_error.json", index)
    error = error_of(case["status"], case["body"])
    assert type(error) is RateLimitError
    assert error.retryable
    assert error.code == code
    assert "ate limit exceeded" in error.message


def test_openrouter_429_integer_code_and_upstream_message() -> None:
    status, headers, content = recorded("openrouter_429.json")
    error = ADAPTER.parse_error(status, headers, content)
    assert type(error) is RateLimitError
    assert error.code == "429"
    assert error.retryable
    assert "temporarily rate-limited upstream" in error.message


def test_vllm_nested_error_with_integer_code() -> None:
    body = {"error": {"message": "max_tokens too large", "type": "BadRequestError", "code": 400}}
    error = error_of(400, body)
    assert isinstance(error, BadRequestError)
    assert error.code == "400"
    assert error.message == "max_tokens too large"


def test_vllm_flat_error_body() -> None:
    body = {
        "object": "error",
        "message": "The model `x` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    error = error_of(404, body)
    assert isinstance(error, NotFoundError)
    assert error.message == "The model `x` does not exist."


def test_tgi_overloaded_429_is_retried() -> None:
    error = error_of(429, {"error": "Model is overloaded", "error_type": "overloaded"})
    assert type(error) is RateLimitError
    assert error.retryable
    assert error.code == "overloaded"


@pytest.mark.parametrize(("status", "cls"), [(422, BadRequestError), (424, ProviderError)])
def test_tgi_validation_and_generation_errors_are_not_retried(
    status: int, cls: type[ProviderError]
) -> None:
    error = error_of(status, {"error": "Input validation error", "error_type": "validation"})
    assert type(error) is cls
    assert not error.retryable


def test_llamacpp_503_unavailable_is_retried() -> None:
    body = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    error = error_of(503, body)
    assert isinstance(error, ServerError)
    assert error.retryable
    assert error.code == "503"


def test_x_should_retry_false_wins_over_status() -> None:
    error = error_of(500, {"error": {"message": "boom"}}, {"X-Should-Retry": "false"})
    assert isinstance(error, ServerError)
    assert not error.retryable


def test_non_json_error_body_becomes_the_message() -> None:
    error = ADAPTER.parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(error, ServerError)
    assert "Bad Gateway" in error.message


# --- building ------------------------------------------------------------------------------------


def test_build_chat_url_auth_and_body() -> None:
    ep = endpoint("openai", "https://api.openai.com/v1/", "sk-test", organization="org-1")
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {}}
    request = ADAPTER.build_chat(ep, "gpt-4o-mini", body)
    assert request.method == "POST"
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["openai-organization"] == "org-1"
    payload = sent(request.body)
    assert payload["model"] == "gpt-4o-mini"
    assert payload["stream"] is False
    assert "stream_options" not in payload


def test_build_chat_without_key_sends_no_authorization() -> None:
    request = ADAPTER.build_chat(
        endpoint("vllm", "http://localhost:8000/v1"), "m", {"messages": []}
    )
    assert "authorization" not in request.headers


def test_build_embeddings_url_and_body() -> None:
    ep = endpoint("openai", "https://api.openai.com/v1", "sk-test")
    request = ADAPTER.build_embeddings(ep, "text-embedding-3-small", ["a", "b"], {"dimensions": 8})
    assert request.url == "https://api.openai.com/v1/embeddings"
    assert sent(request.body) == {
        "dimensions": 8,
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
    }


# --- shared helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("59s", 59.0), ("1.574s", 1.574), ("644ms", 0.644), ("2m59.56s", 179.56), ("6m0s", 360.0)],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 seconds", "1.5"])
def test_duration_seconds_rejects_non_durations(text: str) -> None:
    assert duration_seconds(text) is None


def test_retry_hint_reads_gemini_style_text() -> None:
    assert retry_hint("Quota exceeded. Please retry in 45.578569677s.") == pytest.approx(
        45.578569677
    )
    assert retry_hint("no hint here") is None


def test_split_system_lifts_system_and_developer_messages() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
        {"role": "user", "content": "hi"},
    ]
    system, turns = split_system(messages, "p")
    assert system == "Be brief.\n\nNo emoji."
    assert [(role, [part.text for part in parts]) for role, parts in turns] == [("user", ["hi"])]


def test_tool_messages_are_refused() -> None:
    with pytest.raises(BadRequestError, match="tool messages"):
        split_system([{"role": "tool", "content": "42", "tool_call_id": "c"}], "p")


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "function"}]},
        {"tool_choice": "auto"},
        {"n": 2},
        {"logprobs": True},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_reject_unsupported_fields(extra: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError, match="does not support"):
        reject_unsupported({"messages": [], **extra}, "p")


def test_reject_unsupported_allows_harmless_fields() -> None:
    body = {"tools": [], "tool_choice": "none", "n": 1, "response_format": {"type": "text"}}
    reject_unsupported(body, "p")
    reject_unsupported({"response_format": {"type": "json_object"}}, "p", json_output=True)


def test_image_data_url_is_split_into_mime_and_base64() -> None:
    part = image_part("data:image/png;base64,iVBORw0KGgo=", "p")
    assert (part.kind, part.mime, part.data) == ("image", "image/png", "iVBORw0KGgo=")
    assert image_part("https://example.com/cat.png", "p").url == "https://example.com/cat.png"
    with pytest.raises(BadRequestError):
        image_part("data:text/plain,hello", "p")
