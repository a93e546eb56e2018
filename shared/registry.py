"""The provider registry: one data row per provider, and name → provider resolution.

Every provider in the seed material (`providers.md` §1, 48 rows) is a `ProviderSpec` row; an
OpenAI-compatible provider is a row, not a module. Rows added at runtime (config-file custom
endpoints, HTTP plugins, entry-point plugins) go into the same `ProviderTable`, so the
module-level functions (`get`, `lookup`, `resolve`, ...) see them.

Resolution order (as RLM Code does it): explicit provider, then a `provider/model` prefix, then a
case-insensitive alias. Unknown names get the close matches.

Base URLs of OpenAI-compatible rows include their path prefix, so `base_url + "/chat/completions"`
is the chat URL (`https://api.groq.com/openai/v1`, `https://api.deepseek.com`); `chat_path` is set
only where a provider departs from that. Local servers use `http://localhost:PORT/v1` (Ollama, with
its native adapter, is `http://localhost:11434`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from shared.errors import ConfigError, InputError, UnknownProviderError

Category = Literal["Local", "US Labs", "China Labs", "Model Hosts", "Other Labs", ""]

KNOWN_ADAPTERS: Final = frozenset(
    {
        "openai", "openai-compatible", "anthropic", "gemini", "ollama", "cohere",
        "huggingface", "bedrock", "vertex", "copilot", "qwen-oauth",
    }
)
"""Adapter names a row may use (plugins may add more with `shared.adapters.register_adapter`)."""

GENERIC_KEY_PREFIXES: Final = frozenset({"sk-"})
"""Prefixes too common to say which provider a key belongs to."""


class ProviderSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """One provider. Env var tuples are in precedence order (`SLUICE_` form first).

    Paths are relative to the base URL. `rpm`/`tpm`/`max_in_flight` are rate-limit defaults (None =
    unknown: learn from the provider's headers). `supported=False` rows are listed but have no
    adapter yet. `upstream_prefixed` marks aggregators whose model names are `org/model`.
    """

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
    chat_path: str | None = None
    embeddings_path: str | None = None
    discovery_path: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None
    supported: bool = True
    upstream_prefixed: bool = False
    model_env: tuple[str, ...] = ()
    credential_env: tuple[str, ...] = ()
    option_env: tuple[tuple[str, tuple[str, ...]], ...] = ()
    default_options: tuple[tuple[str, str], ...] = ()
    extra_key_prefixes: tuple[str, ...] = ()

    @property
    def key_prefixes(self) -> tuple[str, ...]:
        return ((self.key_prefix,) if self.key_prefix else ()) + self.extra_key_prefixes


def env_stem(provider_id: str) -> str:
    """`openai_compatible` → `OPENAI_COMPATIBLE`: the provider's part of a `SLUICE_*` name."""
    return re.sub(r"[^A-Z0-9]+", "_", provider_id.upper()).strip("_")


def _envs(canonical: str, *others: str) -> tuple[str, ...]:
    """The `SLUICE_` form of the canonical name, the canonical name, then other spellings."""
    return (f"SLUICE_{canonical}", canonical, *others)


def _local(
    pid: str, name: str, url: str, *, base_env: tuple[str, ...] = (), **kw: object
) -> ProviderSpec:
    """A local OpenAI-compatible server: no key needed, models listed at `/models`."""
    stem = env_stem(pid)
    values: dict[str, object] = {
        "key_env": _envs(f"{stem}_API_KEY"), "key_required": False, "local": True,
        "category": "Local", "discovery_path": "/models", "free_tier": True,
        "base_url_env": (f"SLUICE_{stem}_BASE_URL", *base_env),
        "model_env": (f"SLUICE_{stem}_MODEL",), "upstream_prefixed": True, **kw,
    }
    return msgspec.convert({"id": pid, "display_name": name, "adapter": "openai-compatible",
                            "default_base_url": url, **values}, ProviderSpec)


def _host(
    pid: str, name: str, url: str, model: str | None, *keys: str, **kw: object
) -> ProviderSpec:
    """A hosted OpenAI-compatible API with a Bearer key in `keys[0]` (or `<ID>_API_KEY`)."""
    stem = env_stem(pid)
    names = keys or (f"{stem}_API_KEY",)
    values: dict[str, object] = {
        "key_env": _envs(*names), "base_url_env": (f"SLUICE_{stem}_BASE_URL",),
        "model_env": (f"SLUICE_{stem}_MODEL",), "default_model": model, **kw,
    }
    return msgspec.convert({"id": pid, "display_name": name, "adapter": "openai-compatible",
                            "default_base_url": url, **values}, ProviderSpec)


_NATIVE: Final[tuple[ProviderSpec, ...]] = (
    ProviderSpec(
        id="openai", display_name="OpenAI", adapter="openai",
        default_base_url="https://api.openai.com/v1", aliases=("gpt",),
        key_env=_envs("OPENAI_API_KEY", "ABI_OPENAI_API_KEY"),
        base_url_env=_envs("OPENAI_BASE_URL", "ABI_OPENAI_BASE_URL", "OPENAI_API_BASE"),
        model_env=_envs("OPENAI_MODEL", "ABI_OPENAI_MODEL"),
        default_model="gpt-4o-mini", docs_url="https://platform.openai.com/", category="US Labs",
        key_prefix="sk-", embeddings=True, max_embed_inputs=2048,
        example_models=("gpt-5", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"),
    ),
    ProviderSpec(
        id="anthropic", display_name="Anthropic (Claude)", adapter="anthropic",
        default_base_url="https://api.anthropic.com", aliases=("claude",),
        key_env=_envs("ANTHROPIC_API_KEY", "ABI_ANTHROPIC_API_KEY", "ANTHROPIC_OAUTH_TOKEN",
                      "ANTHROPIC_AUTH_TOKEN"),
        base_url_env=_envs("ANTHROPIC_BASE_URL"), model_env=("SLUICE_ANTHROPIC_MODEL",),
        default_model="claude-sonnet-4-6", docs_url="https://console.anthropic.com/",
        category="US Labs", key_prefix="sk-ant-",
        example_models=("claude-sonnet-4-6", "claude-3-5-sonnet-20241022"),
    ),
    ProviderSpec(
        id="gemini", display_name="Google Gemini", adapter="gemini",
        default_base_url="https://generativelanguage.googleapis.com/v1beta", aliases=("google",),
        key_env=_envs("GEMINI_API_KEY", "GOOGLE_API_KEY"), base_url_env=("SLUICE_GEMINI_BASE_URL",),
        model_env=("SLUICE_GEMINI_MODEL",), default_model="gemini-2.0-flash",
        docs_url="https://aistudio.google.com/", category="US Labs", key_prefix="AIza",
        embeddings=True, max_embed_inputs=100, free_tier=True,
    ),
    ProviderSpec(
        id="cohere", display_name="Cohere", adapter="cohere",
        default_base_url="https://api.cohere.com",
        key_env=_envs("COHERE_API_KEY", "ABI_COHERE_API_KEY"),
        base_url_env=("SLUICE_COHERE_BASE_URL",),
        model_env=("SLUICE_COHERE_MODEL",), default_model="command-r-plus-08-2024",
        docs_url="https://docs.cohere.com/", category="Other Labs", embeddings=True, rerank=True,
        max_embed_inputs=96, free_tier=True,
    ),
    ProviderSpec(
        id="ollama", display_name="Ollama", adapter="ollama", default_base_url="http://localhost:11434",
        aliases=("local-ollama",), key_env=_envs("OLLAMA_API_KEY"),
        base_url_env=("SLUICE_OLLAMA_BASE_URL", "OLLAMA_HOST", "ABI_OLLAMA_HOST"),
        model_env=_envs("OLLAMA_MODEL", "ABI_OLLAMA_MODEL"), docs_url="https://ollama.com/",
        key_required=False, local=True, category="Local", embeddings=True, free_tier=True,
        discovery_path="/api/tags", example_models=("llama3.2", "llama3.1", "qwen2.5-coder:7b"),
    ),
    ProviderSpec(
        id="huggingface", display_name="HuggingFace Inference API", adapter="huggingface",
        default_base_url="https://router.huggingface.co/v1",
        key_env=_envs("HF_TOKEN", "HUGGINGFACE_API_KEY", "HF_API_TOKEN", "ABI_HF_API_TOKEN"),
        base_url_env=("SLUICE_HUGGINGFACE_BASE_URL",), model_env=("SLUICE_HUGGINGFACE_MODEL",),
        docs_url="https://huggingface.co/docs/inference-providers", category="Model Hosts",
        key_prefix="hf_", embeddings=True, upstream_prefixed=True,
        example_models=("deepseek-ai/DeepSeek-R1", "meta-llama/Llama-3.1-8B-Instruct"),
    ),
    ProviderSpec(
        # SigV4 credentials come from the AWS chain (AWS_ACCESS_KEY_ID..., or `profile`); the key
        # env vars hold a Bedrock API key (Bearer). The embed cap is the largest any model takes
        # (Cohere 96); Titan's one text per call is the adapter's `max_embed_inputs_for`.
        # Region us-east-1 unless set (SMART's example, and the bedrock adapter's default).
        id="bedrock", display_name="AWS Bedrock", adapter="bedrock",
        default_base_url="https://bedrock-runtime.{region}.amazonaws.com",
        key_env=_envs("BEDROCK_API_KEY", "AWS_BEARER_TOKEN_BEDROCK"), key_required=False,
        base_url_env=("SLUICE_BEDROCK_BASE_URL",), model_env=("SLUICE_BEDROCK_MODEL",),
        credential_env=("AWS_ACCESS_KEY_ID", "AWS_PROFILE"),
        option_env=(("region", ("SLUICE_BEDROCK_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")),
                    ("profile", ("SLUICE_BEDROCK_PROFILE", "AWS_PROFILE"))),
        default_options=(("region", "us-east-1"),),
        docs_url="https://docs.aws.amazon.com/bedrock/", category="Model Hosts",
        key_prefix="ABSK", extra_key_prefixes=("bedrock-api-key-",), embeddings=True,
        max_embed_inputs=96, example_models=("anthropic.claude-3-5-sonnet-20241022-v2:0",),
    ),
    ProviderSpec(
        id="vertex", display_name="Google Vertex AI", adapter="vertex",
        default_base_url="https://{location}-aiplatform.googleapis.com/v1", key_required=False,
        base_url_env=("SLUICE_VERTEX_BASE_URL",), model_env=("SLUICE_VERTEX_MODEL",),
        option_env=(("key_file", ("SLUICE_VERTEX_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS")),
                    ("project_id", ("SLUICE_VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT")),
                    ("location", ("SLUICE_VERTEX_LOCATION", "GOOGLE_CLOUD_LOCATION"))),
        default_options=(("location", "us-central1"),),
        docs_url="https://cloud.google.com/vertex-ai/docs", category="Model Hosts",
        # Embed cap: text-embedding-005's 250; gemini-embedding-001 takes 1 (the adapter's
        # `max_embed_inputs_for` knows which).
        embeddings=True, max_embed_inputs=250, example_models=("gemini-1.5-pro",),
    ),
    ProviderSpec(
        # The GitHub token (device-flow login file `token_path`, else a key env var) is traded
        # at send time for a short-lived Copilot API key (shared/adapters/copilot.py).
        id="copilot", display_name="GitHub Copilot", adapter="copilot",
        default_base_url="https://api.githubcopilot.com", key_required=False,
        key_env=_envs("COPILOT_GITHUB_TOKEN", "GITHUB_TOKEN"),
        base_url_env=("SLUICE_COPILOT_BASE_URL",), model_env=("SLUICE_COPILOT_MODEL",),
        option_env=(("token_path", ("SLUICE_COPILOT_TOKEN_PATH",)),),
        credential_env=("SLUICE_COPILOT_GITHUB_TOKEN",),
        default_model="gpt-4o", docs_url="https://docs.github.com/copilot", category="Model Hosts",
        key_prefix="gho_", extra_key_prefixes=("ghu_", "ghp_", "github_pat_"), embeddings=True,
        example_models=("gpt-4o", "claude-3.5-sonnet", "text-embedding-3-small"),
    ),
    ProviderSpec(
        # Tokens come from the device-flow credentials file (`credentials_path`, default
        # ~/.qwen/oauth_creds.json) and are refreshed at runtime (shared/adapters/qwen_oauth.py).
        id="qwen_oauth", display_name="Qwen OAuth (chat.qwen.ai)", adapter="qwen-oauth",
        default_base_url="https://portal.qwen.ai/v1",
        aliases=("qwen-oauth",), key_required=False, free_tier=True,
        base_url_env=("SLUICE_QWEN_OAUTH_BASE_URL",), model_env=("SLUICE_QWEN_OAUTH_MODEL",),
        option_env=(("credentials_path", ("SLUICE_QWEN_OAUTH_CREDENTIALS",)),),
        default_model="qwen3-coder-plus", category="China Labs",
        example_models=("qwen3-coder-plus", "qwen3-coder-flash"),
    ),
)

_LOCAL: Final[tuple[ProviderSpec, ...]] = (
    _local("lmstudio", "LM Studio", "http://localhost:1234/v1", aliases=("lm_studio", "lm-studio"),
           key_env=_envs("LMSTUDIO_API_KEY", "ABI_LM_STUDIO_API_KEY"),
           base_env=("LMSTUDIO_BASE_URL", "ABI_LM_STUDIO_HOST", "LM_STUDIO_HOST"),
           model_env=("SLUICE_LMSTUDIO_MODEL", "ABI_LM_STUDIO_MODEL"), default_model="local-model",
           docs_url="https://lmstudio.ai/", embeddings=True),
    _local("vllm", "vLLM", "http://localhost:8000/v1", aliases=("vllm-server",),
           key_env=_envs("VLLM_API_KEY", "ABI_VLLM_API_KEY"),
           base_env=("VLLM_BASE_URL", "ABI_VLLM_HOST", "VLLM_HOST"),
           model_env=("SLUICE_VLLM_MODEL", "ABI_VLLM_MODEL"), docs_url="https://docs.vllm.ai/",
           embeddings=True),
    # Seeds disagree on MLX's port (8080 vs 5001); 8080 is mlx_lm.server's own default.
    _local("mlx", "MLX (mlx-lm server)", "http://localhost:8080/v1", aliases=("mlx-lm",),
           key_env=_envs("MLX_API_KEY", "ABI_MLX_API_KEY"),
           base_env=("MLX_BASE_URL", "ABI_MLX_HOST", "MLX_HOST"),
           model_env=("SLUICE_MLX_MODEL", "ABI_MLX_MODEL"),
           docs_url="https://github.com/ml-explore/mlx-lm"),
    _local("llamacpp", "llama.cpp server", "http://localhost:8080/v1",
           aliases=("llama_cpp", "llama-cpp"),
           base_env=("LLAMACPP_BASE_URL", "LLAMA_CPP_HOST"), default_model="local-model",
           docs_url="https://github.com/ggerganov/llama.cpp", embeddings=True),
    _local("sglang", "SGLang", "http://localhost:30000/v1", aliases=("sg-lang",),
           base_env=("SGLANG_BASE_URL",), docs_url="https://docs.sglang.ai/", embeddings=True),
    _local("tgi", "Hugging Face TGI (text-generation-inference)", "http://localhost:8080/v1",
           aliases=("text-generation-inference",), base_env=("TGI_BASE_URL",),
           docs_url="https://huggingface.co/docs/text-generation-inference"),
    _local("localai", "LocalAI", "http://localhost:8080/v1", base_env=("LOCALAI_BASE_URL",),
           default_model="gpt-4", embeddings=True),
    _local("litellm", "LiteLLM proxy", "http://localhost:4000/v1", base_env=("LITELLM_BASE_URL",),
           default_model="gpt-3.5-turbo", embeddings=True),
    _local("openai_compatible", "OpenAI-compatible (generic / custom endpoint)",
           "http://localhost:8000/v1", aliases=("openai-compatible", "compatible"),
           base_env=("OPENAI_COMPATIBLE_BASE_URL",), embeddings=True),
)

_US: Final = {"category": "US Labs"}
_CN: Final = {"category": "China Labs"}
_HOSTS: Final = {"category": "Model Hosts"}
_AGG: Final = {"category": "Model Hosts", "upstream_prefixed": True}

_HOSTED: Final[tuple[ProviderSpec, ...]] = (
    _host("xai", "xAI (Grok)", "https://api.x.ai/v1", "grok-2-latest", key_prefix="xai-",
          docs_url="https://console.x.ai/", **_US),
    _host("perplexity", "Perplexity", "https://api.perplexity.ai", "sonar-pro",
          "PERPLEXITY_API_KEY", "PPLX_API_KEY", key_prefix="pplx-",
          docs_url="https://docs.perplexity.ai/", **_US),
    _host("deepseek", "DeepSeek", "https://api.deepseek.com", "deepseek-chat", key_prefix="sk-",
          docs_url="https://platform.deepseek.com/", **_CN),
    _host("moonshot", "Moonshot AI (Kimi)", "https://api.moonshot.ai/v1", "moonshot-v1-8k",
          "MOONSHOT_API_KEY", "KIMI_API_KEY", aliases=("kimi",), key_prefix="sk-",
          docs_url="https://platform.moonshot.cn/", **_CN),
    _host("alibaba", "Alibaba DashScope / Qwen (API key)",
          "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen-turbo",
          "DASHSCOPE_API_KEY", "QWEN_API_KEY", aliases=("qwen", "dashscope"), key_prefix="sk-",
          embeddings=True, max_embed_inputs=10, docs_url="https://dashscope.aliyun.com/", **_CN),
    _host("openrouter", "OpenRouter", "https://openrouter.ai/api/v1", "openai/gpt-4o",
          key_prefix="sk-or-", free_tier=True, docs_url="https://openrouter.ai/", **_AGG),
    _host("opencode", "OpenCode Zen", "https://api.opencode.ai/v1", None, aliases=("opencode-zen",),
          key_required=False, docs_url="https://opencode.ai/docs/providers/opencode-zen", **_HOSTS),
    _host("groq", "Groq", "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile",
          key_prefix="gsk_", free_tier=True, docs_url="https://console.groq.com/", **_HOSTS),
    _host("together", "Together AI", "https://api.together.xyz/v1",
          "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo", "TOGETHER_API_KEY", "TOGETHERAI_API_KEY",
          aliases=("togetherai",), docs_url="https://api.together.xyz/", embeddings=True, **_AGG),
    _host("siliconflow", "SiliconFlow", "https://api.siliconflow.cn/v1", None,
          "SILICONFLOW_API_KEY", "SILICON_API_KEY", aliases=("silicon-flow",),
          docs_url="https://siliconflow.cn/", embeddings=True, **_AGG),
    _host("fireworks", "Fireworks AI", "https://api.fireworks.ai/inference/v1",
          "accounts/fireworks/models/llama-v3p3-70b-instruct", docs_url="https://fireworks.ai/",
          embeddings=True, **_AGG),
    _host("cerebras", "Cerebras", "https://api.cerebras.ai/v1", "llama3.3-70b", free_tier=True,
          docs_url="https://cloud.cerebras.ai/", **_HOSTS),
    _host("mistral", "Mistral AI", "https://api.mistral.ai/v1", "mistral-large-latest",
          "MISTRAL_API_KEY", "ABI_MISTRAL_API_KEY", embeddings=True,
          docs_url="https://console.mistral.ai/", category="Other Labs"),
    _host("sambanova", "SambaNova", "https://api.sambanova.ai/v1", "Meta-Llama-3.1-405B-Instruct",
          free_tier=True, **_HOSTS),
    _host("hyperbolic", "Hyperbolic", "https://api.hyperbolic.xyz/v1",
          "meta-llama/Llama-3.3-70B-Instruct", **_AGG),
    _host("novita", "Novita AI", "https://api.novita.ai/v3/openai",
          "meta-llama/llama-3.1-70b-instruct", **_AGG),
    _host("lepton", "Lepton AI", "https://llm.lepton.ai/api/v1", "llama3-3-70b", free_tier=True,
          **_HOSTS),
    _host("corethink", "CoreThink", "https://api.corethink.ai/v1", "deepseek-r1", **_HOSTS),
    _host("featherless", "Featherless AI", "https://api.featherless.ai/v1",
          "meta-llama/Meta-Llama-3.1-70B-Instruct", **_AGG),
    _host("requesty", "Requesty", "https://router.requesty.ai/v1", "openai/gpt-4o", **_AGG),
    _host("glama", "Glama", "https://glama.ai/api/v1", "openai/gpt-4o", free_tier=True, **_AGG),
    _host("chutes", "Chutes AI", "https://llm.chutes.ai/v1", "deepseek-ai/DeepSeek-R1",
          free_tier=True, **_AGG),
    _host("glm", "GLM (Zhipu AI)", "https://open.bigmodel.cn/api/paas/v4", "glm-4-flash",
          "ZHIPUAI_API_KEY", "GLM_API_KEY", free_tier=True, **_CN),
    _host("doubao", "Doubao (ByteDance)", "https://ark.cn-beijing.volces.com/api/v3",
          "doubao-pro-4k", "ARK_API_KEY", "DOUBAO_API_KEY", **_CN),
    _host("zai", "Z.AI", "https://api.z.ai/api/paas/v4", "z1-preview", **_CN),
    _host("yi", "01.AI (Yi)", "https://api.01.ai/v1", "yi-large", **_CN),
    _host("minimax", "MiniMax", "https://api.minimax.chat/v1", "MiniMax-Text-01",
          chat_path="/text/chatcompletion_v2", **_CN),
    _host("hunyuan", "Hunyuan (Tencent)", "https://api.hunyuan.cloud.tencent.com/v1",
          "hunyuan-turbo", **_CN),
    _host("stepfun", "StepFun", "https://api.stepfun.com/v1", "step-1-8k", **_CN),
)

PROVIDERS: Final[tuple[ProviderSpec, ...]] = _NATIVE + _LOCAL + _HOSTED
"""The built-in rows (48). Rows registered at runtime live in the table, not here."""


class ProviderTable:
    """Rows by id and by lower-cased id/alias.

    Built-in rows cannot be removed or re-registered, only overridden (and restored): that is how
    the config file's `[providers.<id>]` settings become the row every reader sees.
    """

    def __init__(self, rows: Iterable[ProviderSpec] = (), *, builtin: bool = True) -> None:
        self._rows: dict[str, ProviderSpec] = {}
        self._names: dict[str, ProviderSpec] = {}
        self._builtin: set[str] = set()
        self._originals: dict[str, ProviderSpec] = {}
        for spec in rows:
            self.register(spec)
        if builtin:
            self._builtin = set(self._rows)

    def register(self, spec: ProviderSpec, *, replace: bool = False) -> ProviderSpec:
        """Add a row (idempotent for an identical row); `replace` swaps a runtime row of that id."""
        if self._rows.get(spec.id) == spec:
            return spec
        self._check_new(spec, replace)
        if spec.id in self._rows:
            self.unregister(spec.id)
        self._rows[spec.id] = spec
        self._index(spec)
        return spec

    def _check_new(self, spec: ProviderSpec, replace: bool) -> None:
        if spec.id in self._builtin:
            raise ConfigError(f"provider id {spec.id!r} is built in; pick another id")
        if spec.id in self._rows and not replace:
            raise ConfigError(f"provider {spec.id!r} is already registered")
        for name in (spec.id, *spec.aliases):
            owner = self._names.get(name.lower())
            if owner is not None and owner.id != spec.id:
                raise ConfigError(f"name {name!r} of provider {spec.id!r} is taken by {owner.id!r}")

    def unregister(self, provider_id: str) -> None:
        """Remove a runtime row (built-in rows stay)."""
        if provider_id in self._builtin:
            raise ConfigError(f"provider {provider_id!r} is built in and cannot be removed")
        self._originals.pop(provider_id, None)
        spec = self._rows.pop(provider_id, None)
        if spec is not None:
            for name in (spec.id, *spec.aliases):
                self._names.pop(name.lower(), None)

    def override(self, spec: ProviderSpec) -> ProviderSpec:
        """Swap the row of an existing id for a changed copy (config-file settings); same names."""
        current = self._rows.get(spec.id)
        if current is None:
            raise ConfigError(f"no provider {spec.id!r} to override")
        if current.aliases != spec.aliases:
            raise ConfigError(f"an override of {spec.id!r} cannot change its aliases")
        self._originals.setdefault(spec.id, current)
        self._rows[spec.id] = spec
        self._index(spec)
        return spec

    def _index(self, spec: ProviderSpec) -> None:
        self._names.update({name.lower(): spec for name in (spec.id, *spec.aliases)})

    def restore(self, provider_id: str) -> None:
        """Undo `override` for one id (no-op when it was not overridden)."""
        original = self._originals.pop(provider_id, None)
        if original is not None and provider_id in self._rows:
            self._rows[provider_id] = original
            self._index(original)

    def original(self, provider_id: str) -> ProviderSpec:
        """The row as it was before any `override` (KeyError for an unknown id)."""
        return self._originals.get(provider_id) or self._rows[provider_id]

    def all(self) -> tuple[ProviderSpec, ...]:
        return tuple(self._rows.values())

    def is_builtin(self, provider_id: str) -> bool:
        return provider_id in self._builtin

    def lookup(self, name: str) -> ProviderSpec | None:
        return self._names.get(name.strip().lower())

    def names(self) -> list[str]:
        return sorted(self._names)


_TABLE: Final = ProviderTable(PROVIDERS)


def table() -> ProviderTable:
    """The process-wide table every module-level function reads."""
    return _TABLE


def register(spec: ProviderSpec, *, replace: bool = False) -> ProviderSpec:
    """Add a row at runtime (config custom endpoint, plugin); see `ProviderTable.register`."""
    return _TABLE.register(spec, replace=replace)


def unregister(provider_id: str) -> None:
    _TABLE.unregister(provider_id)


def all_providers() -> tuple[ProviderSpec, ...]:
    return _TABLE.all()


def lookup(name: str) -> ProviderSpec | None:
    """A provider by id or alias, case-insensitive; None when nothing matches."""
    return _TABLE.lookup(name)


def get(name: str) -> ProviderSpec:
    """A provider by id or alias; `UnknownProviderError` naming the close matches otherwise."""
    spec = lookup(name)
    if spec is None:
        raise UnknownProviderError(name, close_matches(name))
    return spec


def close_matches(name: str, limit: int = 3) -> list[str]:
    """Provider ids whose id or alias is spelled like `name`, best first."""
    found = difflib.get_close_matches(name.strip().lower(), _TABLE.names(), n=limit * 2, cutoff=0.6)
    ids: list[str] = []
    for match in found:
        spec = _TABLE.lookup(match)
        if spec is not None and spec.id not in ids:
            ids.append(spec.id)
    return ids[:limit]


def resolve(model: str, provider: str | None = None) -> tuple[ProviderSpec, str]:
    """(provider, model name for it): explicit provider > `provider/model` prefix > alias.

    `vllm/meta-llama/Llama-3.1-8B` → (vllm, `meta-llama/Llama-3.1-8B`); with
    `provider="openrouter"`, `openai/gpt-4o` stays whole (aggregators name upstream models
    `org/model`); a bare alias such as `claude` gives that provider's default model.
    """
    if provider:
        spec = get(provider)
        return spec, normalize_model_name(spec, model)
    prefix, sep, rest = model.partition("/")
    if sep and (by_prefix := lookup(prefix)) is not None:
        return by_prefix, rest
    if (by_alias := lookup(model)) is not None:
        return by_alias, _default_model(by_alias)
    name = prefix if sep else model
    raise UnknownProviderError(name, close_matches(name))


def _default_model(spec: ProviderSpec) -> str:
    if spec.default_model is None:
        raise InputError(f"provider {spec.id!r} has no default model: write `{spec.id}/<model>`")
    return spec.default_model


def normalize_model_name(spec: ProviderSpec, model: str) -> str:
    """Drop a redundant `provider/` prefix naming this same provider.

    For aggregators the prefix is dropped only when what follows is itself `org/model`, so
    OpenRouter's own `openrouter/auto` stays whole.
    """
    prefix, sep, rest = model.partition("/")
    if not sep or lookup(prefix) is not spec:
        return model
    if spec.upstream_prefixed and "/" not in rest:
        return model
    return rest


def check_key_format(spec: ProviderSpec, key: str) -> str | None:
    """A warning when `key` does not look like this provider's key; None when it may be right.

    Never blocks and never quotes the key: the message names only the expected prefix or the
    provider whose key it resembles.
    """
    if key != key.strip():
        return f"the {spec.id} key has leading or trailing whitespace; check how it was set"
    owners = _likely_owners(key)
    if owners and spec.id not in owners:
        return f"the {spec.id} key looks like a key for {', '.join(owners)}; is it the right key?"
    prefixes = spec.key_prefixes
    if prefixes and not key.startswith(prefixes):
        expected = " or ".join(repr(p) for p in prefixes)
        return f"the {spec.id} key does not start with {expected} as {spec.display_name} keys do"
    return None


def _likely_owners(key: str) -> list[str]:
    """Providers owning the longest distinctive key prefix that `key` starts with."""
    matches = [(p, s.id) for s in all_providers() for p in s.key_prefixes
               if key.startswith(p) and p not in GENERIC_KEY_PREFIXES]
    if not matches:
        return []
    longest = max(len(p) for p, _ in matches)
    return sorted({pid for p, pid in matches if len(p) == longest})
