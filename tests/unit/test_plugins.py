"""Plugins: HTTP plugins added by name, Python plugins found through real entry points."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import shared.adapters
from shared import plugins, registry
from shared.adapters import get_adapter
from shared.adapters.openai import OpenAIAdapter
from shared.config import FileConfig, install, parse_config, resolve_endpoint
from shared.errors import ConfigError
from shared.plugins import Plugin, add_http_plugin, as_plugin, load_entry_points
from shared.registry import ProviderSpec

FAKE_MODULE = '''
from shared.adapters.openai import OpenAIAdapter
from shared.plugins import Plugin
from shared.registry import ProviderSpec


def _row(pid, adapter="openai-compatible"):
    return ProviderSpec(id=pid, display_name=pid.title(), adapter=adapter,
                        default_base_url=f"https://{pid}.example/v1", key_required=False)


ROW = _row("ep-single")


def rows():
    return [_row("ep-list-a"), _row("ep-list-b")]


class FakeProtoAdapter(OpenAIAdapter):
    name = "fake-proto"


def bundle():
    return Plugin(providers=(_row("ep-bundled", adapter="fake-proto"),),
                  adapters={"fake-proto": FakeProtoAdapter})


BAD_ROW = _row("ep-bad", adapter="telepathy")
'''

ENTRY_POINTS = """
[sluice.providers]
single = fake_sluice_plugin:ROW
listed = fake_sluice_plugin:rows
bundled = fake_sluice_plugin:bundle
bad-row = fake_sluice_plugin:BAD_ROW
missing = fake_sluice_plugin:does_not_exist
"""
PLUGIN_IDS = {"ep-single", "ep-list-a", "ep-list-b", "ep-bundled"}


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Runtime rows and adapters registered by a test are gone afterwards."""
    monkeypatch.setattr(shared.adapters, "_FACTORIES", dict(shared.adapters._FACTORIES))
    install(FileConfig())  # the once-per-process entry-point scan happens before any fake is added
    before = {spec.id for spec in registry.all_providers()}
    yield
    install(FileConfig())
    for spec in registry.all_providers():
        if spec.id not in before:
            registry.unregister(spec.id)


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution on sys.path that importlib.metadata finds: module + dist-info."""
    (tmp_path / "fake_sluice_plugin.py").write_text(FAKE_MODULE, encoding="utf-8")
    info = tmp_path / "fake_sluice_plugin-0.1.dist-info"
    info.mkdir()
    metadata = "Metadata-Version: 2.1\nName: fake-sluice-plugin\nVersion: 0.1\n"
    (info / "METADATA").write_text(metadata, encoding="utf-8")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("fake_sluice_plugin", None)


@pytest.mark.usefixtures("clean_registry")
def test_entry_point_plugins_are_loaded_for_real(fake_distribution: Path) -> None:
    with capture_logs() as logs:
        added = load_entry_points()
    assert {spec.id for spec in added} == PLUGIN_IDS
    assert registry.get("ep-list-b").display_name == "Ep-List-B"
    assert get_adapter("fake-proto").name == "fake-proto"
    events = {(e["event"], e.get("plugin") or e.get("provider")) for e in logs}
    assert events == {("plugin_load_failed", "missing"), ("provider_config_skipped", "ep-bad")}
    assert registry.lookup("ep-bad") is None


@pytest.mark.usefixtures("clean_registry")
def test_loading_entry_points_twice_is_harmless(fake_distribution: Path) -> None:
    load_entry_points()
    with capture_logs() as logs:
        again = load_entry_points()
    assert {spec.id for spec in again} == PLUGIN_IDS
    assert sorted(e["event"] for e in logs) == ["plugin_load_failed", "provider_config_skipped"]


def test_no_entry_points_in_an_empty_group() -> None:
    assert load_entry_points("sluice.no-such-group") == []


def row(pid: str) -> ProviderSpec:
    return ProviderSpec(id=pid, display_name=pid, adapter="openai", default_base_url="https://x.io")


@pytest.mark.parametrize(
    ("obj", "ids"),
    [
        (row("a"), ["a"]),
        ([row("a"), row("b")], ["a", "b"]),
        (lambda: (row("a"),), ["a"]),
        (Plugin((row("a"),)), ["a"]),
        ([Plugin((row("a"),)), row("b")], ["a", "b"]),
    ],
)
def test_as_plugin_accepts_rows_lists_callables_and_bundles(obj: object, ids: list[str]) -> None:
    assert [spec.id for spec in as_plugin(obj).providers] == ids


@pytest.mark.parametrize("obj", ["openai", {"id": "x"}, 42, lambda: "nope"])
def test_as_plugin_refuses_anything_else(obj: object) -> None:
    with pytest.raises(TypeError):
        as_plugin(obj)


@pytest.mark.usefixtures("clean_registry")
@pytest.mark.parametrize(
    ("url", "chat_path", "chat_url", "local"),
    [
        ("http://127.0.0.1:9000/v1", None, "http://127.0.0.1:9000/v1/chat/completions", True),
        ("http://localhost:9000", None, "http://localhost:9000/v1/chat/completions", True),
        ("https://gw.example/api", "/chat", "https://gw.example/api/chat", False),
    ],
)
def test_http_plugin_is_a_registry_row(url: str, chat_path: str | None, chat_url: str,
                                       local: bool) -> None:
    spec = add_http_plugin("mybox", url, chat_path=chat_path, model="m1")
    assert registry.resolve("mybox") == (spec, "m1")
    assert spec.local is local and spec.key_required is False
    request = OpenAIAdapter().build_chat(resolve_endpoint(spec, {}), "m1", {"messages": []})
    assert request.url == chat_url


@pytest.mark.usefixtures("clean_registry")
def test_http_plugin_with_a_key_env_requires_it() -> None:
    spec = add_http_plugin("mybox", "http://127.0.0.1:9000/v1", api_key_env="MYBOX_KEY")
    assert resolve_endpoint(spec, {"MYBOX_KEY": "k-000000"}).api_key == "k-000000"
    assert spec.discovery_path == "/models" and spec.embeddings_path == "/embeddings"


@pytest.mark.usefixtures("clean_registry")
@pytest.mark.parametrize(
    ("name", "url", "message"),
    [
        ("openai", "http://127.0.0.1:1/v1", "built in"),
        ("gpt", "http://127.0.0.1:1/v1", "taken by 'openai'"),
        ("Bad Name", "http://127.0.0.1:1/v1", "bad provider id"),
        ("box", "ftp://127.0.0.1/v1", "bad URL"),
        ("box", "https://user:hunter2-secret@gw.example/v1", "no credentials"),
        ("box", "https://gw.example/v1?key=hunter2-secret", "query"),
    ],
)
def test_http_plugin_refusals(name: str, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        add_http_plugin(name, url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.usefixtures("clean_registry")
def test_http_plugin_name_taken_twice() -> None:
    add_http_plugin("mybox", "http://127.0.0.1:9000/v1")
    with pytest.raises(ConfigError, match="already registered"):
        add_http_plugin("mybox", "http://127.0.0.1:9001/v1")
    replaced = add_http_plugin("mybox", "http://127.0.0.1:9001/v1", replace=True)
    assert registry.get("mybox") is replaced and replaced.default_base_url.endswith(":9001/v1")


@pytest.mark.usefixtures("clean_registry")
def test_plugins_http_config_table() -> None:
    data = {"plugins": {"http": [{"name": "lab", "url": "http://127.0.0.1:9000/v1",
                                  "api_key_env": "LAB_KEY"}]}}
    install(parse_config(data))
    spec = registry.get("lab")
    assert spec.key_env[0] == "LAB_KEY" and spec.chat_path == "/chat/completions"


def test_adapter_available() -> None:
    assert plugins.adapter_available("openai")
    assert not plugins.adapter_available("telepathy")
