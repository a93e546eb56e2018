"""Anthropic Messages adapter against the recorded answers, streams and errors."""

from __future__ import annotations

import pytest

from shared.adapters.anthropic import AnthropicAdapter
from shared.errors import BadRequestError, RateLimitError, ServerError
from tests.conftest import load_sample
from tests.unit.test_adapters_common import as_bytes, endpoint, recorded, request_body, sent

ADAPTER = AnthropicAdapter()
API = endpoint("anthropic", "https://api.anthropic.com", "sk-ant-api03-test")


def test_message_sample() -> None:
    _, headers, content = recorded("anthropic_message.json")
    parsed = ADAPTER.parse_chat(headers, content, "claude-sonnet-4-0")
    choice = parsed.body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hello! It's nice to meet you. How are you doing today?",
    }
    assert choice["finish_reason"] == "stop"
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (9, 18)
    assert parsed.usage.total_tokens == 27
    assert parsed.model == "claude-sonnet-4-20250514"
    assert parsed.request_id == "REQUEST-ID-XXX"  # the header (placeholdered by the recorder)
    assert parsed.body["id"] == "msg_013PpkaYgnUGGRvrYJ9XExPo"
    assert parsed.raw["type"] == "message"


def test_second_message_sample_takes_the_body_id_when_no_header() -> None:
    _, headers, content = recorded("anthropic_message_nonstream_b.json")
    parsed = ADAPTER.parse_chat(headers, content, "claude-sonnet-4-5")
    assert parsed.body["choices"][0]["message"]["content"].startswith("I noticed a small typo")
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (19, 77)
    assert parsed.request_id == "msg_01QHpSAhCiB6L5pL23LjdRAy"
    assert parsed.model == "claude-sonnet-4-5-20250929"


def test_streamed_answer_is_folded() -> None:
    _, headers, content = recorded("anthropic_message_stream_ratelimit_headers.json")
    parsed = ADAPTER.parse_chat(headers, content, "claude-sonnet-4-5")
    assert parsed.body["choices"][0]["message"]["content"] == "- Captain\n- Scoop"
    assert parsed.body["choices"][0]["finish_reason"] == "stop"
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (17, 10)
    assert parsed.request_id == "req_011CYEXg9iLMo4YhB4XfkXBw"
    assert parsed.body["id"] == "msg_017A4s3HAsrqf5d2WvBmrpLr"


def test_overloaded_error_event_after_200_is_a_retryable_server_error() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{}}}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    with pytest.raises(ServerError) as info:
        ADAPTER.parse_chat({}, stream, "m")
    assert info.value.retryable
    assert info.value.code == "overloaded_error"


def test_cache_tokens_count_as_prompt_tokens() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "model": "claude",
        "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "ok"}],
        "stop_reason": "max_tokens",
        "usage": {
            "input_tokens": 3,
            "cache_read_input_tokens": 9511,
            "cache_creation_input_tokens": 1956,
            "output_tokens": 5,
        },
    }
    parsed = ADAPTER.parse_chat({}, as_bytes(body), "claude")
    assert parsed.usage.prompt_tokens == 3 + 9511 + 1956
    assert parsed.body["choices"][0]["message"]["content"] == "ok"
    assert parsed.body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_mapping(stop_reason: str, finish: str) -> None:
    body = {"id": "m", "content": [], "stop_reason": stop_reason, "usage": {}}
    assert ADAPTER.parse_chat({}, as_bytes(body), "c").body["choices"][0]["finish_reason"] == finish


# --- errors --------------------------------------------------------------------------------------


def test_529_overloaded_sample_is_retryable() -> None:
    status, headers, content = recorded("anthropic_529_overloaded.json", None)
    error = ADAPTER.parse_error(status, headers, content)
    assert isinstance(error, ServerError)
    assert error.retryable
    assert error.status == 529
    assert error.code == "overloaded_error"
    assert error.message == "Overloaded"


def test_429_sample_headers_and_body() -> None:
    sample = load_sample("anthropic_429_rate_limit.json")
    headers = sample["headers_example"]["headers"]
    body = sample["body_example"]["body"]
    error = ADAPTER.parse_error(429, headers, as_bytes(body))
    assert type(error) is RateLimitError
    assert error.retryable
    assert error.code == "rate_limit_error"
    assert error.message.startswith("Number of request tokens has exceeded")


def test_429_from_the_openai_compatible_endpoint_envelope() -> None:
    body = load_sample("anthropic_429_rate_limit.json")["openai_compat_endpoint_example"]["body"]
    error = ADAPTER.parse_error(429, {}, as_bytes(body))
    assert type(error) is RateLimitError
    assert error.code == "rate_limit_error"


def test_x_should_retry_false_stops_a_529_retry() -> None:
    _, _, content = recorded("anthropic_529_overloaded.json", None)
    error = ADAPTER.parse_error(529, {"x-should-retry": "false"}, content)
    assert not error.retryable


def test_invalid_request_is_not_retried() -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    error = ADAPTER.parse_error(400, {}, as_bytes(body))
    assert isinstance(error, BadRequestError)
    assert not error.retryable


# --- building ------------------------------------------------------------------------------------


def test_build_chat_matches_the_recorded_request() -> None:
    body = {"messages": [{"role": "user", "content": "Say hello"}]}
    request = ADAPTER.build_chat(API, "claude-sonnet-4-0", body)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert sent(request.body) == request_body("anthropic_message.json")
    assert request.headers["x-api-key"] == "sk-ant-api03-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers


def test_base_url_ending_in_v1_is_not_doubled() -> None:
    ep = endpoint("anthropic", "https://api.anthropic.com/v1/", "k")
    assert ADAPTER.build_chat(ep, "c", {"messages": [{"role": "user", "content": "x"}]}).url == (
        "https://api.anthropic.com/v1/messages"
    )


def test_oauth_token_goes_as_bearer_with_the_beta_flag() -> None:
    ep = endpoint("anthropic", "https://api.anthropic.com", "sk-ant-oat01-abc")
    request = ADAPTER.build_chat(ep, "c", {"messages": [{"role": "user", "content": "x"}]})
    assert request.headers["authorization"] == "Bearer sk-ant-oat01-abc"
    assert request.headers["anthropic-beta"] == "oauth-2025-04-20"
    assert "x-api-key" not in request.headers


def test_system_messages_become_top_level_system_and_params_are_mapped() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "user": "u-1",
    }
    payload = sent(ADAPTER.build_chat(API, "claude", body).body)
    assert payload["system"] == "Be brief."
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user"]
    assert payload["max_tokens"] == 50
    assert payload["stop_sequences"] == ["END"]
    assert (payload["temperature"], payload["top_p"]) == (0.2, 0.9)
    assert payload["metadata"] == {"user_id": "u-1"}
    assert payload["stream"] is False


def test_max_tokens_defaults_to_4096() -> None:
    payload = sent(
        ADAPTER.build_chat(API, "c", {"messages": [{"role": "user", "content": "x"}]}).body
    )
    assert payload["max_tokens"] == 4096


def test_image_data_url_becomes_a_base64_image_block() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    payload = sent(
        ADAPTER.build_chat(API, "c", {"messages": [{"role": "user", "content": content}]}).body
    )
    assert payload["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }


def test_tools_are_refused_rather_than_dropped() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}
    with pytest.raises(BadRequestError, match="tools"):
        ADAPTER.build_chat(API, "c", body)


def test_embeddings_are_refused() -> None:
    with pytest.raises(BadRequestError, match="no embeddings API"):
        ADAPTER.build_embeddings(API, "c", ["x"], {})
