"""Curated model lists per provider (RLM Code's catalog, `providers.md` §1b).

A curated list takes priority over a row's `example_models`; a provider with neither offers its
default model. Live lists from running local servers come from `shared.discovery`.
"""

from __future__ import annotations

from typing import Final

from shared.registry import get

CATALOG: Final[dict[str, tuple[str, ...]]] = {
    "ollama": ("qwen2.5-coder:7b", "llama3.2:3b", "gpt-oss:20b", "gpt-oss:120b"),
    "openai": (
        "gpt-5.3-codex", "gpt-5.2", "gpt-5.2-pro", "gpt-5.2-codex", "gpt-5.1", "gpt-5.1-codex",
        "gpt-5.1-codex-mini", "gpt-4o-2024-11-20", "gpt-4o", "gpt-4o-mini", "o1", "o1-mini",
    ),
    "anthropic": (
        "claude-opus-4-6", "claude-opus-4-5-20251101", "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20251001", "claude-sonnet-4-20250514", "claude-opus-4-20250514",
        "claude-haiku-4-20250514",
    ),
    "gemini": (
        "gemini-3-pro-preview", "gemini-3-flash-preview", "gemini-2.5-pro", "gemini-2.5-flash",
        "gemini-2.0-flash", "gemini-flash-latest",
    ),
    "xai": ("grok-3", "grok-3-mini", "grok-2", "grok-beta"),
    "perplexity": ("sonar-pro", "sonar", "sonar-reasoning"),
    "deepseek": (
        "deepseek-ai/DeepSeek-V3.2", "deepseek-ai/DeepSeek-R1", "deepseek-chat", "deepseek-coder",
        "deepseek-reasoner",
    ),
    "moonshot": ("moonshot-v1-128k", "moonshot-v1-32k", "moonshot-v1-8k", "kimi-k2"),
    "alibaba": (
        "qwen-max", "qwen-plus", "qwen-turbo", "qwen2.5-coder-32b-instruct", "qwen2.5-72b-instruct",
    ),
    "openrouter": (
        "anthropic/claude-sonnet-4", "openai/gpt-4o", "google/gemini-2.0-flash",
        "meta-llama/llama-3.3-70b-instruct",
    ),
    "opencode": (
        "glm-4.7-free", "grok-code", "kimi-k2.5-free", "gpt-5-nano", "minimax-m2.1-free",
        "big-pickle",
    ),
    "groq": (
        "llama-3.3-70b-versatile", "llama-3.1-8b-instant", "mixtral-8x7b-32768", "gemma2-9b-it",
    ),
    "together": (
        "meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-Coder-32B-Instruct",
        "deepseek-ai/DeepSeek-R1", "mistralai/Mixtral-8x22B-Instruct-v0.1",
    ),
    "cerebras": ("llama-3.3-70b", "qwen-3-coder-480b"),
    "mistral": (
        "mistral-large-2411", "mistral-medium-2505", "mistral-nemo", "codestral-latest",
        "mistral-small-latest",
    ),
}
"""Provider id → curated model names, best first."""


def models_for(provider: str, limit: int | None = None) -> list[str]:
    """Curated models for a provider id or alias (`UnknownProviderError` for an unknown name)."""
    spec = get(provider)
    models = CATALOG.get(spec.id) or spec.example_models
    if not models and spec.default_model:
        models = (spec.default_model,)
    return list(models if limit is None else models[: max(limit, 0)])
