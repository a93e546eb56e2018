"""The provider registry: every row is usable, names are unambiguous, resolution is a table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from shared import registry
from shared.adapters import get_adapter
from shared.catalog import CATALOG, models_for
from shared.config import resolve_endpoint
from shared.errors import ConfigError, InputError, UnknownProviderError
from shared.registry import KNOWN_ADAPTERS, PROVIDERS, ProviderSpec, ProviderTable, check_key_format
from tests.conftest import load_sample

# The 48 ids of providers.md §1 (discord and local_scheduler are not LLM providers).
MASTER_IDS = {
    "openai", "anthropic", "gemini", "cohere", "ollama", "huggingface", "bedrock", "vertex",
    "copilot", "qwen_oauth", "lmstudio", "vllm", "mlx", "llamacpp", "sglang", "tgi", "localai",
    "litellm", "openai_compatible", "xai", "perplexity", "deepseek", "moonshot", "alibaba",
    "openrouter", "opencode", "groq", "together", "siliconflow", "fireworks", "cerebras", "mistral",
    "sambanova", "hyperbolic", "novita", "lepton", "corethink", "featherless", "requesty", "glama",
    "chutes", "glm", "doubao", "zai", "yi", "minimax", "hunyuan", "stepfun",
}
SEED_ALIASES = {
    "gpt": "openai", "claude": "anthropic", "google": "gemini", "local-ollama": "ollama",
    "lm_studio": "lmstudio", "lm-studio": "lmstudio", "vllm-server": "vllm", "mlx-lm": "mlx",
    "llama_cpp": "llamacpp", "llama-cpp": "llamacpp", "sg-lang": "sglang",
    "text-generation-inference": "tgi", "openai-compatible": "openai_compatible",
    "compatible": "openai_compatible", "kimi": "moonshot", "qwen": "alibaba",
    "dashscope": "alibaba",
    "opencode-zen": "opencode", "togetherai": "together", "silicon-flow": "siliconflow",
}
# Env var names that two providers may deliberately share. None do: Vertex rejects API keys, so
# GOOGLE_API_KEY belongs to Gemini alone, and every local server has its own *_BASE_URL/*_HOST.
SHARED_ENV: dict[str, set[str]] = {}
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def env_names(spec: ProviderSpec) -> set[str]:
    options = {name for _, names in spec.option_env for name in names}
    return {*spec.key_env, *spec.base_url_env, *spec.model_env, *spec.credential_env, *options}


def test_every_master_table_provider_has_one_row() -> None:
    ids = [spec.id for spec in PROVIDERS]
    assert len(ids) == len(set(ids)) == 48
    assert set(ids) == MASTER_IDS


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda s: s.id)
def test_row_is_usable(spec: ProviderSpec) -> None:
    assert spec.adapter in KNOWN_ADAPTERS
    url = urlsplit(spec.default_base_url)
    assert url.scheme == "https" or (url.scheme == "http" and url.hostname in LOOPBACK)
    assert not spec.default_base_url.endswith("/")
    assert spec.local == (url.scheme == "http")
    assert spec.max_embed_inputs >= 1
    assert not spec.local or not spec.key_required
    assert spec.supported


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda s: s.id)
def test_env_var_lists_put_the_sluice_form_first(spec: ProviderSpec) -> None:
    for names in (spec.key_env, spec.base_url_env, spec.model_env):
        if names:
            assert names[0].startswith("SLUICE_"), names
            assert len(names) == len(set(names))


@pytest.mark.parametrize("spec", [s for s in PROVIDERS if s.supported], ids=lambda s: s.id)
def test_supported_rows_have_an_adapter(spec: ProviderSpec) -> None:
    assert get_adapter(spec.adapter) is not None


def test_env_var_names_are_unique_across_providers() -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for spec in PROVIDERS:
        for name in env_names(spec):
            owners[name].add(spec.id)
    shared = {name: ids for name, ids in owners.items() if len(ids) > 1}
    assert shared == SHARED_ENV


def test_names_and_aliases_are_unique() -> None:
    names = [name.lower() for spec in PROVIDERS for name in (spec.id, *spec.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("alias", "provider"), sorted(SEED_ALIASES.items()))
def test_every_seed_alias_resolves(alias: str, provider: str) -> None:
    assert registry.get(alias).id == provider
    assert registry.get(alias.upper()).id == provider


@pytest.mark.parametrize(
    ("provider", "sample", "kind"),
    [
        ("openai", "openai_chat_completion.json", "chat"),
        ("openai", "openai_embeddings.json", "embeddings"),
        ("groq", "groq_chat.json", "chat"),
        ("deepseek", "deepseek_chat.json", "chat"),
        ("cerebras", "cerebras_chat.json", "chat"),
        ("mistral", "mistral_chat.json", "chat"),
        ("openrouter", "openrouter_chat.json", "chat"),
    ],
)
def test_default_base_url_reaches_the_recorded_url(provider: str, sample: str, kind: str) -> None:
    spec = registry.get(provider)
    endpoint = resolve_endpoint(spec, {spec.key_env[0]: "test-key"})
    adapter = get_adapter(spec.adapter)
    if kind == "chat":
        request = adapter.build_chat(endpoint, "m", {"messages": []})
    else:
        request = adapter.build_embeddings(endpoint, "m", ["x"], {})
    assert request.url == load_sample(sample)["request"]["url"]


@pytest.mark.parametrize(
    ("provider", "limit"),
    [("openai", 2048), ("gemini", 100), ("cohere", 96), ("alibaba", 10), ("bedrock", 96),
     ("vertex", 250)],
)
def test_embedding_caps(provider: str, limit: int) -> None:
    assert registry.get(provider).max_embed_inputs == limit


@pytest.mark.parametrize(
    ("model", "provider", "expected_id", "expected_model"),
    [
        ("gpt-4o", "openai", "openai", "gpt-4o"),
        ("gpt-4o", "GPT", "openai", "gpt-4o"),
        ("openai/gpt-4o", None, "openai", "gpt-4o"),
        ("OpenAI/gpt-4o", None, "openai", "gpt-4o"),
        ("openai/gpt-4o", "openai", "openai", "gpt-4o"),
        ("claude", None, "anthropic", "claude-sonnet-4-6"),
        ("CLAUDE", None, "anthropic", "claude-sonnet-4-6"),
        ("vllm/meta-llama/Llama-3.1-8B", None, "vllm", "meta-llama/Llama-3.1-8B"),
        ("meta-llama/Llama-3.1-8B", "vllm", "vllm", "meta-llama/Llama-3.1-8B"),
        ("google/gemma-2-9b-it", "vllm", "vllm", "google/gemma-2-9b-it"),
        ("openai/gpt-4o", "openrouter", "openrouter", "openai/gpt-4o"),
        ("openrouter/openai/gpt-4o", "openrouter", "openrouter", "openai/gpt-4o"),
        ("openrouter/auto", "openrouter", "openrouter", "openrouter/auto"),
        ("openrouter/openai/gpt-4o", None, "openrouter", "openai/gpt-4o"),
        ("deepseek-ai/DeepSeek-R1", "huggingface", "huggingface", "deepseek-ai/DeepSeek-R1"),
        ("Qwen/Qwen2.5-Coder-32B", "together", "together", "Qwen/Qwen2.5-Coder-32B"),
        ("qwen/qwen-max", None, "alibaba", "qwen-max"),
        ("kimi/moonshot-v1-8k", None, "moonshot", "moonshot-v1-8k"),
        ("google/gemini-2.0-flash", None, "gemini", "gemini-2.0-flash"),
        ("lm-studio/local-model", None, "lmstudio", "local-model"),
    ],
)
def test_resolve(model: str, provider: str | None, expected_id: str, expected_model: str) -> None:
    spec, name = registry.resolve(model, provider)
    assert (spec.id, name) == (expected_id, expected_model)


def test_unknown_prefix_names_close_matches() -> None:
    with pytest.raises(UnknownProviderError) as caught:
        registry.resolve("olama/llama3")
    assert caught.value.name == "olama"
    assert "ollama" in caught.value.matches


def test_bare_unknown_model_is_an_unknown_provider() -> None:
    with pytest.raises(UnknownProviderError) as caught:
        registry.resolve("gpt-4o")
    assert caught.value.name == "gpt-4o"


def test_alias_without_default_model_says_how_to_name_one() -> None:
    with pytest.raises(InputError, match=r"vllm/<model>"):
        registry.resolve("vllm")


@pytest.mark.parametrize(
    ("name", "first"),
    [("antropic", "anthropic"), ("groc", "groq"), ("deepsek", "deepseek"), ("lmstudo", "lmstudio")],
)
def test_close_matches(name: str, first: str) -> None:
    assert registry.close_matches(name)[0] == first


def test_close_matches_of_nonsense_is_empty() -> None:
    assert registry.close_matches("zzzzqqqq") == []


KEY_CASES = [
    ("openai", "sk-proj-0123456789abcdef", None),
    ("openai", "sk-ant-api03-0123456789abcdef", "anthropic"),
    ("openai", "sk-or-v1-0123456789abcdef", "openrouter"),
    ("anthropic", "sk-ant-oat01-0123456789abcdef", None),
    ("anthropic", "sk-proj-0123456789abcdef", "'sk-ant-'"),
    ("gemini", "AIzaSy0123456789abcdef", None),
    ("gemini", "gsk_0123456789abcdef", "groq"),
    ("groq", "gsk_0123456789abcdef", None),
    ("huggingface", "hf_0123456789abcdef", None),
    ("together", "0123456789abcdef", None),
    ("together", "sk-ant-api03-0123456789abcdef", "anthropic"),
    ("bedrock", "bedrock-api-key-0123456789abcdef", None),
    ("bedrock", "0123456789abcdef", "'ABSK' or 'bedrock-api-key-'"),
    ("openai", " sk-proj-0123456789abcdef\n", "whitespace"),
]


@pytest.mark.parametrize(("provider", "key", "expected"), KEY_CASES)
def test_check_key_format(provider: str, key: str, expected: str | None) -> None:
    message = check_key_format(registry.get(provider), key)
    if expected is None:
        assert message is None
    else:
        assert message is not None and expected in message
        assert key.strip() not in message


@pytest.fixture
def fresh_table() -> Iterator[ProviderTable]:
    yield ProviderTable(PROVIDERS)


def runtime_row(pid: str = "mybox", **changes: object) -> ProviderSpec:
    values: dict[str, object] = {"id": pid, "display_name": pid, "adapter": "openai-compatible",
                                 "default_base_url": "http://127.0.0.1:9/v1", **changes}
    return ProviderSpec(**values)  # type: ignore[arg-type]


def test_table_registers_runtime_rows(fresh_table: ProviderTable) -> None:
    spec = fresh_table.register(runtime_row(aliases=("box",)))
    assert fresh_table.lookup("BOX") is spec
    assert fresh_table.register(runtime_row(aliases=("box",))) is not None  # identical: no-op
    with pytest.raises(ConfigError, match="already registered"):
        fresh_table.register(runtime_row(aliases=("box",), default_model="m"))
    fresh_table.register(runtime_row(aliases=("box",), default_model="m"), replace=True)
    replaced = fresh_table.lookup("mybox")
    assert replaced is not None and replaced.default_model == "m"
    fresh_table.unregister("mybox")
    assert fresh_table.lookup("box") is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (runtime_row("openai"), "built in"),
        (runtime_row(aliases=("claude",)), "taken by 'anthropic'"),
    ],
)
def test_table_refuses_names_already_taken(
    fresh_table: ProviderTable, row: ProviderSpec, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        fresh_table.register(row)


def test_builtin_rows_are_overridden_and_restored_not_removed(fresh_table: ProviderTable) -> None:
    original = fresh_table.lookup("groq")
    assert original is not None
    changed = fresh_table.override(ProviderSpec(**{**_fields(original), "rpm": 30}))
    assert fresh_table.lookup("groq") is changed and fresh_table.original("groq") is original
    fresh_table.restore("groq")
    assert fresh_table.lookup("groq") is original
    with pytest.raises(ConfigError):
        fresh_table.unregister("groq")


def _fields(spec: ProviderSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__struct_fields__}


def test_module_functions_see_runtime_rows() -> None:
    registry.register(runtime_row("tmpbox"))
    try:
        assert registry.resolve("tmpbox/some/model") == (registry.get("tmpbox"), "some/model")
        assert registry.get("tmpbox") in registry.all_providers()
    finally:
        registry.unregister("tmpbox")
    assert registry.lookup("tmpbox") is None


@pytest.mark.parametrize(
    ("provider", "limit", "expected"),
    [
        ("claude", 2, ["claude-opus-4-6", "claude-opus-4-5-20251101"]),
        ("openai", 3, ["gpt-5.3-codex", "gpt-5.2", "gpt-5.2-pro"]),
        ("bedrock", None, ["anthropic.claude-3-5-sonnet-20241022-v2:0"]),
        ("sambanova", None, ["Meta-Llama-3.1-405B-Instruct"]),
        ("vllm", None, []),
        ("groq", 0, []),
    ],
)
def test_models_for(provider: str, limit: int | None, expected: list[str]) -> None:
    assert models_for(provider, limit) == expected


def test_curated_list_wins_over_example_models() -> None:
    assert models_for("openai") == list(CATALOG["openai"])
    assert "text-embedding-3-small" not in models_for("openai")


def test_models_for_unknown_provider() -> None:
    with pytest.raises(UnknownProviderError):
        models_for("nope-provider")
