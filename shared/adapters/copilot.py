"""GitHub Copilot: OpenAI-shaped chat and embeddings behind a short-lived Copilot API key.

Setup (a device-flow login) leaves a GitHub OAuth token in a file (option `token_path`; plain
text, or JSON with `github_token`/`oauth_token`/`access_token`/`token`, as copilot.vim's
`hosts.json` holds it); without one, the endpoint's `api_key` (`COPILOT_GITHUB_TOKEN`,
`GITHUB_TOKEN`, ...) is the GitHub token. The file wins: it is the credential made for Copilot,
while `GITHUB_TOKEN` is often some other tool's token.

At send time `CopilotTokenSource` trades the GitHub token for a Copilot API key
(`GET api.github.com/copilot_internal/v2/token`, `Authorization: token <github token>`), cached
until a minute before its `expires_at` (about 30 minutes) and refreshed one exchange at a time.
Its one HTTP call is an injectable async callable. The `authorize` hook adds
`Authorization: Bearer <copilot key>` and moves the request to the API host the exchange names
(`endpoints.api`), unless the base URL was changed from the default (a proxy). Bodies and answers
are OpenAI's (`OpenAIAdapter`), plus the editor headers Copilot requires. A 401 from the chat API
drops the cached key; the call is retried once with a fresh one if the old key was not brand new.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from shared.adapters._token import CachedToken, forget_on_401
from shared.adapters._wire import load_json
from shared.adapters.base import Endpoint, HttpRequest
from shared.adapters.openai import OpenAIAdapter
from shared.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    ProviderError,
    ResponseFormatError,
    error_class_for_status,
)

TOKEN_URL: Final = "https://api.github.com/copilot_internal/v2/token"
DEFAULT_API: Final = "https://api.githubcopilot.com"
EDITOR_VERSION: Final = "vscode/1.96.2"
EDITOR_PLUGIN_VERSION: Final = "copilot-chat/0.26.7"
USER_AGENT: Final = "GitHubCopilotChat/0.26.7"
INTEGRATION_ID: Final = "vscode-chat"
REFRESH_MARGIN: Final = 60.0
"""Seconds before `expires_at` at which a cached Copilot key is replaced."""
DEFAULT_LIFETIME: Final = 25 * 60.0
"""Assumed lifetime when the exchange gives neither `expires_at` nor `refresh_in`."""
TOKEN_KEYS: Final = ("github_token", "oauth_token", "access_token", "token")
LOGIN_HINT: Final = (
    "log in to GitHub Copilot again with the device flow (a GitHub Copilot subscription is "
    "required)"
)

TokenGet = Callable[[str, dict[str, str]], Awaitable[tuple[int, bytes]]]
"""(url, headers) → (status, body): the token exchange's only I/O."""


async def httpx_get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """The default `TokenGet`: one short-lived httpx client per exchange (about twice an hour)."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.get(url, headers=headers)
    return response.status_code, response.content


def httpx_getter(client: httpx.AsyncClient) -> TokenGet:
    """A `TokenGet` over a given client (a shared one, or one on an `httpx.MockTransport`)."""

    async def get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        response = await client.get(url, headers=headers)
        return response.status_code, response.content

    return get


class CopilotToken(msgspec.Struct, frozen=True):
    """A Copilot API key, when it stops being used (unix seconds) and its API root."""

    token: str
    refresh_at: float
    api: str = DEFAULT_API

    def __repr__(self) -> str:
        return f"CopilotToken(token=<set>, refresh_at={self.refresh_at!r}, api={self.api!r})"

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("token", "<set>"), ("refresh_at", self.refresh_at), ("api", self.api)]


def read_github_token(path: str) -> str:
    """The GitHub token in a `token_path` file; errors name the file, never its content."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problem = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"cannot read the Copilot token file {path!r}: {problem}; "
                          f"{LOGIN_HINT}") from None
    token = _token_in(text) if text.startswith("{") else text
    if not token:
        raise ConfigError(f"the Copilot token file {path!r} holds no GitHub token; {LOGIN_HINT}")
    return token


def _token_in(text: str) -> str:
    """The token of a JSON token file: a top-level key, or one inside a `github.com*` entry."""
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    scopes = [data, *(v for k, v in data.items() if k.startswith("github.com"))]
    for scope in scopes:
        if isinstance(scope, dict):
            for key in TOKEN_KEYS:
                if isinstance(value := scope.get(key), str) and value.strip():
                    return value.strip()
    return ""


def exchange_headers(github_token: str) -> dict[str, str]:
    return {
        "authorization": f"token {github_token}",
        "accept": "application/json",
        "editor-version": EDITOR_VERSION,
        "editor-plugin-version": EDITOR_PLUGIN_VERSION,
        "user-agent": USER_AGENT,
    }


def parse_token_response(content: bytes, now: float) -> CopilotToken:
    """The exchange's answer: `token`, `expires_at` (unix s), `refresh_in`, `endpoints.api`."""
    data = load_json(content, provider="copilot")
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise ResponseFormatError("Copilot token response has no token", provider="copilot")
    return CopilotToken(token, _refresh_at(data, now), _api_of(data))


def _refresh_at(data: dict[str, Any], now: float) -> float:
    expires_at = _number(data.get("expires_at"))
    if expires_at is None:
        refresh_in = _number(data.get("refresh_in"))
        expires_at = now + (refresh_in + REFRESH_MARGIN if refresh_in else DEFAULT_LIFETIME)
    return expires_at - REFRESH_MARGIN


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _api_of(data: dict[str, Any]) -> str:
    endpoints = data.get("endpoints")
    api = endpoints.get("api") if isinstance(endpoints, dict) else None
    if isinstance(api, str) and api.startswith("https://"):
        return api.rstrip("/")
    return DEFAULT_API


def exchange_error(status: int, content: bytes, secret: str) -> ProviderError:
    """The error for a failed exchange: 401 → log in again; 403/404 → no Copilot access."""
    detail = _detail(content).replace(secret, "<redacted>") if secret else _detail(content)
    suffix = f" ({detail})" if detail else ""
    if status == 401:
        message = f"GitHub refused the Copilot login token (HTTP 401){suffix}: {LOGIN_HINT}"
        return AuthenticationError(message, provider="copilot", status=status)
    if status in (403, 404):
        message = (f"this GitHub account has no Copilot access (HTTP {status}){suffix}: a GitHub "
                   "Copilot subscription is required; check it, or log in with another account")
        return PermissionDeniedError(message, provider="copilot", status=status)
    message = f"Copilot token exchange failed (HTTP {status}){suffix}"
    return error_class_for_status(status)(message, provider="copilot", status=status)


def _detail(content: bytes) -> str:
    """GitHub's own reason (`error_details.message` or `message`), at most 200 characters."""
    try:
        data = msgspec.json.decode(content.strip())
    except msgspec.DecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    details = data.get("error_details")
    text = details.get("message") if isinstance(details, dict) else None
    return str(text or data.get("message") or "")[:200]


class CopilotTokenSource(CachedToken[CopilotToken]):
    """Copilot API keys for one GitHub token: exchanged on demand, cached, refreshed near expiry.

    `github_token` is called at each exchange, so a token file rewritten by a new login is seen.
    """

    def __init__(
        self,
        github_token: Callable[[], str],
        *,
        get: TokenGet = httpx_get,
        clock: Callable[[], float] = time.time,
        url: str = TOKEN_URL,
    ) -> None:
        super().__init__(clock)
        self._github_token = github_token
        self._get = get
        self._url = url

    def __repr__(self) -> str:
        return f"CopilotTokenSource(url={self._url!r}, cached={self._value is not None})"

    async def token(self) -> CopilotToken:
        """A valid Copilot key."""
        return await self.value()

    def _usable(self, value: CopilotToken) -> bool:
        return self._clock() < value.refresh_at

    async def _fetch(self) -> CopilotToken:
        github_token = self._github_token()
        now = self._clock()
        status, content = await self._get(self._url, exchange_headers(github_token))
        if status != 200:
            raise exchange_error(status, content, github_token)
        self._minted(now)
        return parse_token_response(content, now)


class CopilotAdapter(OpenAIAdapter):
    """OpenAI's builders and parsers with Copilot's headers and its exchanged Bearer key."""

    name = "copilot"

    def __init__(
        self,
        *,
        get: TokenGet = httpx_get,
        clock: Callable[[], float] = time.time,
        read_token: Callable[[str], str] = read_github_token,
    ) -> None:
        super().__init__()
        self._get = get
        self._clock = clock
        self._read_token = read_token
        self._sources: dict[str, CopilotTokenSource] = {}

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        """No `authorization` here: `api_key` is the GitHub token, which only GitHub may see."""
        return {
            "content-type": "application/json",
            "accept": "application/json",
            "editor-version": EDITOR_VERSION,
            "editor-plugin-version": EDITOR_PLUGIN_VERSION,
            "copilot-integration-id": INTEGRATION_ID,
            "openai-intent": "conversation-panel",
            "user-agent": USER_AGENT,
        }

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        return forget_on_401(super().parse_error(status, headers, content), status, self._sources.values())

    async def authorize(self, endpoint: Endpoint, request: HttpRequest) -> HttpRequest:
        """Add `Authorization: Bearer <copilot key>` and use the API host the exchange named."""
        token = await self.token_source(endpoint).token()
        headers = {**request.headers, "authorization": f"Bearer {token.token}"}
        url = rebase(request.url, endpoint.base_url, token.api)
        return msgspec.structs.replace(request, url=url, headers=headers)

    def token_source(self, endpoint: Endpoint) -> CopilotTokenSource:
        """One source per credential: the token file, else the endpoint's key."""
        if path := endpoint.options.get("token_path"):
            return self._source(f"file:{path}", lambda: self._read_token(path))
        if key := endpoint.api_key:
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            return self._source(f"key:{digest}", lambda: key)
        raise ConfigError(
            "GitHub Copilot needs a GitHub token: set token_path (the file the device-flow login "
            "wrote) or SLUICE_COPILOT_GITHUB_TOKEN"
        )

    def _source(self, name: str, github_token: Callable[[], str]) -> CopilotTokenSource:
        if name not in self._sources:
            source = CopilotTokenSource(github_token, get=self._get, clock=self._clock)
            self._sources[name] = source
        return self._sources[name]


def rebase(url: str, base_url: str, api: str) -> str:
    """`url` moved from the default API root to `api`; a changed base URL (a proxy) is kept."""
    base = base_url.rstrip("/")
    if base != DEFAULT_API or not url.startswith(base) or api == base:
        return url
    return api + url[len(base):]
