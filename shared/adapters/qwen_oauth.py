"""Qwen OAuth (chat.qwen.ai's free tier): OpenAI-shaped chat with device-flow tokens from a file.

The Qwen device-flow login (Qwen Code, or sluice's setup) writes a credentials JSON file (option
`credentials_path`, default `~/.qwen/oauth_creds.json`) holding `access_token`, `refresh_token`,
the expiry as `expires_at` or `expiry_date` (seconds or milliseconds, told apart by magnitude) and
optionally `resource_url`, the API host the account uses (default `portal.qwen.ai`).

`QwenTokenSource` reads the file, and when the access token has expired or expires within a minute
it refreshes it (`POST chat.qwen.ai/api/v1/oauth2/token`, form `grant_type=refresh_token`, with
the public Qwen Code client id, overridable by the `client_id` option), one refresh at a time, and
writes the new tokens back to the file atomically with mode 0600, keeping the file's other fields
and its expiry format. Before refreshing it re-reads the file, so a refresh made by another process
(which may have rotated the refresh token) is picked up instead of repeated. Its one HTTP call is
an injectable async callable (`shared.adapters.vertex.TokenPost`).

The `authorize` hook adds `Authorization: Bearer <access token>` and sends the request to
`https://{resource_url}/v1` unless the base URL was changed from the default (a proxy). A 401 drops
the cached token; the call is retried once, after a refresh, unless the token was just refreshed.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
import structlog

from shared.adapters._token import CachedToken, forget_on_401
from shared.adapters._wire import dump_json, load_json
from shared.adapters.base import Endpoint, HttpRequest
from shared.adapters.openai import OpenAIAdapter
from shared.adapters.vertex import TokenPost, httpx_post
from shared.errors import (
    AuthenticationError,
    ConfigError,
    ProviderError,
    ResponseFormatError,
    error_class_for_status,
)

TOKEN_URL: Final = "https://chat.qwen.ai/api/v1/oauth2/token"
CLIENT_ID: Final = "f0304373b74a44d2b584a3fb70ca9e56"
"""Qwen Code's public OAuth client id (option `client_id` overrides it)."""
DEFAULT_CREDENTIALS_PATH: Final = "~/.qwen/oauth_creds.json"
DEFAULT_RESOURCE: Final = "portal.qwen.ai"
DEFAULT_BASE_URL: Final = "https://portal.qwen.ai/v1"
USER_AGENT: Final = "QwenCode/0.10.0 (linux; x64)"
"""Alibaba's WAF turns away requests without a client user agent (option `user_agent`)."""
REFRESH_MARGIN: Final = 60.0
"""Seconds before expiry at which the access token is refreshed."""
MS_THRESHOLD: Final = 1e11
"""Expiry values above this are milliseconds (1e11 seconds is the year 5138)."""
DEFAULT_LIFETIME: Final = 3600.0
EXPIRY_KEYS: Final = ("expires_at", "expiry_date")
_REFUSED: Final = frozenset({"invalid_grant", "invalid_client", "unauthorized_client",
                             "invalid_request"})


def _log() -> Any:
    return structlog.get_logger("sluice.qwen_oauth")


def login_hint(path: Path | str) -> str:
    return (f"log in with the Qwen device flow (Qwen Code's `/auth`, or sluice's setup) so that "
            f"{str(path)!r} holds fresh tokens")


class QwenCredentials(msgspec.Struct, frozen=True):
    """The tokens sluice uses; `expires_at` in unix seconds (inf when the file gives none)."""

    access_token: str
    refresh_token: str = ""
    expires_at: float = math.inf
    resource_url: str = ""

    def __repr__(self) -> str:
        refresh = "set" if self.refresh_token else "none"
        return (f"QwenCredentials(access_token=<set>, refresh_token=<{refresh}>, "
                f"expires_at={self.expires_at!r}, resource_url={self.resource_url!r})")

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("access_token", "<set>"), ("expires_at", self.expires_at),
                ("resource_url", self.resource_url)]


def expiry_seconds(value: Any) -> float | None:
    """An expiry in unix seconds, from seconds or milliseconds (told apart by magnitude)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number / 1000.0 if number > MS_THRESHOLD else number


def credentials_from(data: Any, path: Path) -> QwenCredentials:
    """The tokens of a parsed credentials file; a ConfigError (naming only the file) if absent."""
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise ConfigError(f"the Qwen OAuth credentials file {str(path)!r} holds no access_token; "
                          f"{login_hint(path)}")
    expiry = next((e for k in EXPIRY_KEYS if (e := expiry_seconds(data.get(k))) is not None), None)
    return QwenCredentials(
        token,
        str(data.get("refresh_token") or ""),
        math.inf if expiry is None else expiry,
        str(data.get("resource_url") or ""),
    )


def read_credentials(path: Path) -> dict[str, Any]:
    """The whole credentials file (its other fields are kept when it is written back)."""
    try:
        data = msgspec.json.decode(path.read_bytes())
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    except msgspec.DecodeError:
        problem = "not a JSON file"
    else:
        if isinstance(data, dict):
            return data
        problem = "not a JSON object"
    raise ConfigError(f"cannot use the Qwen OAuth credentials file {str(path)!r}: {problem}; "
                      f"{login_hint(path)}")


def write_credentials(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically (temp file in the same folder, fsync, rename), mode 0600.

    A symlinked file is replaced at its target, so the link survives."""
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(dump_json(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def updated_file(raw: dict[str, Any], creds: QwenCredentials) -> dict[str, Any]:
    """`raw` with new tokens, the expiry in the key(s) and unit (s or ms) the file already used."""
    data = {**raw, "access_token": creds.access_token, "refresh_token": creds.refresh_token}
    if creds.resource_url:
        data["resource_url"] = creds.resource_url
    for key in [k for k in EXPIRY_KEYS if k in raw] or ["expires_at"]:
        data[key] = _expiry_value(raw.get(key), key, creds.expires_at)
    return data


def _expiry_value(previous: Any, key: str, expires_at: float) -> int:
    """Milliseconds if the old value was, or (no old value) under Qwen Code's `expiry_date`."""
    if expiry_seconds(previous) is None:
        in_ms = key == "expiry_date"
    else:
        in_ms = float(previous) > MS_THRESHOLD
    return int(expires_at * 1000) if in_ms else int(expires_at)


def parse_refresh_response(
    content: bytes, previous: QwenCredentials, now: float
) -> QwenCredentials:
    """New credentials from `{access_token, refresh_token?, expires_in, resource_url?}`."""
    data = load_json(content, provider="qwen_oauth")
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise ResponseFormatError("Qwen token refresh answer has no access_token",
                                  provider="qwen_oauth")
    lifetime = expiry_seconds(data.get("expires_in")) or DEFAULT_LIFETIME
    return QwenCredentials(
        token,
        str(data.get("refresh_token") or previous.refresh_token),
        now + lifetime,
        str(data.get("resource_url") or previous.resource_url),
    )


def refresh_error(
    status: int, content: bytes, path: Path, secrets: tuple[str, ...]
) -> ProviderError:
    """An OAuth error from the token endpoint; a refused refresh token means logging in again."""
    code, text = _oauth_error(content)
    for secret in secrets:
        text = text.replace(secret, "<redacted>") if secret else text
    detail = ": ".join(v for v in (code, text) if v) or "no detail"
    message = f"Qwen OAuth token refresh failed (HTTP {status}): {detail}"
    if status == 401 or (status == 400 and (code in _REFUSED or not code)):
        message = f"{message}; {login_hint(path)}"
        return AuthenticationError(message, provider="qwen_oauth", status=status, code=code or None)
    cls = error_class_for_status(status)
    return cls(message, provider="qwen_oauth", status=status, code=code or None)


def _oauth_error(content: bytes) -> tuple[str, str]:
    try:
        data = msgspec.json.decode(content.strip())
    except msgspec.DecodeError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    code = data.get("error")
    text = data.get("error_description") or data.get("message") or ""
    return (code if isinstance(code, str) else ""), str(text)[:200]


def api_base(resource_url: str) -> str:
    """`portal.qwen.ai` → `https://portal.qwen.ai/v1` (a scheme and `/v1` kept when present)."""
    base = (resource_url or DEFAULT_RESOURCE).strip().rstrip("/")
    if not base.startswith(("https://", "http://")):
        base = f"https://{base}"
    return base if base.endswith("/v1") else f"{base}/v1"


class QwenTokenSource(CachedToken[QwenCredentials]):
    """Access tokens from one credentials file, refreshed (and written back) near expiry."""

    def __init__(
        self,
        path: Path,
        *,
        post: TokenPost = httpx_post,
        clock: Callable[[], float] = time.time,
        client_id: str = CLIENT_ID,
        token_url: str = TOKEN_URL,
        user_agent: str = USER_AGENT,
    ) -> None:
        super().__init__(clock)
        self.path = path
        self._post = post
        self._client_id = client_id
        self._token_url = token_url
        self._user_agent = user_agent
        self._rejected = ""

    def __repr__(self) -> str:
        return f"QwenTokenSource(path={str(self.path)!r}, cached={self._value is not None})"

    async def credentials(self) -> QwenCredentials:
        """Usable credentials (read from the file, refreshed when they are near expiry)."""
        return await self.value()

    def invalidate(self) -> bool:
        """Forget the token after a 401 (and do not take it from the file again); True unless
        it was refreshed here a moment ago."""
        if self._value is not None:
            self._rejected = self._value.access_token
        return super().invalidate()

    def _usable(self, value: QwenCredentials) -> bool:
        fresh = self._clock() < value.expires_at - REFRESH_MARGIN
        return fresh and value.access_token != self._rejected

    async def _fetch(self) -> QwenCredentials:
        raw = read_credentials(self.path)
        creds = credentials_from(raw, self.path)
        if not self._usable(creds):
            creds = await self._refresh(raw, creds)
        return creds

    async def _refresh(self, raw: dict[str, Any], creds: QwenCredentials) -> QwenCredentials:
        if not creds.refresh_token:
            raise AuthenticationError(
                f"the Qwen access token has expired and there is no refresh token; "
                f"{login_hint(self.path)}", provider="qwen_oauth")
        now = self._clock()
        status, content = await self._post(self._token_url, self._headers(), self._form(creds))
        if status != 200:
            error = refresh_error(status, content, self.path, (creds.access_token,
                                                               creds.refresh_token))
            return self._refreshed_elsewhere(creds, error)
        new = parse_refresh_response(content, creds, now)
        self._save(updated_file(raw, new))
        self._minted(now)
        return new

    def _headers(self) -> dict[str, str]:
        return {"content-type": "application/x-www-form-urlencoded",
                "accept": "application/json", "user-agent": self._user_agent}

    def _form(self, creds: QwenCredentials) -> bytes:
        form = {"grant_type": "refresh_token", "refresh_token": creds.refresh_token,
                "client_id": self._client_id}
        return urlencode(form).encode()

    def _refreshed_elsewhere(self, creds: QwenCredentials, error: ProviderError) -> QwenCredentials:
        """After a refused refresh: the file's tokens, if another process refreshed them since."""
        if isinstance(error, AuthenticationError):
            with contextlib.suppress(ConfigError):
                latest = credentials_from(read_credentials(self.path), self.path)
                if latest.refresh_token != creds.refresh_token and self._usable(latest):
                    return latest
        raise error

    def _save(self, data: dict[str, Any]) -> None:
        """Write the refreshed tokens back; on failure keep going with them in memory."""
        try:
            write_credentials(self.path, data)
        except OSError as exc:
            _log().warning("qwen_credentials_not_saved", path=str(self.path),
                           reason=exc.strerror or type(exc).__name__)


class QwenOAuthAdapter(OpenAIAdapter):
    """OpenAI's builders and parsers with Qwen's headers and the file's Bearer token."""

    name = "qwen-oauth"

    def __init__(
        self, *, post: TokenPost = httpx_post, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self._post = post
        self._clock = clock
        self._sources: dict[tuple[str, str], QwenTokenSource] = {}

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        agent = endpoint.options.get("user_agent") or USER_AGENT
        return {
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": agent,
            "x-dashscope-authtype": "qwen-oauth",
            "x-dashscope-cachecontrol": "enable",
            "x-dashscope-useragent": agent,
        }

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        return forget_on_401(super().parse_error(status, headers, content), status, self._sources.values())

    async def authorize(self, endpoint: Endpoint, request: HttpRequest) -> HttpRequest:
        """Add `Authorization: Bearer <access token>` and use the account's API host."""
        creds = await self.token_source(endpoint).credentials()
        headers = {**request.headers, "authorization": f"Bearer {creds.access_token}"}
        url = rebase(request.url, endpoint.base_url, api_base(creds.resource_url))
        return msgspec.structs.replace(request, url=url, headers=headers)

    def token_source(self, endpoint: Endpoint) -> QwenTokenSource:
        """One source per credentials file and client id."""
        path = endpoint.options.get("credentials_path") or DEFAULT_CREDENTIALS_PATH
        client_id = endpoint.options.get("client_id") or CLIENT_ID
        key = (path, client_id)
        if key not in self._sources:
            self._sources[key] = QwenTokenSource(
                Path(path).expanduser(), post=self._post, clock=self._clock, client_id=client_id,
                user_agent=endpoint.options.get("user_agent") or USER_AGENT,
            )
        return self._sources[key]


def rebase(url: str, base_url: str, api: str) -> str:
    """`url` moved from the default API root to `api`; a changed base URL (a proxy) is kept."""
    base = base_url.rstrip("/")
    if base != DEFAULT_BASE_URL or not url.startswith(base) or api == base:
        return url
    return api + url[len(base):]
