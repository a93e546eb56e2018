"""Protocol adapters by name. An OpenAI-compatible provider is a registry row, not a module."""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters.anthropic import AnthropicAdapter
from shared.adapters.base import Adapter, Endpoint, HttpRequest, Parsed
from shared.adapters.bedrock import BedrockAdapter
from shared.adapters.cohere import CohereAdapter
from shared.adapters.copilot import CopilotAdapter
from shared.adapters.gemini import GeminiAdapter
from shared.adapters.huggingface import HuggingFaceAdapter
from shared.adapters.ollama import OllamaAdapter
from shared.adapters.openai import OpenAIAdapter
from shared.adapters.qwen_oauth import QwenOAuthAdapter
from shared.adapters.vertex import VertexAdapter

__all__ = ["Adapter", "Endpoint", "HttpRequest", "Parsed", "get_adapter", "register_adapter"]

_FACTORIES: dict[str, Callable[[], Adapter]] = {
    "openai": OpenAIAdapter,
    "openai-compatible": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "gemini": GeminiAdapter,
    "ollama": OllamaAdapter,
    "cohere": CohereAdapter,
    "huggingface": HuggingFaceAdapter,
    "bedrock": BedrockAdapter,
    "vertex": VertexAdapter,
    "copilot": CopilotAdapter,
    "qwen-oauth": QwenOAuthAdapter,
}


def register_adapter(name: str, factory: Callable[[], Adapter]) -> None:
    _FACTORIES[name] = factory


def get_adapter(name: str) -> Adapter:
    try:
        return _FACTORIES[name]()
    except KeyError:
        known = ", ".join(sorted(_FACTORIES))
        raise KeyError(f"no adapter named {name!r}; known: {known}") from None
