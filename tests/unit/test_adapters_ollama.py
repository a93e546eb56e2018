"""Ollama native adapter against the recorded `/api/chat`, `/api/generate`, `/api/embed` and
`/api/tags` answers."""

from __future__ import annotations

import pytest

from shared.adapters.ollama import OllamaAdapter, parse_tags
from shared.errors import BadRequestError, NotFoundError, ServerError
from tests.conftest import load_sample
from tests.unit.test_adapters_common import as_bytes, endpoint, recorded, request_body, sent

ADAPTER = OllamaAdapter()
LOCAL = endpoint("ollama", "http://localhost:11434")


def test_chat_sample() -> None:
    _, headers, content = recorded("ollama_api_chat.json")
    parsed = ADAPTER.parse_chat(headers, content, "mistral:7b-instruct")
    choice = parsed.body["choices"][0]
    assert choice["message"]["content"].startswith(" Yes, I understand.")
    assert choice["finish_reason"] == "stop"
    assert (
        parsed.usage.prompt_tokens,
        parsed.usage.completion_tokens,
        parsed.usage.total_tokens,
    ) == (37, 24, 61)
    assert parsed.model == "mistral:7b-instruct"
    assert parsed.raw["eval_duration"] == 1135413666


def test_tool_call_answer_reports_tool_calls() -> None:
    body = load_sample("ollama_api_chat.json")["_also_tool_call"]["response_body"]
    parsed = ADAPTER.parse_chat({}, as_bytes(body), "gpt-oss:20b")
    assert parsed.body["choices"][0]["finish_reason"] == "tool_calls"
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (126, 27)


def test_generate_shaped_answer_is_read_too() -> None:
    _, headers, content = recorded("ollama_api_generate.json")
    parsed = ADAPTER.parse_chat(headers, content, "llama3.1")
    assert parsed.body["choices"][0]["message"]["content"].startswith(
        '```\n{\n  "name": "Alice Llama"'
    )
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (67, 22)


def test_length_done_reason() -> None:
    body = {
        "model": "m",
        "message": {"role": "assistant", "content": "x"},
        "done": True,
        "done_reason": "length",
    }
    assert (
        ADAPTER.parse_chat({}, as_bytes(body), "m").body["choices"][0]["finish_reason"] == "length"
    )


def test_embed_sample_prefix() -> None:
    prefix = load_sample("ollama_api_embed.json")["response_prefix"]
    body = {
        "model": prefix["model"],
        "embeddings": [prefix["embeddings_first_values"]],
        "prompt_eval_count": 6,
    }
    parsed = ADAPTER.parse_embeddings({}, as_bytes(body), "nomic-embed-text_gpu")
    vector = parsed.body["data"][0]["embedding"]
    assert vector[:3] == pytest.approx([0.009515343, 0.044470344, -0.14038579])
    assert len(vector) == len(prefix["embeddings_first_values"])
    assert parsed.usage.prompt_tokens == 6
    assert parsed.model == "nomic-embed-text_gpu"


def test_build_embeddings_matches_the_recorded_request_shape() -> None:
    recorded_body = load_sample("ollama_api_embed.json")["_also_docs_example"]["request"]
    request = ADAPTER.build_embeddings(LOCAL, "all-minilm", recorded_body["input"], {})
    assert request.url == "http://localhost:11434/api/embed"
    assert sent(request.body) == recorded_body


def test_tags_sample() -> None:
    _, _, content = recorded("ollama_api_tags.json")
    assert parse_tags(content) == ["embeddinggemma:latest", "gemma3n:e2b"]
    cloud = load_sample("ollama_api_tags.json")["_also_ollama_com_cloud"]["body"]
    assert ADAPTER.parse_tags(as_bytes(cloud)) == [
        "deepseek-v3.1:671b",
        "gpt-oss:120b",
        "gpt-oss:20b",
    ]


def test_build_tags_request() -> None:
    cloud = endpoint("ollama", "https://ollama.com", "ollama-key")
    request = ADAPTER.build_tags(cloud)
    assert (request.method, request.url) == ("GET", "https://ollama.com/api/tags")
    assert request.headers["authorization"] == "Bearer ollama-key"


def test_build_chat_matches_the_recorded_request() -> None:
    body = {"messages": request_body("ollama_api_chat.json")["messages"]}
    request = ADAPTER.build_chat(LOCAL, "mistral:7b-instruct", body)
    assert request.url == "http://localhost:11434/api/chat"
    assert sent(request.body) == request_body("ollama_api_chat.json")
    assert "authorization" not in request.headers


def test_build_chat_options_format_and_images() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 64,
        "temperature": 0.0,
        "seed": 7,
        "stop": "###",
        "response_format": {"type": "json_object"},
    }
    payload = sent(
        ADAPTER.build_chat(endpoint("ollama", "http://gpu:11434/v1/"), "llava", body).body
    )
    assert payload["messages"] == [{"role": "user", "content": "What is this?", "images": ["AAAA"]}]
    assert payload["options"] == {"num_predict": 64, "stop": ["###"], "temperature": 0.0, "seed": 7}
    assert payload["format"] == "json"
    assert payload["stream"] is False


def test_json_schema_goes_in_format() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
    }
    assert sent(ADAPTER.build_chat(LOCAL, "m", body).body)["format"] == schema


def test_web_image_urls_are_refused() -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    with pytest.raises(BadRequestError, match="data URLs"):
        ADAPTER.build_chat(LOCAL, "m", {"messages": [{"role": "user", "content": content}]})


def test_queue_full_503_is_retried() -> None:
    body = {"error": "server busy, please try again.  maximum pending requests exceeded"}
    error = ADAPTER.parse_error(503, {}, as_bytes(body))
    assert isinstance(error, ServerError)
    assert error.retryable
    assert error.message.startswith("server busy")


def test_model_not_found() -> None:
    error = ADAPTER.parse_error(404, {}, as_bytes({"error": "model 'x' not found"}))
    assert isinstance(error, NotFoundError)
    assert not error.retryable
