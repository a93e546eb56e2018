"""Bedrock adapter: Converse and InvokeModel samples, error typing from `x-amzn-ErrorType`, and
SigV4 signing checked against an independent computation with frozen time and fixed keys."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.credentials import Credentials

from shared.adapters.base import HttpRequest
from shared.adapters.bedrock import BedrockAdapter, default_credentials, error_type
from shared.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from tests.unit.test_adapters_common import (
    as_bytes,
    endpoint,
    recorded,
    request_body,
    request_url,
    sent,
)

ADAPTER = BedrockAdapter()
ACCESS, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-1"
FROZEN = datetime.datetime(2025, 5, 12, 11, 11, 55)


def fixed_credentials(profile: str | None) -> Credentials:
    return Credentials(ACCESS, SECRET, TOKEN)


def east(**options: str) -> Any:
    return endpoint("bedrock", "https://bedrock-runtime.{region}.amazonaws.com", **options)


# --- Converse ------------------------------------------------------------------------------------


def test_converse_sample() -> None:
    _, headers, content = recorded("bedrock_converse.json")
    parsed = ADAPTER.parse_chat(headers, content, "us.amazon.nova-micro-v1:0")
    choice = parsed.body["choices"][0]
    assert choice["message"]["content"].startswith("Hello! How can I assist you today?")
    assert choice["finish_reason"] == "stop"
    assert (
        parsed.usage.prompt_tokens,
        parsed.usage.completion_tokens,
        parsed.usage.total_tokens,
    ) == (7, 30, 37)
    assert parsed.model == "us.amazon.nova-micro-v1:0"
    assert parsed.raw["metrics"] == {"latencyMs": 268}


def test_second_converse_sample_with_request_id_and_cache_fields() -> None:
    _, headers, content = recorded("bedrock_converse_b.json")
    parsed = ADAPTER.parse_chat(headers, content, "us.anthropic.claude-sonnet-4-6")
    assert parsed.body["choices"][0]["message"]["content"].startswith("Hello! \U0001f44b")
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (9, 24)
    assert parsed.request_id == "X-AMZN-REQUESTID-XXX"  # from x-amzn-RequestId (placeholdered)


def test_converse_cache_tokens_count_as_prompt_tokens() -> None:
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
        "stopReason": "max_tokens",
        "usage": {
            "inputTokens": 3,
            "cacheReadInputTokens": 100,
            "outputTokens": 2,
            "totalTokens": 105,
        },
    }
    parsed = ADAPTER.parse_chat({}, as_bytes(body), "m")
    assert parsed.usage.prompt_tokens == 103
    assert parsed.usage.total_tokens == 105
    assert parsed.body["choices"][0]["finish_reason"] == "length"


def test_build_chat_matches_the_recorded_request() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "You are a chatbot."},
            {"role": "user", "content": "Hello!"},
        ]
    }
    request = ADAPTER.build_chat(east(), "us.amazon.nova-micro-v1:0", body)
    assert request.url == request_url("bedrock_converse.json")
    assert sent(request.body) == request_body("bedrock_converse.json")
    assert "authorization" not in request.headers  # signed later, in authorize()


def test_build_chat_region_and_inference_config() -> None:
    body = {
        "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["\n\n"],
    }
    request = ADAPTER.build_chat(east(region="us-west-2"), "us.anthropic.claude-sonnet-4-6", body)
    assert (
        request.url
        == "https://bedrock-runtime.us-west-2.amazonaws.com/model/us.anthropic.claude-sonnet-4-6/converse"
    )
    payload = sent(request.body)
    assert payload["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]
    assert payload["inferenceConfig"] == {
        "maxTokens": 100,
        "temperature": 0.3,
        "topP": 0.8,
        "stopSequences": ["\n\n"],
    }


@pytest.mark.parametrize("base", ["", "http://"])
def test_empty_base_url_falls_back_to_the_regional_host(base: str) -> None:
    ep = endpoint("bedrock", base, region="eu-central-1")
    url = ADAPTER.build_chat(ep, "m", {"messages": [{"role": "user", "content": "x"}]}).url
    assert url == "https://bedrock-runtime.eu-central-1.amazonaws.com/model/m/converse"


def test_arn_model_ids_are_fully_url_encoded() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6"
    url = ADAPTER.build_chat(east(), arn, {"messages": [{"role": "user", "content": "x"}]}).url
    assert (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic"
        in url
    )


def test_bedrock_api_key_is_a_bearer_header_and_skips_signing() -> None:
    ep = endpoint("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com", "ABSKexamplekey")
    request = ADAPTER.build_chat(ep, "m", {"messages": [{"role": "user", "content": "x"}]})
    assert request.headers["authorization"] == "Bearer ABSKexamplekey"


async def test_authorize_leaves_api_key_requests_unsigned() -> None:
    ep = endpoint("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com", "ABSKexamplekey")
    request = ADAPTER.build_chat(ep, "m", {"messages": [{"role": "user", "content": "x"}]})
    assert await BedrockAdapter(credentials=fixed_credentials).authorize(ep, request) == request


# --- InvokeModel embeddings ----------------------------------------------------------------------


def test_titan_request_matches_the_recorded_one() -> None:
    request = ADAPTER.build_embeddings(
        east(), "amazon.titan-embed-text-v2:0", ["Hello, world!"], {"normalize": True}
    )
    assert request.url == request_url("bedrock_invoke_titan_embed_v2.json")
    assert sent(request.body) == request_body("bedrock_invoke_titan_embed_v2.json")


def test_titan_sample() -> None:
    _, headers, content = recorded("bedrock_invoke_titan_embed_v2.json")
    parsed = ADAPTER.parse_embeddings(headers, content, "amazon.titan-embed-text-v2:0")
    (item,) = parsed.body["data"]
    assert len(item["embedding"]) == 1024
    assert item["embedding"][0] == pytest.approx(-0.05289186164736748)
    assert parsed.usage.prompt_tokens == 5


def test_cohere_on_bedrock_request_matches_the_recorded_one() -> None:
    body = {"input_type": "search_query", "truncate": "NONE"}
    request = ADAPTER.build_embeddings(east(), "cohere.embed-english-v3", ["Hello, world!"], body)
    assert request.url == request_url("bedrock_invoke_cohere_embed_v3.json")
    assert sent(request.body) == request_body("bedrock_invoke_cohere_embed_v3.json")


def test_cohere_on_bedrock_sample_takes_tokens_from_the_header() -> None:
    _, headers, content = recorded("bedrock_invoke_cohere_embed_v3.json")
    parsed = ADAPTER.parse_embeddings(headers, content, "cohere.embed-english-v3")
    (item,) = parsed.body["data"]
    assert len(item["embedding"]) == 1024
    assert item["embedding"][0] == pytest.approx(-0.042236328)
    assert parsed.usage.prompt_tokens == 4
    assert parsed.request_id == "67259668-f82e-41c6-a2a0-136b340d2400"


def test_embedding_caps_by_model_family() -> None:
    assert ADAPTER.max_embed_inputs == 1
    assert ADAPTER.max_embed_inputs_for("amazon.titan-embed-text-v2:0") == 1
    assert ADAPTER.max_embed_inputs_for("us.cohere.embed-v4:0") == 96
    with pytest.raises(BadRequestError, match="at most 1"):
        ADAPTER.build_embeddings(east(), "amazon.titan-embed-text-v2:0", ["a", "b"], {})
    payload = sent(ADAPTER.build_embeddings(east(), "cohere.embed-english-v3", ["a", "b"], {}).body)
    assert payload == {"texts": ["a", "b"], "input_type": "search_document"}
    with pytest.raises(BadRequestError, match="titan-embed"):
        ADAPTER.build_embeddings(east(), "amazon.nova-lite-v1:0", ["a"], {})


def test_cohere_v4_embeddings_keyed_by_type() -> None:
    body = {"embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]}, "id": "x"}
    parsed = ADAPTER.parse_embeddings({}, as_bytes(body), "cohere.embed-v4:0")
    assert [d["embedding"] for d in parsed.body["data"]] == [[0.1, 0.2], [0.3, 0.4]]


# --- errors --------------------------------------------------------------------------------------


def test_throttling_sample_is_a_retryable_rate_limit() -> None:
    status, headers, content = recorded("bedrock_throttling_429.json", None)
    error = ADAPTER.parse_error(status, headers, content)
    assert type(error) is RateLimitError
    assert error.retryable
    assert error.code == "ThrottlingException"
    assert error.message == "Too many tokens, please wait before trying again."


def test_400_sample_without_error_type_header() -> None:
    status, headers, content = recorded("bedrock_converse_400.json")
    error = ADAPTER.parse_error(status, headers, content)
    assert isinstance(error, BadRequestError)
    assert not error.retryable
    assert error.message == "The provided model identifier is invalid."


@pytest.mark.parametrize(
    ("status", "error_type_header", "cls", "retryable"),
    [
        (429, "ModelNotReadyException", RateLimitError, True),
        (400, "ValidationException:http://internal.amazon.com/coral/", BadRequestError, False),
        (400, "ServiceQuotaExceededException", QuotaExceededError, False),
        (408, "ModelTimeoutException", ProviderTimeoutError, True),
        (424, "ModelErrorException", ProviderError, False),
        (503, "ServiceUnavailableException", ServerError, True),
        (403, "UnrecognizedClientException", AuthenticationError, False),
    ],
)
def test_error_type_header_picks_the_class(
    status: int, error_type_header: str, cls: type[ProviderError], retryable: bool
) -> None:
    error = ADAPTER.parse_error(
        status, {"X-Amzn-ErrorType": error_type_header}, b'{"message": "m"}'
    )
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.code == error_type_header.split(":")[0]


def test_daily_token_quota_throttle_is_not_retried() -> None:
    body = b'{"message": "Too many tokens per day, please wait before trying again."}'
    error = ADAPTER.parse_error(429, {"x-amzn-errortype": "ThrottlingException"}, body)
    assert isinstance(error, QuotaExceededError)
    assert not error.retryable


def test_error_type_from_the_body_drops_the_namespace() -> None:
    assert (
        error_type({}, {"__type": "com.amazon.bedrock#ThrottlingException"})
        == "ThrottlingException"
    )


# --- SigV4 ---------------------------------------------------------------------------------------


def reference_sigv4(request: HttpRequest, region: str, amz_date: str) -> str:
    """SigV4 computed from the AWS spec without botocore (the test's independent oracle)."""
    from urllib.parse import quote, urlsplit

    url = urlsplit(request.url)
    headers = {
        k.lower(): v.strip() for k, v in request.headers.items() if k.lower() != "authorization"
    }
    headers["host"] = url.netloc
    names = sorted(headers)
    canonical = "\n".join(
        [
            request.method,
            quote(url.path, safe="/~"),  # non-S3 services: the path is encoded a second time
            "",
            "".join(f"{n}:{headers[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(request.body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/bedrock/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{SECRET}".encode()
    for part in (amz_date[:8], region, "bedrock", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    credential = f"Credential={ACCESS}/{scope}"
    return f"AWS4-HMAC-SHA256 {credential}, SignedHeaders={';'.join(names)}, Signature={signature}"


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN)


async def test_sigv4_signature_matches_the_spec(frozen_time: None) -> None:
    adapter = BedrockAdapter(credentials=fixed_credentials)
    ep = east(region="us-west-2")
    request = adapter.build_embeddings(ep, "amazon.titan-embed-text-v2:0", ["Hello, world!"], {})
    signed = await adapter.authorize(ep, request)
    assert signed.headers["X-Amz-Date"] == "20250512T111155Z"
    assert signed.headers["X-Amz-Security-Token"] == TOKEN
    assert "/20250512/us-west-2/bedrock/aws4_request" in signed.headers["Authorization"]
    assert signed.headers["Authorization"] == reference_sigv4(
        signed, "us-west-2", "20250512T111155Z"
    )
    assert signed.body == request.body and signed.url == request.url


async def test_signature_changes_with_the_body(frozen_time: None) -> None:
    adapter = BedrockAdapter(credentials=fixed_credentials)
    ep = east()
    one = await adapter.authorize(
        ep, adapter.build_chat(ep, "m", {"messages": [{"role": "user", "content": "a"}]})
    )
    two = await adapter.authorize(
        ep, adapter.build_chat(ep, "m", {"messages": [{"role": "user", "content": "b"}]})
    )
    assert one.headers["Authorization"] != two.headers["Authorization"]
    assert "us-east-1/bedrock" in one.headers["Authorization"]


async def test_missing_credentials_is_an_authentication_error() -> None:
    adapter = BedrockAdapter(credentials=lambda profile: None)
    ep = east()
    with pytest.raises(AuthenticationError, match="AWS_ACCESS_KEY_ID"):
        await adapter.authorize(
            ep, adapter.build_chat(ep, "m", {"messages": [{"role": "user", "content": "x"}]})
        )


async def test_credentials_are_resolved_once_per_profile() -> None:
    calls: list[str | None] = []

    def source(profile: str | None) -> Credentials:
        calls.append(profile)
        return fixed_credentials(profile)

    adapter = BedrockAdapter(credentials=source)
    request = HttpRequest(
        "POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse", {}, b"{}"
    )
    for _ in range(3):
        await adapter.authorize(east(profile="work"), request)
    assert calls == ["work"]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real AWS config, no instance-metadata lookups."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return tmp_path / "credentials"


def test_default_credentials_come_from_the_environment(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "envtoken")
    found = default_credentials(None)
    assert found is not None
    frozen = found.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        "AKIAENV",
        "envsecret",
        "envtoken",
    )


def test_default_credentials_read_a_named_profile(aws_env: Path) -> None:
    aws_env.write_text("[work]\naws_access_key_id = AKIAFILE\naws_secret_access_key = filesecret\n")
    found = default_credentials("work")
    assert found is not None
    assert found.get_frozen_credentials().access_key == "AKIAFILE"
