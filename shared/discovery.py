"""Find local model servers: probe each local provider's model list, all at once.

Ollama answers `GET /api/tags`; OpenAI-compatible servers (LM Studio, vLLM, llama.cpp, MLX,
SGLang, TGI, LocalAI, LiteLLM, custom loopback endpoints) answer `GET <base>/models`. Base URLs
follow the usual precedence (env overrides such as `OLLAMA_HOST` or `VLLM_BASE_URL`, then the config
file, then the registry default). Servers sharing a URL (several default to port 8080) are probed
once. Proxies from the environment are ignored: these are local calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Final

import httpx
import msgspec

from shared.config import find_key, resolve_base_url
from shared.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ResponseFormatError,
)
from shared.registry import ProviderSpec, all_providers, get

DEFAULT_TIMEOUT: Final = 2.0
"""Seconds for one probe, connect to last byte."""


class DiscoveryResult(msgspec.Struct, frozen=True):
    """One local provider: reachable (`ok`) with its models, or why not (`error`)."""

    name: str
    url: str
    ok: bool
    model_count: int = 0
    models: tuple[str, ...] = ()
    error: str | None = None


def local_providers() -> list[ProviderSpec]:
    """Rows discovery probes: local servers that publish a model list."""
    return [spec for spec in all_providers() if spec.local and spec.discovery_path]


def models_url(spec: ProviderSpec, env: Mapping[str, str] | None = None) -> str:
    """Where `spec` lists its models (base URL + discovery path, `/models` by default)."""
    base = resolve_base_url(spec, env)
    return base + (spec.discovery_path or "/models")


async def discover(
    timeout: float = DEFAULT_TIMEOUT, providers: Iterable[str | ProviderSpec] | None = None, *,
    env: Mapping[str, str] | None = None, client: httpx.AsyncClient | None = None,
) -> list[DiscoveryResult]:
    """Probe every local provider (or `providers`) concurrently; one result each, in order."""
    specs = local_providers() if providers is None else [_spec(p) for p in providers]
    async with _client(client, timeout) as http:
        urls = {spec.id: models_url(spec, env) for spec in specs}
        unique: dict[str, ProviderSpec] = {}
        for spec in specs:
            unique.setdefault(urls[spec.id], spec)
        found = await asyncio.gather(*(_probe(s, u, timeout, env, http) for u, s in unique.items()))
    by_url = dict(zip(unique, found, strict=True))
    return [_as(spec, by_url[urls[spec.id]]) for spec in specs]


async def list_live_models(
    spec: ProviderSpec, timeout: float = DEFAULT_TIMEOUT, *, env: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[str]:
    """Model names a running local server reports; a `ProviderError` subclass when it cannot."""
    async with _client(client, timeout) as http:
        return await _fetch(spec, models_url(spec, env), timeout, env, http)


async def _probe(
    spec: ProviderSpec, url: str, timeout: float, env: Mapping[str, str] | None,
    http: httpx.AsyncClient,
) -> DiscoveryResult:
    try:
        models = await _fetch(spec, url, timeout, env, http)
    except ProviderError as exc:
        return DiscoveryResult(spec.id, _shown(url), False, error=exc.message)
    return DiscoveryResult(spec.id, _shown(url), True, len(models), tuple(models))


async def _fetch(
    spec: ProviderSpec, url: str, timeout: float, env: Mapping[str, str] | None,
    http: httpx.AsyncClient,
) -> list[str]:
    key, _ = find_key(spec, env)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        response = await asyncio.wait_for(http.get(url, headers=headers), timeout)
    except TimeoutError:
        raise ProviderTimeoutError(f"no answer within {timeout:g}s", provider=spec.id) from None
    except httpx.HTTPError as exc:
        raise ProviderConnectionError(_reason(exc), provider=spec.id) from None
    if response.status_code != 200:
        raise ResponseFormatError(f"HTTP {response.status_code}", provider=spec.id,
                                  status=response.status_code)
    return parse_models(response.content, spec.id)


def parse_models(content: bytes, provider: str = "") -> list[str]:
    """Names from an Ollama `/api/tags` (`models[].name`) or OpenAI `/models` (`data[].id`) body."""
    try:
        data: Any = msgspec.json.decode(content.strip() or b"null")
    except msgspec.DecodeError:
        raise ResponseFormatError("model list is not JSON", provider=provider) from None
    items = data.get("models", data.get("data")) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ResponseFormatError("no model list in the answer", provider=provider)
    names = (_model_name(item) for item in items)
    return [name for name in names if name]


def _model_name(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        value = item.get("name") or item.get("id") or item.get("model")
        return str(value) if value else None
    return None


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return f"unreachable ({text})"


def _shown(models_url: str) -> str:
    """The server address as users configure it (the model-list path dropped)."""
    for suffix in ("/api/tags", "/models"):
        if models_url.endswith(suffix):
            return models_url[: -len(suffix)]
    return models_url


def _as(spec: ProviderSpec, result: DiscoveryResult) -> DiscoveryResult:
    return msgspec.structs.replace(result, name=spec.id)


def _spec(provider: str | ProviderSpec) -> ProviderSpec:
    return provider if isinstance(provider, ProviderSpec) else get(provider)


@contextlib.asynccontextmanager
async def _client(
    given: httpx.AsyncClient | None, timeout: float
) -> AsyncIterator[httpx.AsyncClient]:
    """The caller's client, or a short-lived one that ignores proxy env vars."""
    if given is not None:
        yield given
        return
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        yield client
