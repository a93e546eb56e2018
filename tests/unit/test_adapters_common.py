"""Helpers the adapter tests share, the adapter registry, and a guard that every recorded sample
is fed through an adapter by at least one test."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from shared.adapters import Adapter, Endpoint, get_adapter
from tests.conftest import SAMPLES, load_sample

ADAPTER_NAMES = (
    "openai",
    "openai-compatible",
    "anthropic",
    "gemini",
    "ollama",
    "cohere",
    "huggingface",
    "bedrock",
    "vertex",
)


def as_bytes(body: Any) -> bytes:
    """A recorded body as the bytes the server sent (strings verbatim, JSON re-encoded)."""
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def flat_headers(headers: dict[str, Any] | None) -> dict[str, str]:
    """Recorded headers as a plain dict (cassettes store repeated headers as lists)."""
    return {k: ", ".join(v) if isinstance(v, list) else str(v) for k, v in (headers or {}).items()}


def recorded(name: str, part: str | None = "response") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body bytes) of a sample's response (or of the sample itself)."""
    sample = load_sample(name)
    response = sample[part] if part else sample
    return (
        int(response["status"]),
        flat_headers(response.get("headers")),
        as_bytes(response["body"]),
    )


def request_body(name: str) -> Any:
    return load_sample(name)["request"]["body"]


def request_url(name: str) -> str:
    return str(load_sample(name)["request"]["url"])


def sent(body: bytes) -> Any:
    return json.loads(body)


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def endpoint(provider: str, base_url: str, key: str | None = None, **options: str) -> Endpoint:
    return Endpoint(provider, base_url, key, options)


@pytest.mark.parametrize("name", ADAPTER_NAMES)
def test_every_adapter_is_registered_and_meets_the_protocol(name: str) -> None:
    adapter = get_adapter(name)
    assert isinstance(adapter, Adapter)
    assert isinstance(adapter.max_embed_inputs, int)


@pytest.mark.parametrize(
    ("name", "cls_name"),
    [
        ("anthropic", "AnthropicAdapter"),
        ("gemini", "GeminiAdapter"),
        ("ollama", "OllamaAdapter"),
        ("cohere", "CohereAdapter"),
        ("huggingface", "HuggingFaceAdapter"),
        ("bedrock", "BedrockAdapter"),
        ("vertex", "VertexAdapter"),
    ],
)
def test_registry_names_map_to_their_adapter(name: str, cls_name: str) -> None:
    adapter = get_adapter(name)
    assert type(adapter).__name__ == cls_name
    assert adapter.name == name


def test_unknown_adapter_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"known: .*anthropic"):
        get_adapter("nope")


def test_adapters_with_signing_or_tokens_expose_authorize() -> None:
    for name in ("bedrock", "vertex"):
        assert callable(getattr(get_adapter(name), "authorize", None))
    for name in ("openai", "anthropic", "gemini", "ollama", "cohere", "huggingface"):
        assert getattr(get_adapter(name), "authorize", None) is None


def test_every_recorded_sample_is_fed_through_an_adapter() -> None:
    sources = "".join(p.read_text() for p in Path(__file__).parent.glob("test_adapters_*.py"))
    used = set(re.findall(r'"([a-z0-9_]+\.json)"', sources))
    missing = sorted(p.name for p in SAMPLES.glob("*.json") if p.name not in used)
    assert not missing, f"samples no adapter test reads: {missing}"
