"""Configuration: settings and provider precedence, the config file, broken entries skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from producer.cli_providers import providers as providers_command
from shared import config, registry
from shared.adapters import get_adapter
from shared.config import (
    FileConfig,
    install,
    load_config,
    load_settings,
    parse_config,
    provider_limits,
    provider_status,
    resolve_endpoint,
    resolve_provider,
)
from shared.errors import ConfigError, MissingKeyError
from shared.registry import ProviderSpec

EXAMPLE = Path(__file__).parents[2] / "examples" / "sluice.toml"


@pytest.fixture(autouse=True)
def no_installed_config() -> Iterator[None]:
    """Each test starts and ends with no config file installed in the registry."""
    install(FileConfig())
    yield
    install(FileConfig())


def write(tmp_path: Path, text: str, name: str = "sluice.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def use(text: str) -> FileConfig:
    """Parse TOML text and install it, as `load_settings` does with a file."""
    import tomllib

    return install(parse_config(tomllib.loads(text), source="test.toml"))


# -- settings ----------------------------------------------------------------------------------
def test_settings_precedence_explicit_env_file_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[settings]\nchunk_size = 10\nconcurrency = 5\nmax_attempts = 2\n")
    env = {"SLUICE_CONCURRENCY": "7", "SLUICE_CHUNK_SIZE": "8"}
    settings = load_settings(env, config=path, chunk_size=3)
    assert settings.chunk_size == 3  # explicit beats env and file
    assert settings.concurrency == 7  # env beats file
    assert settings.max_attempts == 2  # file beats default
    assert settings.request_timeout == config.DEFAULT_REQUEST_TIMEOUT
    assert settings.config_path == str(path)


def test_config_file_found_by_env_var_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = write(tmp_path, "[settings]\nchunk_size = 11\n", "named.toml")
    write(tmp_path, "[settings]\nchunk_size = 12\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings({"SLUICE_CONFIG": str(named)}).chunk_size == 11
    assert load_settings({}).chunk_size == 12


def test_no_config_file_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).config_path is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[settings]\nchunk_sise = 3\n", "unknown setting"),
        ("[settings]\nchunk_size = 'many'\n", "bad setting"),
        ("[agent]\nmodel = 'x'\n", "unknown table"),
        ("[settings\n", "cannot read"),
    ],
)
def test_broken_settings_are_an_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_asked_for_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"SLUICE_CONFIG": str(tmp_path / "missing.toml")})


def test_bad_env_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SLUICE_CHUNK_SIZE"):
        load_settings({"SLUICE_CHUNK_SIZE": "lots"})


def test_example_config_loads_cleanly() -> None:
    with capture_logs() as logs:
        loaded = load_config(EXAMPLE)
    assert logs == []
    assert loaded.skipped == () and dict(loaded.keys) == {}
    assert {spec.id for spec in loaded.added} == {"gpu-box", "corp-gateway", "lab-server"}


# -- provider precedence -----------------------------------------------------------------------
VLLM_FILE = "[providers.vllm]\nbase_url = 'http://127.0.0.1:7000/v1'\n"


@pytest.mark.parametrize(
    ("file", "env", "explicit", "expected"),
    [
        ("", {}, None, "http://localhost:8000/v1"),
        (VLLM_FILE, {}, None, "http://127.0.0.1:7000/v1"),
        (VLLM_FILE, {"VLLM_BASE_URL": "http://127.0.0.1:7001/v1"}, None, "http://127.0.0.1:7001/v1"),
        (VLLM_FILE, {"VLLM_BASE_URL": "http://127.0.0.1:7001/v1"}, "http://127.0.0.1:7002/v1",
         "http://127.0.0.1:7002/v1"),
        ("", {"VLLM_HOST": "127.0.0.1:7003"}, None, "http://127.0.0.1:7003/v1"),
        ("", {"SLUICE_VLLM_BASE_URL": "http://h:1/v1", "VLLM_HOST": "x:2"}, None, "http://h:1/v1"),
        ("", {"OLLAMA_HOST": "0.0.0.0:11500"}, None, None),
    ],
)
def test_base_url_precedence(file: str, env: dict[str, str], explicit: str | None,
                             expected: str | None) -> None:
    use(file)
    if expected is None:  # Ollama's host form keeps its (empty) default path
        assert resolve_endpoint(registry.get("ollama"), env).base_url == "http://0.0.0.0:11500"
        return
    assert resolve_endpoint(registry.get("vllm"), env, base_url=explicit).base_url == expected


def test_key_precedence_and_api_key_env() -> None:
    use("[providers.openai]\napi_key_env = 'TEAM_OPENAI_KEY'\n")
    spec = registry.get("openai")
    env = {"OPENAI_API_KEY": "sk-plain-000000", "TEAM_OPENAI_KEY": "sk-team-000000"}
    assert resolve_provider(spec, env).key_source == "TEAM_OPENAI_KEY"
    assert resolve_endpoint(spec, env).api_key == "sk-team-000000"
    assert resolve_endpoint(spec, env, api_key="sk-explicit-00").api_key == "sk-explicit-00"
    plain = {"OPENAI_API_KEY": "sk-plain-000000"}
    assert resolve_endpoint(spec, plain).api_key == "sk-plain-000000"


def test_missing_key_names_the_env_vars_to_set() -> None:
    use("[providers.openai]\napi_key_env = 'TEAM_OPENAI_KEY'\n")
    with pytest.raises(MissingKeyError) as caught:
        resolve_endpoint(registry.get("openai"), {})
    assert caught.value.env_vars[0] == "TEAM_OPENAI_KEY"
    assert "OPENAI_API_KEY" in str(caught.value) or "SLUICE_OPENAI_API_KEY" in str(caught.value)


def test_naming_a_key_variable_for_a_keyless_server_requires_it() -> None:
    assert resolve_endpoint(registry.get("vllm"), {}).api_key is None
    use("[providers.vllm]\napi_key_env = 'GPU_VLLM_KEY'\n")
    with pytest.raises(MissingKeyError, match="GPU_VLLM_KEY"):
        resolve_endpoint(registry.get("vllm"), {})


def test_literal_key_is_last_resort_secret_and_hidden() -> None:
    loaded = use("[providers.groq]\napi_key = 'gsk_literal0000000000'\n")
    spec = registry.get("groq")
    assert resolve_provider(spec, {}).key_source == "config file"
    assert resolve_endpoint(spec, {"GROQ_API_KEY": "gsk_env00000"}).api_key == "gsk_env00000"
    assert "gsk_literal0000000000" in config.configured_secrets({})
    assert "gsk_literal" not in repr(loaded)
    assert "gsk_literal" not in repr(resolve_endpoint(spec, {}))


def test_model_precedence() -> None:
    use("[providers.openai]\nmodel = 'gpt-file'\n")
    spec = registry.get("openai")
    env = {"OPENAI_API_KEY": "sk-x"}
    assert resolve_provider(spec, env).model == "gpt-file"
    with_env = {**env, "OPENAI_MODEL": "gpt-env"}
    assert resolve_provider(spec, with_env).model == "gpt-env"
    assert resolve_provider(spec, with_env, model="gpt-arg").model == "gpt-arg"
    assert registry.resolve("openai")[1] == "gpt-file"
    install(FileConfig())
    assert resolve_provider(registry.get("openai"), env).model == "gpt-4o-mini"


def test_limits_precedence() -> None:
    assert provider_limits(registry.get("groq"), {}) == config.Limits()
    use("[providers.groq]\nrpm = 30\ntpm = 6000\n")
    spec = registry.get("groq")
    assert provider_limits(spec, {}) == config.Limits(rpm=30, tpm=6000)
    assert provider_limits(spec, {"SLUICE_GROQ_RPM": "60"}).rpm == 60
    with pytest.raises(ConfigError, match="SLUICE_GROQ_TPM"):
        provider_limits(spec, {"SLUICE_GROQ_TPM": "-1"})


def test_cloud_options_go_into_endpoint_options(tmp_path: Path) -> None:
    key_file = write(tmp_path, "{}", "sa.json")
    use(f"[providers.vertex]\nkey_file = '{key_file}'\nproject_id = 'p1'\n"
        "location = 'europe-west4'\n"
        "[providers.bedrock]\nregion = 'eu-west-1'\nprofile = 'batch'\n")
    vertex = resolve_endpoint(registry.get("vertex"), {})
    assert vertex.options["key_file"] == str(key_file) and vertex.options["project_id"] == "p1"
    assert vertex.base_url == "https://europe-west4-aiplatform.googleapis.com/v1"
    bedrock = resolve_endpoint(registry.get("bedrock"), {"AWS_REGION": "ap-south-1"})
    assert bedrock.options == {"region": "ap-south-1", "profile": "batch"}
    assert bedrock.base_url == "https://bedrock-runtime.ap-south-1.amazonaws.com"
    glob = resolve_endpoint(registry.get("vertex"), {"GOOGLE_CLOUD_LOCATION": "global"})
    assert glob.base_url == "https://aiplatform.googleapis.com/v1"


def test_unsupported_provider_is_reported_not_crashed() -> None:
    spec = ProviderSpec(id="futureproto", display_name="Future", adapter="future-protocol",
                        default_base_url="https://future.example/v1", key_required=False, supported=False)
    registry.register(spec)
    try:
        with pytest.raises(ConfigError, match="not supported yet"):
            resolve_endpoint(spec, {})
        assert provider_status(spec, {}).state == "unsupported"
    finally:
        registry.unregister("futureproto")


@pytest.mark.parametrize(
    ("provider", "env", "state", "configured"),
    [
        ("groq", {}, "missing", False),
        ("groq", {"GROQ_API_KEY": "gsk_x"}, "key", True),
        ("ollama", {}, "local", True),
        ("opencode", {}, "keyless", True),
        ("vertex", {}, "missing", False),
        ("bedrock", {"AWS_ACCESS_KEY_ID": "AKIAXXXXXXXXXXXXXXXX"}, "credentials", True),
    ],
)
def test_provider_status(provider: str, env: dict[str, str], state: str, configured: bool) -> None:
    status = provider_status(registry.get(provider), env)
    assert (status.state, status.configured) == (state, configured)


def test_key_format_mismatch_warns_without_the_key() -> None:
    with capture_logs() as logs:
        env = {"OPENAI_API_KEY": "sk-ant-api03-abcdefgh"}
        endpoint = resolve_endpoint(registry.get("openai"), env)
    assert endpoint.api_key == "sk-ant-api03-abcdefgh"  # warned, not blocked
    assert [e["event"] for e in logs] == ["provider_key_format"]
    assert "anthropic" in logs[0]["message"] and "abcdefgh" not in str(logs)


# -- custom endpoints --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("base_url", "chat_path", "chat_url"),
    [
        ("http://10.0.0.5:8000", None, "http://10.0.0.5:8000/v1/chat/completions"),
        ("https://llm.example.com/api/v1", None, "https://llm.example.com/api/v1/chat/completions"),
        ("https://llm.example.com", "/openai/chat/completions",
         "https://llm.example.com/openai/chat/completions"),
        ("https://llm.example.com/", "v2/chat", "https://llm.example.com/v2/chat"),
    ],
)
def test_custom_endpoint_chat_url(base_url: str, chat_path: str | None, chat_url: str) -> None:
    path_line = f"chat_path = '{chat_path}'\n" if chat_path else ""
    use(f"[[providers.openai_compat]]\nid = 'box'\nbase_url = '{base_url}'\n{path_line}")
    spec, model = registry.resolve("box/llama-3")
    endpoint = resolve_endpoint(spec, {})
    request = get_adapter(spec.adapter).build_chat(endpoint, model, {"messages": []})
    assert request.url == chat_url


def test_custom_endpoint_embeddings_sit_beside_chat() -> None:
    use("[[providers.openai_compat]]\nid = 'box'\nbase_url = 'http://10.0.0.5:8000'\n"
        "api_key_env = 'BOX_KEY'\nmodel = 'm1'\nmax_in_flight = 8\n")
    spec = registry.get("box")
    endpoint = resolve_endpoint(spec, {"BOX_KEY": "k-123456"})
    request = get_adapter(spec.adapter).build_embeddings(endpoint, "e", ["x"], {})
    assert request.url == "http://10.0.0.5:8000/v1/embeddings"
    assert request.headers["authorization"] == "Bearer k-123456"
    assert (spec.default_model, spec.max_in_flight) == ("m1", 8)
    with pytest.raises(MissingKeyError, match="BOX_KEY"):
        resolve_endpoint(spec, {})


def test_reinstall_replaces_custom_rows_and_restores_overrides() -> None:
    use("[[providers.openai_compat]]\nid = 'box'\nbase_url = 'http://10.0.0.5:8000'\n"
        "[providers.groq]\nrpm = 30\n")
    assert registry.get("groq").rpm == 30
    use("[[providers.openai_compat]]\nid = 'box'\nbase_url = 'http://10.0.0.6:8000'\n")
    assert registry.get("box").default_base_url == "http://10.0.0.6:8000"
    assert registry.get("groq").rpm is None
    install(FileConfig())
    assert registry.lookup("box") is None


BROKEN = """
[providers.groq]
rpm = 30

[providers.nosuchprovider]
base_url = "https://x.example"

[providers.mistral]
base_url = "not a url"

[providers.vertex]
key_file = "/nonexistent/sa.json"

[providers.openai]
apikey_env = "TYPO"

[[providers.openai_compat]]
id = "weird"
base_url = "https://weird.example/v1"
adapter = "telepathy"

[[providers.openai_compat]]
id = "claude"
base_url = "https://clash.example/v1"

[[providers.openai_compat]]
id = "good"
base_url = "https://good.example/v1"
"""


def test_broken_entries_are_skipped_with_one_warning_each() -> None:
    with capture_logs() as logs:
        loaded = use(BROKEN)
    skipped = [e for e in logs if e["event"] == "provider_config_skipped"]
    assert sorted(e["provider"] for e in skipped) == sorted(
        ["nosuchprovider", "mistral", "vertex", "openai", "weird", "claude"])
    reasons = {e["provider"]: e["reason"] for e in skipped}
    assert "bad URL" in reasons["mistral"] and "does not exist" in reasons["vertex"]
    assert "unknown adapter" in reasons["weird"] and "taken by 'anthropic'" in reasons["claude"]
    assert "apikey_env" in reasons["openai"] and "did you mean" not in reasons["openai"]
    assert registry.get("groq").rpm == 30 and registry.get("good").adapter == "openai-compatible"
    assert registry.get("mistral").default_base_url == "https://api.mistral.ai/v1"
    assert [spec.id for spec in loaded.added] == ["good"]


def test_api_key_env_holding_a_key_is_refused_without_echoing_it() -> None:
    with capture_logs() as logs:
        use("[providers.openai]\napi_key_env = 'sk-proj-abcdef-123'\n")
    assert [e["event"] for e in logs] == ["provider_config_skipped"]
    assert "sk-proj-abcdef-123" not in str(logs)


def test_configured_secrets_from_env() -> None:
    env = {"OPENAI_API_KEY": "sk-a-000000", "MY_SERVICE_TOKEN": "tok-000000", "HOME": "/root"}
    assert sorted(config.configured_secrets(env)) == ["sk-a-000000", "tok-000000"]


# -- `sluice providers` ------------------------------------------------------------------------
def test_providers_command_lists_every_provider_in_100_columns() -> None:
    result = CliRunner().invoke(providers_command, [], env={"GROQ_API_KEY": "gsk_x"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 100 for line in lines)
    rows = {line.split()[0]: line for line in lines[1:] if line and line.split()[0] in MASTER}
    assert set(rows) == MASTER
    assert "yes (key)" in rows["groq"] and "no" in rows["copilot"].split()


def test_providers_json_names_env_vars_not_keys() -> None:
    env = {"GROQ_API_KEY": "gsk_secret1", **{name: None for name in registry.get("openai").key_env}}
    result = CliRunner().invoke(providers_command, ["--json"], env=env)
    data = {row["id"]: row for row in json.loads(result.output)}
    assert len(data) == len(registry.all_providers())
    assert data["groq"]["configured"] is True and "GROQ_API_KEY" in data["groq"]["key_env"]
    assert data["openai"]["configured"] is False
    assert "gsk_secret1" not in result.output


MASTER = {spec.id for spec in registry.PROVIDERS}
