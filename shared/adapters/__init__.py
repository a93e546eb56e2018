"""Protocol adapters by name. An OpenAI-compatible provider is a registry row, not a module."""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters.base import Adapter, Endpoint, HttpRequest, Parsed
from shared.adapters.openai import OpenAIAdapter

__all__ = ["Adapter", "Endpoint", "HttpRequest", "Parsed", "get_adapter", "register_adapter"]

_FACTORIES: dict[str, Callable[[], Adapter]] = {
    "openai": OpenAIAdapter,
    "openai-compatible": OpenAIAdapter,
}


def register_adapter(name: str, factory: Callable[[], Adapter]) -> None:
    _FACTORIES[name] = factory


def get_adapter(name: str) -> Adapter:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise KeyError(f"no adapter named {name!r}; known: {', '.join(sorted(_FACTORIES))}") from None
