"""Qwen OAuth adapter: the credentials file (read, refreshed near expiry, written back atomically
with mode 0600), the refresh call (on an `httpx.MockTransport`), and what `authorize` sets."""

from __future__ import annotations

import asyncio
import json
import math
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from structlog.testing import capture_logs

from shared import registry
from shared.adapters import get_adapter
from shared.adapters.base import Endpoint, HttpRequest
from shared.adapters.qwen_oauth import (
    CLIENT_ID,
    DEFAULT_BASE_URL,
    TOKEN_URL,
    QwenCredentials,
    QwenOAuthAdapter,
    QwenTokenSource,
    api_base,
    expiry_seconds,
)
from shared.adapters.vertex import httpx_poster
from shared.config import resolve_endpoint
from shared.errors import AuthenticationError, ConfigError, ServerError
from tests.unit.test_adapters_common import as_bytes, endpoint, recorded

NOW = 1_700_000_000.0
ACCESS = "qwen-access-old-0000"
REFRESH = "qwen-refresh-old-0000"
NEW_ACCESS = "qwen-access-new-1111"
NEW_REFRESH = "qwen-refresh-new-1111"
CHAT_URL = f"{DEFAULT_BASE_URL}/chat/completions"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refreshed(**extra: Any) -> dict[str, Any]:
    return {"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH, "token_type": "Bearer",
            "expires_in": 21600, **extra}


class TokenEndpoint:
    """A fake chat.qwen.ai token endpoint recording each refresh form."""

    def __init__(self, responses: list[tuple[int, Any]] | None = None) -> None:
        self.responses = responses or []
        self.forms: list[dict[str, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and str(request.url) == TOKEN_URL
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.headers["user-agent"]
        self.forms.append(parse_qs(request.content.decode()))
        status, body = self.responses.pop(0) if self.responses else (200, refreshed())
        return httpx.Response(status, content=as_bytes(body))


@pytest.fixture
def token_endpoint() -> TokenEndpoint:
    return TokenEndpoint()


@pytest.fixture
async def client(token_endpoint: TokenEndpoint) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as client:
        yield client


def write_creds(path: Path, **fields: Any) -> Path:
    data = {"access_token": ACCESS, "refresh_token": REFRESH, "token_type": "Bearer", **fields}
    path.write_text(json.dumps(data))
    path.chmod(0o644)
    return path


def source_for(path: Path, client: httpx.AsyncClient, clock: Clock, **kw: Any) -> QwenTokenSource:
    return QwenTokenSource(path, post=httpx_poster(client), clock=clock, **kw)


def ep(path: Path | None = None, base: str = DEFAULT_BASE_URL, **options: str) -> Endpoint:
    paths = {"credentials_path": str(path)} if path else {}
    return endpoint("qwen_oauth", base, None, **paths, **options)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(1_700_000_000, 1_700_000_000.0), (1_700_000_000_000, 1_700_000_000.0),
     ("1700000000000", 1_700_000_000.0), (1_700_000_000.5, 1_700_000_000.5),
     (None, None), ("soon", None), (True, None)],
)
def test_expiry_in_seconds_or_milliseconds(value: Any, seconds: float | None) -> None:
    assert expiry_seconds(value) == seconds


@pytest.mark.parametrize("key", ["expires_at", "expiry_date"])
@pytest.mark.parametrize("scale", [1, 1000])
async def test_a_valid_token_is_used_without_a_refresh(
    tmp_path: Path, token_endpoint: TokenEndpoint, client: httpx.AsyncClient, key: str, scale: int
) -> None:
    path = write_creds(tmp_path / "creds.json", **{key: int((NOW + 600) * scale)})
    creds = await source_for(path, client, Clock()).credentials()
    assert creds.access_token == ACCESS and creds.expires_at == NOW + 600
    assert token_endpoint.forms == []


async def test_expired_token_is_refreshed_and_written_back_0600(
    tmp_path: Path, token_endpoint: TokenEndpoint, client: httpx.AsyncClient
) -> None:
    path = write_creds(tmp_path / "oauth_creds.json", expiry_date=int((NOW - 5) * 1000),
                       resource_url="portal.qwen.ai", id_token="kept")
    source = source_for(path, client, Clock())
    creds = await source.credentials()
    assert creds.access_token == NEW_ACCESS and creds.expires_at == NOW + 21600
    (form,) = token_endpoint.forms
    assert form == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH],
                    "client_id": [CLIENT_ID]}
    saved = json.loads(path.read_text())
    assert saved == {"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH,
                     "token_type": "Bearer", "expiry_date": int((NOW + 21600) * 1000),
                     "resource_url": "portal.qwen.ai", "id_token": "kept"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["oauth_creds.json"]  # no temp file left
    assert (await source.credentials()).access_token == NEW_ACCESS
    assert len(token_endpoint.forms) == 1  # cached now


async def test_token_within_a_minute_of_expiry_is_refreshed_and_seconds_kept(
    tmp_path: Path, token_endpoint: TokenEndpoint, client: httpx.AsyncClient
) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW + 60))
    clock = Clock()
    source = source_for(path, client, clock)
    token_endpoint.responses.append((200, {"access_token": NEW_ACCESS, "expires_in": 3600,
                                           "resource_url": "portal.qwen.ai"}))
    creds = await source.credentials()
    assert creds.access_token == NEW_ACCESS and creds.refresh_token == REFRESH  # not rotated
    saved = json.loads(path.read_text())
    assert saved["expires_at"] == int(NOW + 3600) and "expiry_date" not in saved
    assert saved["refresh_token"] == REFRESH and saved["resource_url"] == "portal.qwen.ai"
    clock.now = NOW + 3600 - 61
    await source.credentials()
    clock.now = NOW + 3600 - 60
    await source.credentials()
    assert len(token_endpoint.forms) == 2


async def test_concurrent_callers_share_one_refresh(
    tmp_path: Path, token_endpoint: TokenEndpoint, client: httpx.AsyncClient
) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW - 1))
    post = httpx_poster(client)

    async def slow_post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        await asyncio.sleep(0.01)
        return await post(url, headers, body)

    source = QwenTokenSource(path, post=slow_post, clock=Clock())
    results = await asyncio.gather(*(source.credentials() for _ in range(10)))
    assert {c.access_token for c in results} == {NEW_ACCESS}
    assert len(token_endpoint.forms) == 1


async def test_client_id_option_overrides_the_constant(
    tmp_path: Path, token_endpoint: TokenEndpoint, client: httpx.AsyncClient
) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW - 1))
    adapter = QwenOAuthAdapter(post=httpx_poster(client), clock=Clock())
    await adapter.authorize(ep(path, client_id="my-client"), HttpRequest("POST", CHAT_URL, {}))
    assert token_endpoint.forms[0]["client_id"] == ["my-client"]


async def test_refused_refresh_asks_for_a_new_login_without_tokens(tmp_path: Path) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW - 1))
    refusal = {"error": "invalid_grant", "error_description": f"bad refresh token {REFRESH}"}
    token_endpoint = TokenEndpoint([(400, refusal)])
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as client:
        with pytest.raises(AuthenticationError) as info:
            await source_for(path, client, Clock()).credentials()
    message = str(info.value)
    assert "invalid_grant" in message and "device flow" in message and str(path) in message
    assert REFRESH not in message and ACCESS not in message
    assert not info.value.retryable


async def test_token_endpoint_outage_is_retryable(tmp_path: Path) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW - 1))
    token_endpoint = TokenEndpoint([(503, "upstream unavailable")])
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as client:
        with pytest.raises(ServerError) as info:
            await source_for(path, client, Clock()).credentials()
    assert info.value.retryable


async def test_a_refresh_made_by_another_process_is_picked_up(tmp_path: Path) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW - 1))

    async def lose_the_race(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        write_creds(path, access_token=NEW_ACCESS, refresh_token=NEW_REFRESH,
                    expires_at=int(NOW + 3600))  # the other process rotated the refresh token
        return 400, as_bytes({"error": "invalid_grant"})

    creds = await QwenTokenSource(path, post=lose_the_race, clock=Clock()).credentials()
    assert creds.access_token == NEW_ACCESS


async def test_expired_without_refresh_token_asks_for_a_login(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"access_token": ACCESS, "expires_at": int(NOW - 1)}))

    async def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        raise AssertionError("no refresh without a refresh token")

    with pytest.raises(AuthenticationError, match="device flow"):
        await QwenTokenSource(path, post=post, clock=Clock()).credentials()


def test_missing_credentials_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "oauth_creds.json"
    source = QwenTokenSource(path, clock=Clock())
    with pytest.raises(ConfigError) as info:
        asyncio.run(source.credentials())
    assert str(path) in str(info.value) and "device flow" in str(info.value)


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"refresh_token": REFRESH})])
async def test_broken_credentials_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "creds.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="device flow") as info:
        await QwenTokenSource(path, clock=Clock()).credentials()
    assert REFRESH not in str(info.value)


async def test_a_failed_write_back_is_logged_and_the_new_token_used(
    tmp_path: Path, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW - 1))

    def read_only(path: Path, data: dict[str, Any]) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("shared.adapters.qwen_oauth.write_credentials", read_only)
    with capture_logs() as logs:
        creds = await source_for(path, client, Clock()).credentials()
    assert creds.access_token == NEW_ACCESS
    assert [e["event"] for e in logs] == ["qwen_credentials_not_saved"]
    assert NEW_ACCESS not in str(logs) and NEW_REFRESH not in str(logs)


@pytest.mark.parametrize(
    ("resource_url", "base"),
    [("", "https://portal.qwen.ai/v1"), ("portal.qwen.ai", "https://portal.qwen.ai/v1"),
     ("https://dashscope.aliyuncs.com/compatible-mode/v1/",
      "https://dashscope.aliyuncs.com/compatible-mode/v1"),
     ("dashscope.aliyuncs.com/compatible-mode", "https://dashscope.aliyuncs.com/compatible-mode/v1")],
)
def test_api_base_from_resource_url(resource_url: str, base: str) -> None:
    assert api_base(resource_url) == base


async def test_authorize_sets_the_bearer_token_and_the_account_host(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW + 3600),
                       resource_url="chat-intl.qwen.ai")
    adapter = QwenOAuthAdapter(post=httpx_poster(client), clock=Clock())
    body = {"messages": [{"role": "user", "content": "hi"}]}
    request = adapter.build_chat(ep(path), "qwen3-coder-plus", body)
    assert request.url == CHAT_URL and "authorization" not in request.headers
    assert request.headers["x-dashscope-authtype"] == "qwen-oauth"
    authorized = await adapter.authorize(ep(path), request)
    assert authorized.url == "https://chat-intl.qwen.ai/v1/chat/completions"
    assert authorized.headers["authorization"] == f"Bearer {ACCESS}"
    proxy = ep(path, base="https://qwen-proxy.internal/v1")
    kept = await adapter.authorize(proxy, adapter.build_chat(proxy, "qwen3-coder-plus", body))
    assert kept.url == "https://qwen-proxy.internal/v1/chat/completions"


async def test_401_forces_a_refresh_of_a_token_that_looked_valid(
    tmp_path: Path, token_endpoint: TokenEndpoint, client: httpx.AsyncClient
) -> None:
    path = write_creds(tmp_path / "creds.json", expires_at=int(NOW + 3600))
    adapter = QwenOAuthAdapter(post=httpx_poster(client), clock=Clock())
    await adapter.authorize(ep(path), HttpRequest("POST", CHAT_URL, {}))
    refusal = as_bytes({"error": {"message": "Invalid access token or token expired",
                                  "code": "invalid_api_key"}})
    first = adapter.parse_error(401, {}, refusal)
    assert isinstance(first, AuthenticationError) and first.retryable
    again = await adapter.authorize(ep(path), HttpRequest("POST", CHAT_URL, {}))
    assert again.headers["authorization"] == f"Bearer {NEW_ACCESS}"
    assert len(token_endpoint.forms) == 1
    assert not adapter.parse_error(401, {}, refusal).retryable  # just refreshed: do not loop


def test_chat_answer_parses_as_openai() -> None:
    _, headers, content = recorded("openai_chat_completion.json")
    parsed = QwenOAuthAdapter().parse_chat(headers, content, "qwen3-coder-plus")
    assert parsed.body["object"] == "chat.completion" and parsed.body["choices"]


def test_default_credentials_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    source = QwenOAuthAdapter().token_source(ep())
    assert source.path == tmp_path / ".qwen" / "oauth_creds.json"


def test_credentials_repr_hides_the_tokens() -> None:
    creds = QwenCredentials(ACCESS, REFRESH, math.inf, "portal.qwen.ai")
    for text in (repr(creds), str(creds), str(list(creds.__rich_repr__()))):
        assert ACCESS not in text and REFRESH not in text


def test_registry_row_resolves_to_this_adapter(tmp_path: Path) -> None:
    spec = registry.get("qwen-oauth")
    assert spec.id == "qwen_oauth" and spec.supported and spec.default_model == "qwen3-coder-plus"
    assert isinstance(get_adapter(spec.adapter), QwenOAuthAdapter)
    path = tmp_path / "creds.json"
    resolved = resolve_endpoint(spec, {"SLUICE_QWEN_OAUTH_CREDENTIALS": str(path)})
    assert resolved.base_url == DEFAULT_BASE_URL and resolved.api_key is None
    assert resolved.options["credentials_path"] == str(path)


async def test_a_symlinked_credentials_file_is_updated_at_its_target(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    target = write_creds(tmp_path / "real.json", expires_at=int(NOW - 1))
    link = tmp_path / "oauth_creds.json"
    link.symlink_to(target)
    await source_for(link, client, Clock()).credentials()
    assert link.is_symlink()
    assert json.loads(target.read_text())["access_token"] == NEW_ACCESS
