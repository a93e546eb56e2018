"""Local-server discovery against a real loopback HTTP server, and a closed port."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from producer.cli_providers import discover as discover_command
from producer.cli_providers import models as models_command
from shared import registry
from shared.discovery import discover, list_live_models, local_providers, parse_models
from shared.errors import ProviderConnectionError, ResponseFormatError
from shared.plugins import add_http_plugin
from tests.conftest import load_sample

TAGS = load_sample("ollama_api_tags.json")["response"]["body"]
TAG_NAMES = [m["name"] for m in TAGS["models"]]
OPENAI_MODELS = {"object": "list", "data": [{"id": "llama-3.1-8b", "object": "model"},
                                            {"id": "qwen2.5-7b", "object": "model"}]}


@dataclass
class FakeServer:
    """A loopback server speaking Ollama's `/api/tags` and OpenAI's `/v1/models`."""

    url: str
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


def handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    routes: dict[str, tuple[int, bytes]] = {
        "/api/tags": (200, json.dumps(TAGS).encode()),
        "/v1/models": (200, json.dumps(OPENAI_MODELS).encode()),
        "/bad/v1/models": (500, b'{"error": "boom"}'),
        "/text/v1/models": (200, b"<html>not json</html>"),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("authorization")))
            if self.path == "/hang/v1/models":
                server.release.wait(10)
            status, body = routes.get(self.path, (404, b'{"error": "not found"}'))
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    state = FakeServer("")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_url() -> str:
    """A loopback address nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def all_local_at(url: str) -> dict[str, str]:
    """Env pointing every local provider at `url` (OpenAI-compatible ones under `/v1`)."""
    env = {}
    for spec in local_providers():
        suffix = "" if spec.adapter == "ollama" else "/v1"
        env[spec.base_url_env[0]] = url + suffix
    return env


async def test_discover_reports_up_and_down_servers(fake: FakeServer, closed_url: str) -> None:
    env = {"OLLAMA_HOST": fake.url.removeprefix("http://"), "VLLM_BASE_URL": fake.url + "/v1",
           "LMSTUDIO_BASE_URL": closed_url + "/v1"}
    ollama, vllm, lmstudio = await discover(2.0, ["ollama", "vllm", "lmstudio"], env=env)
    assert (ollama.name, ollama.url, ollama.ok) == ("ollama", fake.url, True)
    assert list(ollama.models) == TAG_NAMES and ollama.model_count == len(TAG_NAMES)
    assert (vllm.ok, vllm.url) == (True, fake.url + "/v1")
    assert vllm.models == ("llama-3.1-8b", "qwen2.5-7b")
    assert (lmstudio.ok, lmstudio.model_count) == (False, 0)
    assert lmstudio.error is not None and "unreachable" in lmstudio.error


async def test_servers_sharing_a_url_are_probed_once(fake: FakeServer) -> None:
    env = {"LLAMACPP_BASE_URL": fake.url + "/v1", "TGI_BASE_URL": fake.url + "/v1",
           "LOCALAI_BASE_URL": fake.url + "/v1"}
    results = await discover(2.0, ["llamacpp", "tgi", "localai"], env=env)
    assert [(r.name, r.ok, r.model_count) for r in results] == [
        ("llamacpp", True, 2), ("tgi", True, 2), ("localai", True, 2)]
    assert fake.hits("/v1/models") == 1


async def test_probe_sends_the_configured_key(fake: FakeServer) -> None:
    env = {"VLLM_BASE_URL": fake.url + "/v1", "VLLM_API_KEY": "vllm-test-key"}
    [result] = await discover(2.0, ["vllm"], env=env)
    assert result.ok and fake.requests == [("/v1/models", "Bearer vllm-test-key")]


@pytest.mark.parametrize(
    ("path", "error"),
    [("/bad/v1", "HTTP 500"), ("/text/v1", "not JSON"), ("/nowhere/v1", "HTTP 404"),
     ("/hang/v1", "no answer within 0.3s")],
)
async def test_unhealthy_servers_are_offline_with_a_reason(fake: FakeServer, path: str,
                                                           error: str) -> None:
    [result] = await discover(0.3, ["sglang"], env={"SGLANG_BASE_URL": fake.url + path})
    assert not result.ok and result.error is not None and error in result.error


async def test_default_discovery_probes_every_local_provider(closed_url: str) -> None:
    results = await discover(2.0, env=all_local_at(closed_url))
    assert [r.name for r in results] == [spec.id for spec in local_providers()]
    expected = {"ollama", "lmstudio", "vllm", "mlx", "llamacpp", "sglang", "tgi"}
    assert expected <= {r.name for r in results}
    assert not any(r.ok for r in results)


async def test_loopback_plugin_is_discovered(fake: FakeServer, closed_url: str) -> None:
    env = all_local_at(closed_url)
    spec = add_http_plugin("labbox", fake.url + "/v1")
    try:
        results = {r.name: r for r in await discover(2.0, env=env)}
    finally:
        registry.unregister("labbox")
    assert results["labbox"].ok and results["labbox"].model_count == 2 and spec.local


async def test_list_live_models(fake: FakeServer, closed_url: str) -> None:
    spec = registry.get("ollama")
    assert await list_live_models(spec, env={"OLLAMA_HOST": fake.url}) == TAG_NAMES
    with pytest.raises(ProviderConnectionError):
        await list_live_models(spec, env={"OLLAMA_HOST": closed_url})


@pytest.mark.parametrize(
    ("body", "names"),
    [(b'{"models": [{"name": "a:1"}, {"model": "b"}]}', ["a:1", "b"]),
     (b'  {"data": [{"id": "x"}, "y", {"nothing": 1}]}', ["x", "y"])],
)
def test_parse_models(body: bytes, names: list[str]) -> None:
    assert parse_models(body) == names


@pytest.mark.parametrize("body", [b"", b"[]", b'{"data": 3}', b"{nope"])
def test_parse_models_refuses_other_bodies(body: bytes) -> None:
    with pytest.raises(ResponseFormatError):
        parse_models(body)


# -- CLI ---------------------------------------------------------------------------------------
def test_discover_command_prints_ok_and_offline(fake: FakeServer, closed_url: str) -> None:
    env = {**all_local_at(closed_url), "SLUICE_OLLAMA_BASE_URL": fake.url}
    result = CliRunner().invoke(discover_command, ["--timeout", "2"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Scanning local providers..."
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == {spec.id for spec in local_providers()}
    assert rows["ollama"].split()[1] == fake.url
    assert rows["ollama"].endswith(f"[OK] {len(TAG_NAMES)} model(s)")
    assert rows["vllm"].endswith("[OFFLINE]")
    assert lines[-1] == f"1 of {len(rows)} local providers reachable."


def test_discover_command_json(fake: FakeServer, closed_url: str) -> None:
    env = {**all_local_at(closed_url), "SLUICE_VLLM_BASE_URL": fake.url + "/v1"}
    result = CliRunner().invoke(discover_command, ["--json"], env=env)
    data = {item["name"]: item for item in json.loads(result.output)}
    assert data["vllm"]["ok"] is True and data["vllm"]["models"] == ["llama-3.1-8b", "qwen2.5-7b"]
    assert data["ollama"]["ok"] is False and data["ollama"]["error"]


def test_models_command_adds_the_live_list(fake: FakeServer) -> None:
    env = {"SLUICE_OLLAMA_BASE_URL": fake.url}
    result = CliRunner().invoke(models_command, ["ollama"], env=env)
    assert result.exit_code == 0, result.output
    assert "  gpt-oss:20b" in result.output  # curated
    assert f"Live models at {fake.url} ({len(TAG_NAMES)}):" in result.output
    assert all(f"  {name}" in result.output for name in TAG_NAMES)


def test_models_command_for_an_offline_server(closed_url: str) -> None:
    result = CliRunner().invoke(models_command, ["local-ollama", "--json"],
                                env={"SLUICE_OLLAMA_BASE_URL": closed_url})
    data = json.loads(result.output)
    assert data["provider"] == "ollama" and data["live"] is None
    assert "unreachable" in data["live_error"]
    assert data["curated"][0] == "qwen2.5-coder:7b"


def test_models_command_for_a_hosted_provider_is_curated_only() -> None:
    result = CliRunner().invoke(models_command, ["claude", "--json"])
    data = json.loads(result.output)
    assert data["provider"] == "anthropic" and data["live"] is None and data["live_error"] is None
    assert "claude-opus-4-6" in data["curated"]


def test_models_command_unknown_provider() -> None:
    result = CliRunner().invoke(models_command, ["olama"])
    assert result.exit_code == 1
    assert "unknown provider 'olama'" in result.output and "ollama" in result.output
