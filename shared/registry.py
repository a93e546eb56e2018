"""The provider registry: one data row per provider, and name → provider resolution.

Resolution order (as RLM Code does it): explicit provider, then a `provider/model` prefix, then a
case-insensitive alias. Unknown names get the close matches.
"""

from __future__ import annotations

import difflib
from typing import Final, Literal

import msgspec

from shared.errors import UnknownProviderError

Category = Literal["Local", "US Labs", "China Labs", "Model Hosts", "Other Labs", ""]


class ProviderSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """One provider. Env var tuples are in precedence order (`SLUICE_` form first)."""

    id: str
    display_name: str
    adapter: str
    default_base_url: str
    aliases: tuple[str, ...] = ()
    key_env: tuple[str, ...] = ()
    base_url_env: tuple[str, ...] = ()
    default_model: str | None = None
    docs_url: str = ""
    key_required: bool = True
    local: bool = False
    category: Category = ""
    key_prefix: str | None = None
    chat: bool = True
    embeddings: bool = False
    rerank: bool = False
    example_models: tuple[str, ...] = ()
    max_embed_inputs: int = 2048
    free_tier: bool = False


def _envs(*names: str) -> tuple[str, ...]:
    """Env var names with their `SLUICE_`-prefixed forms first."""
    return tuple(f"SLUICE_{n}" for n in names) + names


PROVIDERS: Final[tuple[ProviderSpec, ...]] = (
    ProviderSpec(
        id="openai",
        display_name="OpenAI",
        adapter="openai",
        default_base_url="https://api.openai.com/v1",
        aliases=("gpt",),
        key_env=(*_envs("OPENAI_API_KEY"), "ABI_OPENAI_API_KEY"),
        base_url_env=(*_envs("OPENAI_BASE_URL"), "ABI_OPENAI_BASE_URL", "OPENAI_API_BASE"),
        default_model="gpt-4o-mini",
        docs_url="https://platform.openai.com/docs/api-reference",
        category="US Labs",
        key_prefix="sk-",
        embeddings=True,
        example_models=("gpt-4o", "gpt-4o-mini", "text-embedding-3-small"),
    ),
    ProviderSpec(
        id="vllm",
        display_name="vLLM",
        adapter="openai-compatible",
        default_base_url="http://localhost:8000/v1",
        aliases=("vllm-server",),
        key_env=(*_envs("VLLM_API_KEY"), "ABI_VLLM_API_KEY"),
        base_url_env=(*_envs("VLLM_BASE_URL"), "ABI_VLLM_HOST", "VLLM_HOST"),
        docs_url="https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
        key_required=False,
        local=True,
        category="Local",
        embeddings=True,
    ),
    ProviderSpec(
        id="openai_compatible",
        display_name="OpenAI-compatible (generic / custom endpoint)",
        adapter="openai-compatible",
        default_base_url="http://localhost:8000/v1",
        aliases=("openai-compatible", "compatible"),
        key_env=_envs("OPENAI_COMPATIBLE_API_KEY"),
        base_url_env=_envs("OPENAI_COMPATIBLE_BASE_URL"),
        key_required=False,
        local=True,
        category="Local",
        embeddings=True,
    ),
)

_BY_ID: Final[dict[str, ProviderSpec]] = {p.id: p for p in PROVIDERS}
_BY_ALIAS: Final[dict[str, ProviderSpec]] = {
    name.lower(): p for p in PROVIDERS for name in (p.id, *p.aliases)
}


def all_providers() -> tuple[ProviderSpec, ...]:
    return PROVIDERS


def lookup(name: str) -> ProviderSpec | None:
    """A provider by id or alias, case-insensitive; None when nothing matches."""
    return _BY_ALIAS.get(name.strip().lower())


def get(name: str) -> ProviderSpec:
    """A provider by id or alias; `UnknownProviderError` naming the close matches otherwise."""
    spec = lookup(name)
    if spec is None:
        raise UnknownProviderError(name, close_matches(name))
    return spec


def close_matches(name: str, limit: int = 3) -> list[str]:
    candidates = sorted(_BY_ALIAS)
    found = difflib.get_close_matches(name.lower(), candidates, n=limit * 2, cutoff=0.6)
    ids: list[str] = []
    for match in found:
        pid = _BY_ALIAS[match].id
        if pid not in ids:
            ids.append(pid)
    return ids[:limit]


def resolve(model: str, provider: str | None = None) -> tuple[ProviderSpec, str]:
    """(provider, model name for that provider) from an explicit provider or a `provider/model` name.

    `vllm/meta-llama/Llama-3.1-8B` → (vllm, `meta-llama/Llama-3.1-8B`); with `provider="openrouter"`,
    `openai/gpt-4o` stays whole (aggregators name upstream models `provider/model`).
    """
    if provider:
        spec = get(provider)
        return spec, normalize_model_name(spec, model)
    prefix, sep, rest = model.partition("/")
    if sep and (spec := lookup(prefix)) is not None:
        return spec, rest
    if (spec := lookup(model)) is not None and spec.default_model:
        return spec, spec.default_model
    raise UnknownProviderError(prefix if sep else model, close_matches(prefix if sep else model))


def normalize_model_name(spec: ProviderSpec, model: str) -> str:
    """Drop a redundant `provider/` prefix naming this same provider."""
    prefix, sep, rest = model.partition("/")
    if sep and lookup(prefix) is spec:
        return rest
    return model
