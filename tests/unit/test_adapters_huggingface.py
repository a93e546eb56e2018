"""Hugging Face adapter: router chat (OpenAI-shaped) and feature-extraction embeddings."""

from __future__ import annotations

import pytest

from shared.adapters.huggingface import HuggingFaceAdapter
from shared.errors import RateLimitError, ResponseFormatError, ServerError
from tests.unit.test_adapters_common import as_bytes, endpoint, recorded, sent

ADAPTER = HuggingFaceAdapter()
ROUTER = endpoint("huggingface", "https://router.huggingface.co/v1", "hf_testtoken")


def test_router_chat_sample() -> None:
    _, headers, content = recorded("huggingface_router_chat.json")
    parsed = ADAPTER.parse_chat(headers, content, "deepseek-ai/DeepSeek-R1")
    assert parsed.body["choices"][0]["message"]["content"].startswith("<think>")
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (4, 197)
    assert parsed.model == "deepseek-ai/DeepSeek-R1"


def test_build_chat_goes_to_the_router() -> None:
    request = ADAPTER.build_chat(
        ROUTER, "deepseek-ai/DeepSeek-R1", {"messages": [{"role": "user", "content": "hello"}]}
    )
    assert request.url == "https://router.huggingface.co/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer hf_testtoken"
    assert sent(request.body)["model"] == "deepseek-ai/DeepSeek-R1"


def test_build_embeddings_uses_the_router_host_and_keeps_the_model_slash() -> None:
    request = ADAPTER.build_embeddings(
        ROUTER, "BAAI/bge-small-en-v1.5", ["a", "b"], {"normalize": True, "user": "u"}
    )
    assert request.url == (
        "https://router.huggingface.co/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction"
    )
    assert sent(request.body) == {"inputs": ["a", "b"], "normalize": True}
    assert request.headers["authorization"] == "Bearer hf_testtoken"


def test_one_vector_per_input() -> None:
    parsed = ADAPTER.parse_embeddings({"X-Request-Id": "r-1"}, b"[[0.1, 0.2], [0.3, 0.4]]", "m")
    assert [d["embedding"] for d in parsed.body["data"]] == [[0.1, 0.2], [0.3, 0.4]]
    assert parsed.request_id == "r-1"


def test_single_flat_vector_is_one_input() -> None:
    parsed = ADAPTER.parse_embeddings({}, b"[0.5, 0.25]", "m")
    assert [d["embedding"] for d in parsed.body["data"]] == [[0.5, 0.25]]


def test_token_level_features_are_refused() -> None:
    with pytest.raises(ResponseFormatError, match="sentence-embedding"):
        ADAPTER.parse_embeddings({}, b"[[[0.1, 0.2], [0.3, 0.4]]]", "m")


def test_loading_model_503_waits_the_estimated_time() -> None:
    body = {"error": "Model BAAI/bge is currently loading", "estimated_time": 20.0}
    error = ADAPTER.parse_error(503, {}, as_bytes(body))
    assert isinstance(error, ServerError)
    assert error.retryable
    assert error.retry_after == 20.0


def test_tgi_overloaded_is_retried() -> None:
    error = ADAPTER.parse_error(
        429, {}, as_bytes({"error": "Model is overloaded", "error_type": "overloaded"})
    )
    assert type(error) is RateLimitError
    assert error.retryable
    assert error.code == "overloaded"
