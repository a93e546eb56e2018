"""Vertex AI: Gemini `generateContent` and text-embedding `:predict`, with service-account auth.

URL: `https://{location}-aiplatform.googleapis.com/v1/projects/{p}/locations/{loc}/publishers/google/
models/{m}:{method}` (`location = global` uses `aiplatform.googleapis.com`). Options:
`key_file` (service-account JSON), `project_id` (default: the key file's), `location`
(default `us-central1`). Bodies and answers are Gemini's (`gemini.py`).

Auth: the key file's RSA key signs an RS256 JWT that `oauth2.googleapis.com/token` exchanges for an
access token, cached until five minutes before it expires (`VertexTokenSource`; its one HTTP call
is an injectable async callable). The adapter's `authorize` hook adds `Authorization: Bearer`. A
401 drops the cached token and is retried once with a fresh one. Without a key file, the
endpoint's `api_key` is taken as a ready access token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import httpx
import jwt
import msgspec

from shared.adapters._token import CachedToken, forget_on_401
from shared.adapters._wire import dump_json, header, load_json
from shared.adapters.base import Endpoint, HttpRequest, Parsed
from shared.adapters.gemini import generate_content_payload, google_error, parse_generate_content
from shared.adapters.openai import embeddings_body, error_payload, text_inputs, usage_of
from shared.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ProviderError,
    ResponseFormatError,
    error_class_for_status,
)

TOKEN_URL: Final = "https://oauth2.googleapis.com/token"
SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_LOCATION: Final = "us-central1"
REFRESH_MARGIN: Final = 300.0
"""Seconds before expiry at which a cached access token is replaced."""
MAX_PREDICT_INSTANCES: Final = 250
_RETRYABLE_OAUTH: Final = frozenset({"internal_failure", "server_error", "temporarily_unavailable"})
_REGIONAL_HOST: Final = re.compile(r"^https://(?:[a-z0-9-]+-)?aiplatform\.googleapis\.com")

TokenPost = Callable[[str, dict[str, str], bytes], Awaitable[tuple[int, bytes]]]
"""(url, headers, body) → (status, body): the token exchange's only I/O."""


async def httpx_post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """The default `TokenPost`: one short-lived httpx client per exchange (about once an hour)."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.post(url, headers=headers, content=body)
    return response.status_code, response.content


def httpx_poster(client: httpx.AsyncClient) -> TokenPost:
    """A `TokenPost` over a given client (a shared one, or one on an `httpx.MockTransport`)."""

    async def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        response = await client.post(url, headers=headers, content=body)
        return response.status_code, response.content

    return post


class ServiceAccount(msgspec.Struct, frozen=True):
    """The fields of a service-account key file that sluice uses. Its repr hides the key."""

    client_email: str
    private_key: str
    private_key_id: str = ""
    project_id: str = ""
    token_uri: str = TOKEN_URL

    def __repr__(self) -> str:
        return f"ServiceAccount(client_email={self.client_email!r}, project_id={self.project_id!r})"

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """What rich (tracebacks with locals) shows: never the private key."""
        return [("client_email", self.client_email), ("project_id", self.project_id)]


def load_service_account(path: str) -> ServiceAccount:
    """Read a key file; errors name the file and the problem, never its content."""
    try:
        raw = Path(path).expanduser().read_bytes()
        return msgspec.json.decode(raw, type=ServiceAccount)
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    except (msgspec.DecodeError, msgspec.ValidationError):
        problem = "not a service-account JSON key file (needs client_email and private_key)"
    raise ConfigError(f"cannot use the Vertex key file {path!r}: {problem}")


class VertexTokenSource(CachedToken[tuple[str, float]]):
    """Access tokens for one service account: minted on demand, cached, refreshed near expiry.
    The cached value is (access token, expiry in unix seconds)."""

    def __init__(
        self,
        account: ServiceAccount,
        *,
        post: TokenPost = httpx_post,
        clock: Callable[[], float] = time.time,
        scope: str = SCOPE,
    ) -> None:
        super().__init__(clock)
        self.account = account
        self._post = post
        self._scope = scope

    async def token(self) -> str:
        """A valid access token."""
        return (await self.value())[0]

    def assertion(self, now: float) -> str:
        """The RS256-signed JWT grant (google-auth's `_make_authorization_grant_assertion`)."""
        claims = {
            "iss": self.account.client_email,
            "scope": self._scope,
            "aud": self.account.token_uri or TOKEN_URL,
            "iat": int(now),
            "exp": int(now) + 3600,
        }
        kid = {"kid": self.account.private_key_id} if self.account.private_key_id else None
        return jwt.encode(claims, self.account.private_key, algorithm="RS256", headers=kid)

    def _usable(self, value: tuple[str, float]) -> bool:
        return self._clock() < value[1] - REFRESH_MARGIN

    async def _fetch(self) -> tuple[str, float]:
        now = self._clock()
        form = urlencode({"grant_type": JWT_GRANT, "assertion": self.assertion(now)}).encode()
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        }
        status, content = await self._post(self.account.token_uri or TOKEN_URL, headers, form)
        if status != 200:
            raise token_error(status, content)
        token, lifetime = parse_token_response(content)
        self._minted(now)
        return token, now + lifetime


def parse_token_response(content: bytes) -> tuple[str, float]:
    """(access_token, expires_in seconds); `expires_in` may arrive as a string."""
    data = load_json(content, provider="vertex")
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise ResponseFormatError("token response has no access_token", provider="vertex")
    try:
        lifetime = float(data.get("expires_in") or 3600)
    except (TypeError, ValueError):
        lifetime = 3600.0
    return token, lifetime


def token_error(status: int, content: bytes) -> ProviderError:
    """An OAuth error (`{"error", "error_description"}`) from the token endpoint."""
    payload = error_payload(content, "vertex")
    payload = payload if isinstance(payload, dict) else {"error_description": str(payload)}
    code = str(payload.get("error") or "") or None
    text = ": ".join(str(v) for v in (code, payload.get("error_description")) if v)
    message = f"Vertex token exchange failed (HTTP {status}): {text or 'no detail'}"
    cls = error_class_for_status(status)
    if status in (400, 401) and code not in _RETRYABLE_OAUTH:
        cls = AuthenticationError
    retryable = True if code in _RETRYABLE_OAUTH else None
    return cls(message, provider="vertex", status=status, code=code, retryable=retryable)


class VertexAdapter:
    name = "vertex"
    max_embed_inputs = 1
    """Safe for every model; `max_embed_inputs_for(model)` gives the model's own cap."""

    def __init__(
        self,
        *,
        post: TokenPost = httpx_post,
        clock: Callable[[], float] = time.time,
        load_account: Callable[[str], ServiceAccount] = load_service_account,
    ) -> None:
        self._post = post
        self._clock = clock
        self._load_account = load_account
        self._accounts: dict[str, ServiceAccount] = {}
        self._sources: dict[str, VertexTokenSource] = {}

    def max_embed_inputs_for(self, model: str) -> int:
        """`gemini-embedding-*` takes one instance per `:predict`; text-embedding models 250."""
        return 1 if "gemini-embedding" in model else MAX_PREDICT_INSTANCES

    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "accept": "application/json"}

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        payload = generate_content_payload(body, self.name)
        url = self.model_url(endpoint, model, "generateContent")
        return HttpRequest("POST", url, self.headers(), dump_json(payload))

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        return parse_generate_content(headers, content, model, self.name)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        cap = self.max_embed_inputs_for(model)
        if len(inputs) > cap:
            raise BadRequestError(
                f"Vertex {model} embeds at most {cap} inputs per call", provider=self.name
            )
        payload = predict_payload(text_inputs(inputs, self.name), body)
        url = self.model_url(endpoint, model, "predict")
        return HttpRequest("POST", url, self.headers(), dump_json(payload))

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        predictions = data.get("predictions") if isinstance(data, dict) else None
        if not isinstance(predictions, list):
            raise ResponseFormatError("response has no `predictions` list", provider=self.name)
        embeddings = [_embedding(p, self.name) for p in predictions]
        tokens = sum(int((e.get("statistics") or {}).get("token_count") or 0) for e in embeddings)
        usage = usage_of(tokens, 0)
        body = embeddings_body([e["values"] for e in embeddings], model, usage)
        return Parsed(body, usage, model, header(headers, "x-request-id") or "", data)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        return forget_on_401(google_error(status, content, self.name), status, self._sources.values())

    async def authorize(self, endpoint: Endpoint, request: HttpRequest) -> HttpRequest:
        """Add `Authorization: Bearer <access token>` (minting or refreshing it when needed)."""
        token = await self._access_token(endpoint)
        headers = {**request.headers, "authorization": f"Bearer {token}"}
        return msgspec.structs.replace(request, headers=headers)

    def model_url(self, endpoint: Endpoint, model: str, method: str) -> str:
        location = endpoint.options.get("location") or DEFAULT_LOCATION
        project = self.project(endpoint)
        path = (
            f"/projects/{quote(project, safe='')}/locations/{quote(location, safe='')}"
            f"/publishers/google/models/{quote(model, safe='')}:{method}"
        )
        return api_base(endpoint.base_url, location) + path

    def project(self, endpoint: Endpoint) -> str:
        """`project_id` from the options, else from the key file (read once)."""
        if project := endpoint.options.get("project_id"):
            return project
        key_file = endpoint.options.get("key_file")
        if key_file and (project := self.account(key_file).project_id):
            return project
        raise ConfigError(
            "Vertex needs a project: set project_id, or use a key file that names one"
        )

    def account(self, key_file: str) -> ServiceAccount:
        if key_file not in self._accounts:
            self._accounts[key_file] = self._load_account(key_file)
        return self._accounts[key_file]

    def token_source(self, key_file: str) -> VertexTokenSource:
        if key_file not in self._sources:
            account = self.account(key_file)
            self._sources[key_file] = VertexTokenSource(account, post=self._post, clock=self._clock)
        return self._sources[key_file]

    async def _access_token(self, endpoint: Endpoint) -> str:
        if key_file := endpoint.options.get("key_file"):
            return await self.token_source(key_file).token()
        if endpoint.api_key:
            return endpoint.api_key
        raise ConfigError("Vertex needs a service-account key file (key_file) or an access token")


def api_base(base_url: str, location: str) -> str:
    """The API root for a location; a non-Google base URL (a proxy) is kept as given."""
    base = base_url.replace("{location}", location).rstrip("/")
    host = "https://aiplatform.googleapis.com"
    if location != "global":
        host = f"https://{location}-aiplatform.googleapis.com"
    base = _REGIONAL_HOST.sub(host, base) if urlsplit(base).netloc else host
    return base if urlsplit(base).path.strip("/") else base + "/v1"


def predict_payload(texts: list[str], body: dict[str, Any]) -> dict[str, Any]:
    task = body.get("task_type") or body.get("taskType")
    instances = [{"content": text, **({"task_type": str(task)} if task else {})} for text in texts]
    payload: dict[str, Any] = {"instances": instances}
    if body.get("dimensions"):
        payload["parameters"] = {"outputDimensionality": int(body["dimensions"])}
    return payload


def _embedding(prediction: Any, provider: str) -> dict[str, Any]:
    embedding = prediction.get("embeddings") if isinstance(prediction, dict) else None
    if not isinstance(embedding, dict) or not isinstance(embedding.get("values"), list):
        raise ResponseFormatError("prediction has no `embeddings.values`", provider=provider)
    return embedding
