"""Vertex AI adapter: URLs, `:predict` embeddings, and the service-account token exchange
(RS256 JWT → access token), with the token endpoint on an `httpx.MockTransport`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.adapters.base import HttpRequest
from shared.adapters.vertex import (
    JWT_GRANT,
    SCOPE,
    TOKEN_URL,
    ServiceAccount,
    VertexAdapter,
    VertexTokenSource,
    httpx_poster,
    load_service_account,
)
from shared.errors import AuthenticationError, BadRequestError, ConfigError, ServerError
from tests.conftest import load_sample
from tests.unit.test_adapters_common import (
    as_bytes,
    endpoint,
    recorded,
    request_body,
    request_url,
    sent,
)

TOKEN_BODY = load_sample("google_oauth_token_response.json")["response"]["body"]
ACCESS_TOKEN = TOKEN_BODY["access_token"]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TokenEndpoint:
    """A fake oauth2.googleapis.com/token that checks each JWT grant it receives."""

    def __init__(self, public_key: Any, responses: list[tuple[int, Any]] | None = None) -> None:
        self.public_key = public_key
        self.responses = responses or []
        self.grants: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == TOKEN_URL
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = parse_qs(request.content.decode())
        assert form["grant_type"] == [JWT_GRANT]
        assertion = form["assertion"][0]
        self.headers.append(jwt.get_unverified_header(assertion))
        claims = jwt.decode(
            assertion,
            self.public_key,
            algorithms=["RS256"],
            audience=TOKEN_URL,
            options={"verify_exp": False, "verify_iat": False},  # the tests run on a fake clock
        )
        self.grants.append(claims)
        status, body = self.responses.pop(0) if self.responses else (200, TOKEN_BODY)
        return httpx.Response(status, content=as_bytes(body))


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def account(rsa_key: rsa.RSAPrivateKey) -> ServiceAccount:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ServiceAccount(
        client_email="batch@my-proj.iam.gserviceaccount.com",
        private_key=pem,
        private_key_id="kid-123",
        project_id="my-proj",
    )


@pytest.fixture
def key_file(tmp_path: Path, account: ServiceAccount) -> Path:
    path = tmp_path / "sa.json"
    info = {
        "type": "service_account",
        "project_id": account.project_id,
        "private_key_id": account.private_key_id,
        "private_key": account.private_key,
        "client_email": account.client_email,
        "token_uri": TOKEN_URL,
    }
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def token_endpoint(rsa_key: rsa.RSAPrivateKey) -> TokenEndpoint:
    return TokenEndpoint(rsa_key.public_key())


@pytest.fixture
def client(token_endpoint: TokenEndpoint) -> Iterator[httpx.AsyncClient]:
    yield httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint))


def source_for(
    account: ServiceAccount, client: httpx.AsyncClient, clock: Callable[[], float]
) -> VertexTokenSource:
    return VertexTokenSource(account, post=httpx_poster(client), clock=clock)


# --- token source --------------------------------------------------------------------------------


async def test_token_exchange_sends_a_signed_jwt_grant(
    account: ServiceAccount, client: httpx.AsyncClient, token_endpoint: TokenEndpoint
) -> None:
    clock = Clock()
    token = await source_for(account, client, clock).token()
    assert token == ACCESS_TOKEN
    (claims,) = token_endpoint.grants
    assert claims["iss"] == account.client_email
    assert claims["scope"] == SCOPE
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 3600
    assert token_endpoint.headers[0]["kid"] == "kid-123"
    assert token_endpoint.headers[0]["alg"] == "RS256"


async def test_token_is_cached_until_five_minutes_before_expiry(
    account: ServiceAccount, client: httpx.AsyncClient, token_endpoint: TokenEndpoint
) -> None:
    clock = Clock()
    source = source_for(account, client, clock)
    await source.token()
    clock.now += 3599 - 301  # expires_in 3599: still more than 5 minutes left
    await source.token()
    assert len(token_endpoint.grants) == 1
    clock.now += 2  # now inside the 5-minute margin
    await source.token()
    assert len(token_endpoint.grants) == 2


async def test_concurrent_callers_share_one_exchange(
    account: ServiceAccount, client: httpx.AsyncClient, token_endpoint: TokenEndpoint
) -> None:
    post = httpx_poster(client)

    async def slow_post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        await asyncio.sleep(0.01)  # a real exchange suspends: let the other callers pile up
        return await post(url, headers, body)

    source = VertexTokenSource(account, post=slow_post, clock=Clock())
    tokens = await asyncio.gather(*(source.token() for _ in range(10)))
    assert set(tokens) == {ACCESS_TOKEN}
    assert len(token_endpoint.grants) == 1


async def test_expires_in_may_be_a_string(
    account: ServiceAccount, rsa_key: rsa.RSAPrivateKey
) -> None:
    token_endpoint = TokenEndpoint(
        rsa_key.public_key(), [(200, {**TOKEN_BODY, "expires_in": "120"})]
    )
    clock = Clock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as client:
        source = source_for(account, client, clock)
        await source.token()
        await source.token()
    assert len(token_endpoint.grants) == 2  # 120 s lifetime is inside the 5-minute margin


async def test_invalid_grant_is_an_authentication_error(
    account: ServiceAccount, rsa_key: rsa.RSAPrivateKey
) -> None:
    refusal = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    token_endpoint = TokenEndpoint(rsa_key.public_key(), [(400, refusal)])
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as client:
        with pytest.raises(AuthenticationError) as info:
            await source_for(account, client, Clock()).token()
    assert not info.value.retryable
    assert info.value.code == "invalid_grant"
    assert "Invalid JWT Signature" in info.value.message
    assert "eyJ" not in info.value.message  # the assertion never lands in a message


async def test_token_endpoint_outage_is_retryable(
    account: ServiceAccount, rsa_key: rsa.RSAPrivateKey
) -> None:
    token_endpoint = TokenEndpoint(
        rsa_key.public_key(), [(503, {"error": "temporarily_unavailable"})]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as client:
        with pytest.raises(ServerError) as info:
            await source_for(account, client, Clock()).token()
    assert info.value.retryable


def test_key_file_is_read_and_its_repr_hides_the_private_key(
    key_file: Path, account: ServiceAccount
) -> None:
    loaded = load_service_account(str(key_file))
    assert loaded == account
    assert "PRIVATE KEY" not in repr(loaded) and "PRIVATE KEY" not in str(loaded)


def test_rich_repr_hides_the_private_key(account: ServiceAccount) -> None:
    shown = dict(account.__rich_repr__())
    assert shown == {"client_email": account.client_email, "project_id": "my-proj"}


@pytest.mark.parametrize("base", ["", "http://"])
def test_empty_base_url_falls_back_to_the_regional_host(base: str) -> None:
    ep = endpoint("vertex", base, project_id="p", location="asia-northeast1")
    url = VertexAdapter().build_chat(ep, "g", {"messages": [{"role": "user", "content": "x"}]}).url
    assert url.startswith("https://asia-northeast1-aiplatform.googleapis.com/v1/projects/p/")


def test_missing_or_broken_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_service_account(str(tmp_path / "nope.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"client_email": "x"}')
    with pytest.raises(ConfigError, match="not a service-account"):
        load_service_account(str(broken))


# --- adapter -------------------------------------------------------------------------------------


async def test_authorize_adds_the_bearer_token(key_file: Path, client: httpx.AsyncClient) -> None:
    adapter = VertexAdapter(post=httpx_poster(client), clock=Clock())
    ep = endpoint(
        "vertex", "https://{location}-aiplatform.googleapis.com/v1", key_file=str(key_file)
    )
    request = adapter.build_chat(
        ep, "gemini-2.0-flash", {"messages": [{"role": "user", "content": "x"}]}
    )
    assert "authorization" not in request.headers  # build_* stays pure
    signed = await adapter.authorize(ep, request)
    assert signed.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert signed.url == request.url and signed.body == request.body


async def test_without_key_file_the_api_key_is_used_as_an_access_token() -> None:
    adapter = VertexAdapter()
    ep = endpoint("vertex", "", "ya29.static", project_id="p")
    signed = await adapter.authorize(ep, HttpRequest("POST", "https://x", {}))
    assert signed.headers["authorization"] == "Bearer ya29.static"


def test_chat_url_uses_project_from_the_key_file_and_default_location(key_file: Path) -> None:
    ep = endpoint(
        "vertex", "https://{location}-aiplatform.googleapis.com/v1", key_file=str(key_file)
    )
    request = VertexAdapter().build_chat(
        ep, "gemini-2.0-flash", {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert request.url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1"
        "/publishers/google/models/gemini-2.0-flash:generateContent"
    )
    assert sent(request.body) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_options_override_project_and_location() -> None:
    ep = endpoint(
        "vertex",
        "https://us-central1-aiplatform.googleapis.com/v1",
        project_id="other",
        location="europe-west4",
    )
    url = (
        VertexAdapter()
        .build_chat(ep, "gemini-2.0-flash", {"messages": [{"role": "user", "content": "x"}]})
        .url
    )
    assert url.startswith(
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/other/locations/europe-west4/"
    )


def test_missing_project_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="project"):
        VertexAdapter().build_chat(
            endpoint("vertex", "https://x"), "g", {"messages": [{"role": "user", "content": "x"}]}
        )


def test_predict_request_matches_the_recorded_one() -> None:
    ep = endpoint(
        "vertex",
        "https://aiplatform.googleapis.com/v1beta1",
        project_id="pydantic-ai",
        location="global",
    )
    request = VertexAdapter().build_embeddings(
        ep, "gemini-embedding-001", ["Hello, world!"], {"task_type": "RETRIEVAL_QUERY"}
    )
    assert request.url == request_url("vertex_predict_embedding.json")
    assert sent(request.body) == request_body("vertex_predict_embedding.json")


def test_predict_embedding_sample() -> None:
    _, headers, content = recorded("vertex_predict_embedding.json")
    parsed = VertexAdapter().parse_embeddings(headers, content, "gemini-embedding-001")
    vector = parsed.body["data"][0]["embedding"]
    assert len(vector) == 3072
    assert vector[0] == pytest.approx(-0.020920176059007645)
    assert parsed.usage.prompt_tokens == 4


def test_embedding_caps_depend_on_the_model() -> None:
    adapter = VertexAdapter()
    assert adapter.max_embed_inputs_for("gemini-embedding-001") == 1
    assert adapter.max_embed_inputs_for("text-embedding-005") == 250
    ep = endpoint("vertex", "", project_id="p")
    with pytest.raises(BadRequestError, match="at most 1"):
        adapter.build_embeddings(ep, "gemini-embedding-001", ["a", "b"], {})
    payload = sent(
        adapter.build_embeddings(ep, "text-embedding-005", ["a", "b"], {"dimensions": 256}).body
    )
    assert payload == {
        "instances": [{"content": "a"}, {"content": "b"}],
        "parameters": {"outputDimensionality": 256},
    }


def test_generate_content_answer_is_parsed_like_gemini() -> None:
    _, headers, content = recorded("gemini_generate_content.json")
    parsed = VertexAdapter().parse_chat(headers, content, "gemini-3-pro-preview")
    assert parsed.body["choices"][0]["message"]["content"].startswith("Cinder")
    assert parsed.usage.total_tokens == 940


async def test_401_with_an_old_token_refreshes_once(
    key_file: Path, client: httpx.AsyncClient
) -> None:
    clock = Clock()
    adapter = VertexAdapter(post=httpx_poster(client), clock=clock)
    ep = endpoint("vertex", "", key_file=str(key_file))
    await adapter.authorize(ep, HttpRequest("POST", "https://x", {}))
    clock.now += 600
    body = {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials.",
            "status": "UNAUTHENTICATED",
        }
    }
    first = adapter.parse_error(401, {}, as_bytes(body))
    assert isinstance(first, AuthenticationError)
    assert first.retryable and first.code == "UNAUTHENTICATED"
    await adapter.authorize(ep, HttpRequest("POST", "https://x", {}))  # mints a fresh token
    second = adapter.parse_error(401, {}, as_bytes(body))
    assert not second.retryable  # a fresh token refused again: refreshing will not help
