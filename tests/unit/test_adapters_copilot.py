"""GitHub Copilot adapter: the GitHub-token → Copilot-key exchange (on an `httpx.MockTransport`),
its cache and refresh, the headers and URL `authorize` sets, and OpenAI-shaped parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import registry
from shared.adapters import get_adapter
from shared.adapters._wire import header
from shared.adapters.base import Endpoint, HttpRequest
from shared.adapters.copilot import (
    DEFAULT_API,
    INTEGRATION_ID,
    TOKEN_URL,
    CopilotAdapter,
    CopilotToken,
    CopilotTokenSource,
    httpx_getter,
    read_github_token,
)
from shared.config import resolve_endpoint
from shared.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    ProviderError,
    ServerError,
)
from tests.unit.test_adapters_common import as_bytes, endpoint, recorded, sent

GITHUB_TOKEN = "gho_githubsecret0000000000000000000000"
COPILOT_TOKEN = "tid=abc;exp=1700001800;sku=copilot_individual;8kp=1:secretsig"
NOW = 1_700_000_000.0
API = "https://api.individual.githubcopilot.com"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def exchange_body(token: str = COPILOT_TOKEN, expires_at: float = NOW + 1800) -> dict[str, Any]:
    return {
        "token": token,
        "expires_at": int(expires_at),
        "refresh_in": 1500,
        "endpoints": {"api": API, "telemetry": "https://telemetry.individual.githubcopilot.com"},
        "sku": "copilot_individual",
    }


class GitHub:
    """A fake api.github.com token endpoint recording each exchange's headers."""

    def __init__(self, responses: list[tuple[int, Any]] | None = None) -> None:
        self.responses = responses or []
        self.calls: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET" and str(request.url) == TOKEN_URL
        self.calls.append(request.headers)
        status, body = self.responses.pop(0) if self.responses else (200, exchange_body())
        return httpx.Response(status, content=as_bytes(body))


@pytest.fixture
def github() -> GitHub:
    return GitHub()


@pytest.fixture
async def client(github: GitHub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(github)) as client:
        yield client


def ep(key: str | None = GITHUB_TOKEN, base: str = DEFAULT_API, **options: str) -> Endpoint:
    return endpoint("copilot", base, key, **options)


async def test_exchange_sends_the_github_token_and_editor_headers(
    github: GitHub, client: httpx.AsyncClient
) -> None:
    source = CopilotTokenSource(lambda: GITHUB_TOKEN, get=httpx_getter(client), clock=Clock())
    token = await source.token()
    assert token.token == COPILOT_TOKEN and token.api == API
    (headers,) = github.calls
    assert headers["authorization"] == f"token {GITHUB_TOKEN}"
    assert headers["editor-version"].startswith("vscode/")
    assert headers["user-agent"] and headers["accept"] == "application/json"


async def test_key_is_cached_until_a_minute_before_it_expires(
    github: GitHub, client: httpx.AsyncClient
) -> None:
    clock = Clock()
    source = CopilotTokenSource(lambda: GITHUB_TOKEN, get=httpx_getter(client), clock=clock)
    await source.token()
    clock.now = NOW + 1800 - 61
    await source.token()
    assert len(github.calls) == 1
    clock.now = NOW + 1800 - 60
    github.responses.append((200, exchange_body("second", NOW + 3600)))
    assert (await source.token()).token == "second"
    assert len(github.calls) == 2


async def test_without_expires_at_refresh_in_sets_the_lifetime() -> None:
    clock = Clock()
    calls: list[str] = []

    async def get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        calls.append(url)
        return 200, as_bytes({"token": COPILOT_TOKEN, "refresh_in": 1500})

    source = CopilotTokenSource(lambda: GITHUB_TOKEN, get=get, clock=clock)
    assert (await source.token()).api == DEFAULT_API  # no `endpoints`: the default API host
    clock.now += 1499
    await source.token()
    clock.now += 1
    await source.token()
    assert len(calls) == 2


async def test_concurrent_callers_share_one_exchange(
    github: GitHub, client: httpx.AsyncClient
) -> None:
    get = httpx_getter(client)

    async def slow_get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        await asyncio.sleep(0.01)  # a real exchange suspends: let the other callers pile up
        return await get(url, headers)

    source = CopilotTokenSource(lambda: GITHUB_TOKEN, get=slow_get, clock=Clock())
    tokens = await asyncio.gather(*(source.token() for _ in range(10)))
    assert {t.token for t in tokens} == {COPILOT_TOKEN}
    assert len(github.calls) == 1


async def test_exchange_401_asks_for_a_new_login_without_the_token() -> None:
    refusal = {"message": f"Bad credentials {GITHUB_TOKEN}", "documentation_url": "https://x"}
    github = GitHub([(401, refusal)])
    async with httpx.AsyncClient(transport=httpx.MockTransport(github)) as client:
        source = CopilotTokenSource(lambda: GITHUB_TOKEN, get=httpx_getter(client), clock=Clock())
        with pytest.raises(AuthenticationError) as info:
            await source.token()
    message = str(info.value)
    assert "device flow" in message and "subscription" in message and "Bad credentials" in message
    assert GITHUB_TOKEN not in message and GITHUB_TOKEN not in repr(info.value)
    assert not info.value.retryable and info.value.status == 401


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [(403, PermissionDeniedError, False), (404, PermissionDeniedError, False),
     (503, ServerError, True)],
)
async def test_other_exchange_failures(
    status: int, cls: type[ProviderError], retryable: bool
) -> None:
    async def get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        return status, as_bytes({"error_details": {"message": "no Copilot seat"}})

    with pytest.raises(cls) as info:
        await CopilotTokenSource(lambda: GITHUB_TOKEN, get=get, clock=Clock()).token()
    assert info.value.retryable is retryable
    assert "no Copilot seat" in str(info.value)
    if status != 503:
        assert "subscription" in str(info.value)


def test_built_chat_request_has_copilot_headers_and_no_github_token() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    request = CopilotAdapter().build_chat(ep(), "gpt-4o", body)
    assert request.url == f"{DEFAULT_API}/chat/completions"
    assert header(request.headers, "Copilot-Integration-Id") == INTEGRATION_ID
    assert (header(request.headers, "Editor-Version") or "").startswith("vscode/")
    assert header(request.headers, "authorization") is None
    assert GITHUB_TOKEN not in json.dumps(request.headers) + request.body.decode()
    assert sent(request.body) == {**body, "model": "gpt-4o", "stream": False}


async def test_authorize_swaps_in_the_copilot_key_and_the_api_host(
    client: httpx.AsyncClient,
) -> None:
    adapter = CopilotAdapter(get=httpx_getter(client), clock=Clock())
    request = adapter.build_chat(ep(), "gpt-4o", {"messages": [{"role": "user", "content": "x"}]})
    authorized = await adapter.authorize(ep(), request)
    assert authorized.url == f"{API}/chat/completions"
    assert authorized.headers["authorization"] == f"Bearer {COPILOT_TOKEN}"
    assert authorized.headers["copilot-integration-id"] == INTEGRATION_ID
    assert GITHUB_TOKEN not in json.dumps(authorized.headers)


async def test_a_changed_base_url_is_kept(client: httpx.AsyncClient) -> None:
    adapter = CopilotAdapter(get=httpx_getter(client), clock=Clock())
    proxy = ep(base="https://copilot-proxy.internal/v1")
    request = adapter.build_embeddings(proxy, "text-embedding-3-small", ["a", "b"], {})
    authorized = await adapter.authorize(proxy, request)
    assert authorized.url == "https://copilot-proxy.internal/v1/embeddings"
    assert sent(authorized.body) == {"model": "text-embedding-3-small", "input": ["a", "b"]}


def test_chat_and_embeddings_answers_parse_as_openai() -> None:
    adapter = CopilotAdapter()
    _, headers, content = recorded("openai_chat_completion.json")
    parsed = adapter.parse_chat(headers, content, "gpt-4o")
    assert parsed.body["object"] == "chat.completion" and parsed.body["choices"]
    assert parsed.usage.total_tokens > 0
    embedded = {"object": "list", "model": "text-embedding-3-small",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    vectors = adapter.parse_embeddings({}, as_bytes(embedded), "text-embedding-3-small")
    assert vectors.body["data"][0]["embedding"] == [0.1, 0.2]


async def test_401_from_the_chat_api_refreshes_an_old_key_once(
    github: GitHub, client: httpx.AsyncClient
) -> None:
    clock = Clock()
    adapter = CopilotAdapter(get=httpx_getter(client), clock=clock)
    await adapter.authorize(ep(), HttpRequest("POST", f"{DEFAULT_API}/chat/completions", {}))
    clock.now += 600
    refusal = as_bytes({"error": {"message": "unauthorized: token expired"}})
    first = adapter.parse_error(401, {}, refusal)
    assert isinstance(first, AuthenticationError) and first.retryable
    await adapter.authorize(ep(), HttpRequest("POST", f"{DEFAULT_API}/chat/completions", {}))
    assert len(github.calls) == 2
    assert not adapter.parse_error(401, {}, refusal).retryable  # a fresh key refused again


@pytest.mark.parametrize(
    "content",
    [f"{GITHUB_TOKEN}\n", json.dumps({"github_token": GITHUB_TOKEN}),
     json.dumps({"github.com": {"user": "me", "oauth_token": GITHUB_TOKEN}}),
     json.dumps({"github.com:Iv1.b507a08c87ecfe98": {"oauth_token": GITHUB_TOKEN}})],
)
def test_token_file_formats(tmp_path: Path, content: str) -> None:
    path = tmp_path / "copilot_token"
    path.write_text(content)
    assert read_github_token(str(path)) == GITHUB_TOKEN


def test_unreadable_or_empty_token_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"nope.*device flow"):
        read_github_token(str(missing))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"user": "me"}))
    with pytest.raises(ConfigError, match="holds no GitHub token"):
        read_github_token(str(empty))


async def test_token_file_wins_over_the_key_and_is_reread_at_each_exchange(
    tmp_path: Path, github: GitHub, client: httpx.AsyncClient
) -> None:
    path = tmp_path / "token"
    path.write_text("gho_fromfile1")
    clock = Clock()
    adapter = CopilotAdapter(get=httpx_getter(client), clock=clock)
    with_file = ep(token_path=str(path))
    await adapter.authorize(with_file, HttpRequest("POST", f"{DEFAULT_API}/x", {}))
    path.write_text("gho_fromfile2")  # a new login while the worker runs
    clock.now += 1800
    await adapter.authorize(with_file, HttpRequest("POST", f"{DEFAULT_API}/x", {}))
    sent_tokens = [h["authorization"] for h in github.calls]
    assert sent_tokens == ["token gho_fromfile1", "token gho_fromfile2"]


async def test_no_github_token_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="token_path"):
        await CopilotAdapter().authorize(ep(key=None), HttpRequest("POST", DEFAULT_API, {}))


def test_reprs_hide_the_key() -> None:
    token = CopilotToken(COPILOT_TOKEN, NOW, API)
    assert COPILOT_TOKEN not in repr(token) and COPILOT_TOKEN not in str(token)
    assert COPILOT_TOKEN not in str(list(token.__rich_repr__()))


def test_registry_row_resolves_to_this_adapter(tmp_path: Path) -> None:
    spec = registry.get("copilot")
    assert spec.supported and spec.default_model == "gpt-4o"
    assert isinstance(get_adapter(spec.adapter), CopilotAdapter)
    env = {"COPILOT_GITHUB_TOKEN": GITHUB_TOKEN, "SLUICE_COPILOT_TOKEN_PATH": str(tmp_path / "t")}
    resolved = resolve_endpoint(spec, env)
    assert resolved.api_key == GITHUB_TOKEN and resolved.base_url == DEFAULT_API
    assert resolved.options["token_path"] == str(tmp_path / "t")
    assert GITHUB_TOKEN not in repr(resolved)
