"""AWS Bedrock Runtime: Converse for chat, InvokeModel for Titan and Cohere embeddings.

Host `https://bedrock-runtime.{region}.amazonaws.com` (option `region`, default us-east-1); model
ids go URL-encoded in the path. Auth is a Bedrock API key (`Endpoint.api_key`) as
`Authorization: Bearer`, set by `build_*`; otherwise the `authorize` hook signs the request with
SigV4 (service `bedrock`) using botocore's credential chain: environment
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`), then the shared credentials
file, then the rest of botocore's chain. Option `profile` picks a profile (as in botocore, an
explicit profile takes precedence over environment keys).

Errors carry their type in the `x-amzn-ErrorType` header and only `{"message"}` in the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote, urlsplit

import botocore.session
import msgspec
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shared.adapters._wire import bearer_json_headers, dump_json, header, join_url, load_json
from shared.adapters.base import Endpoint, HttpRequest, Parsed
from shared.adapters.openai import (
    ContentPart,
    chat_body,
    collect_text_blocks,
    embeddings_body,
    error_payload,
    max_tokens_of,
    reject_unsupported,
    split_system,
    stop_sequences,
    text_inputs,
    usage_of,
)
from shared.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    error_class_for_status,
)
from shared.schema import Usage

DEFAULT_REGION: Final = "us-east-1"
DEFAULT_BASE_URL: Final = "https://bedrock-runtime.{region}.amazonaws.com"
SIGNING_NAME: Final = "bedrock"
COHERE_MAX_TEXTS: Final = 96

FINISH_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
ERROR_TYPES: Final[dict[str, type[ProviderError]]] = {
    "ThrottlingException": RateLimitError,
    "ModelNotReadyException": RateLimitError,
    "TooManyRequestsException": RateLimitError,
    "ServiceQuotaExceededException": QuotaExceededError,
    "ValidationException": BadRequestError,
    "ConflictException": BadRequestError,
    "AccessDeniedException": PermissionDeniedError,
    "UnrecognizedClientException": AuthenticationError,
    "InvalidSignatureException": AuthenticationError,
    "ExpiredTokenException": AuthenticationError,
    "ResourceNotFoundException": NotFoundError,
    "ModelTimeoutException": ProviderTimeoutError,
    "ModelErrorException": ProviderError,
    "ModelStreamErrorException": ProviderError,
    "ServiceUnavailableException": ServerError,
    "InternalServerException": ServerError,
}
_IMAGE_FORMATS: Final = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

CredentialSource = Callable[[str | None], Credentials | None]
"""profile (None = botocore's default choice) → credentials, or None when there are none."""


def default_credentials(profile: str | None) -> Credentials | None:
    """botocore's credential chain (blocking: reads files, may query instance metadata)."""
    session = botocore.session.Session(profile=profile)
    found: Credentials | None = session.get_credentials()
    return found


class BedrockAdapter:
    name = "bedrock"
    max_embed_inputs = 1
    """Safe for every model (Titan takes one text per call); see `max_embed_inputs_for`."""

    def __init__(self, *, credentials: CredentialSource = default_credentials) -> None:
        self._credential_source = credentials
        self._credentials: dict[str | None, Credentials] = {}

    def max_embed_inputs_for(self, model: str) -> int:
        return COHERE_MAX_TEXTS if embed_family(model) == "cohere" else 1

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        return bearer_json_headers(endpoint.api_key)

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest:
        reject_unsupported(body, self.name)
        payload = converse_payload(body, self.name)
        url = model_url(endpoint, model, "converse")
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        message = (data.get("output") or {}).get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise ResponseFormatError("Converse answer has no `output.message`", provider=self.name)
        usage = converse_usage(data.get("usage"))
        request_id = header(headers, "x-amzn-requestid") or ""
        body = chat_body(
            id=request_id,
            model=model,
            content=collect_text_blocks(message.get("content")),
            finish_reason=finish_reason(data.get("stopReason")),
            usage=usage,
        )
        return Parsed(body, usage, model, request_id, data)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        texts = text_inputs(inputs, self.name)
        cap = self.max_embed_inputs_for(model)
        if len(texts) > cap:
            raise BadRequestError(
                f"Bedrock {model} embeds at most {cap} texts per call", provider=self.name
            )
        payload = invoke_embed_payload(model, texts, body, self.name)
        url = model_url(endpoint, model, "invoke")
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        if not isinstance(data, dict):
            raise ResponseFormatError("InvokeModel answer is not an object", provider=self.name)
        vectors = embedding_vectors(data, self.name)
        counted = data.get("inputTextTokenCount") or header(
            headers, "x-amzn-bedrock-input-token-count"
        )
        usage = usage_of(counted, 0)
        request_id = header(headers, "x-amzn-requestid") or str(data.get("id") or "")
        return Parsed(embeddings_body(vectors, model, usage), usage, model, request_id, data)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        payload = error_payload(content, self.name)
        code = error_type(headers, payload)
        message = _message(payload) or code or f"HTTP {status}"
        cls = ERROR_TYPES.get(code or "") or error_class_for_status(status)
        if cls is RateLimitError and "per day" in message.lower():
            cls = QuotaExceededError
        retryable = True if code == "ModelNotReadyException" else None
        return cls(message, provider=self.name, status=status, code=code, retryable=retryable)

    async def authorize(self, endpoint: Endpoint, request: HttpRequest) -> HttpRequest:
        """SigV4-sign the request, unless it already carries a Bedrock API key."""
        if endpoint.api_key:
            return request
        credentials = await self._frozen_credentials(endpoint.options.get("profile"))
        region = endpoint.options.get("region") or DEFAULT_REGION
        return sign(request, credentials, region)

    async def _frozen_credentials(self, profile: str | None) -> Credentials:
        if profile not in self._credentials:
            found = await asyncio.to_thread(self._credential_source, profile)
            if found is None:
                raise AuthenticationError(
                    "no AWS credentials for Bedrock: set AWS_ACCESS_KEY_ID and"
                    " AWS_SECRET_ACCESS_KEY, a ~/.aws/credentials profile, or a Bedrock API key",
                    provider=self.name,
                )
            self._credentials[profile] = found
        frozen = await asyncio.to_thread(self._credentials[profile].get_frozen_credentials)
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def sign(request: HttpRequest, credentials: Credentials, region: str) -> HttpRequest:
    """The request with SigV4 headers (`Authorization`, `X-Amz-Date`, security token) added."""
    aws = AWSRequest(method=request.method, url=request.url, headers=dict(request.headers))
    aws.data = request.body
    SigV4Auth(credentials, SIGNING_NAME, region).add_auth(aws)
    signed = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    signed.update({str(k): str(v) for k, v in aws.headers.items()})
    return msgspec.structs.replace(request, headers=signed)


# --- URLs ----------------------------------------------------------------------------------------


def runtime_base(endpoint: Endpoint) -> str:
    region = endpoint.options.get("region") or DEFAULT_REGION
    base = endpoint.base_url if urlsplit(endpoint.base_url).netloc else DEFAULT_BASE_URL
    return base.replace("{region}", region)


def model_url(endpoint: Endpoint, model: str, operation: str) -> str:
    """`{base}/model/{id}/{operation}`, the id URL-encoded (`:` → `%3A`, ARN `/` → `%2F`)."""
    return join_url(runtime_base(endpoint), f"model/{quote(model, safe='')}/{operation}")


# --- Converse ------------------------------------------------------------------------------------


def converse_payload(body: dict[str, Any], provider: str) -> dict[str, Any]:
    system, turns = split_system(body.get("messages"), provider)
    payload: dict[str, Any] = {"messages": converse_messages(turns, provider)}
    if system:
        payload["system"] = [{"text": system}]
    payload["inferenceConfig"] = inference_config(body)
    if body.get("top_k") is not None:
        payload["additionalModelRequestFields"] = {"top_k": body["top_k"]}
    return payload


def converse_messages(
    turns: list[tuple[str, list[ContentPart]]], provider: str
) -> list[dict[str, Any]]:
    """Turns as Converse messages; consecutive turns of one role are merged (roles alternate)."""
    messages: list[dict[str, Any]] = []
    for role, parts in turns:
        blocks = [converse_block(part, provider) for part in parts]
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def converse_block(part: ContentPart, provider: str) -> dict[str, Any]:
    if part.kind == "text":
        return {"text": part.text}
    image_format = _IMAGE_FORMATS.get(part.mime)
    if not part.data or image_format is None:
        raise BadRequestError(
            "Bedrock takes images as base64 data URLs of png, jpeg, gif or webp", provider=provider
        )
    return {"image": {"format": image_format, "source": {"bytes": part.data}}}


def inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if (max_tokens := max_tokens_of(body)) is not None:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    if stops := stop_sequences(body):
        config["stopSequences"] = stops
    return config


def finish_reason(value: Any) -> str | None:
    return None if value is None else FINISH_REASONS.get(str(value), "stop")


def converse_usage(raw: Any) -> Usage:
    """Input tokens including cache reads and writes, as OpenAI counts cached prompt tokens."""
    if not isinstance(raw, dict):
        return Usage()
    prompt = sum(
        int(raw.get(k) or 0)
        for k in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
    )
    return usage_of(prompt, raw.get("outputTokens"), raw.get("totalTokens"))


# --- InvokeModel embeddings ----------------------------------------------------------------------


def embed_family(model: str) -> str | None:
    """`titan` or `cohere` from a model id, ARN or inference-profile id (`us.cohere.embed-…`)."""
    name = model.rsplit("/", 1)[-1].lower()
    if "titan-embed" in name:
        return "titan"
    if "cohere.embed" in name:
        return "cohere"
    return None


def invoke_embed_payload(
    model: str, texts: list[str], body: dict[str, Any], provider: str
) -> dict[str, Any]:
    family = embed_family(model)
    if family == "titan":
        payload: dict[str, Any] = {"inputText": texts[0] if texts else ""}
        for key in ("dimensions", "normalize"):
            if body.get(key) is not None:
                payload[key] = body[key]
        return payload
    if family == "cohere":
        payload = {"texts": texts, "input_type": body.get("input_type") or "search_document"}
        if body.get("truncate"):
            payload["truncate"] = body["truncate"]
        return payload
    raise BadRequestError(
        f"Bedrock embeddings support amazon.titan-embed-* and cohere.embed-* models, not {model!r}",
        provider=provider,
    )


def embedding_vectors(data: dict[str, Any], provider: str) -> list[list[float]]:
    """Titan `embedding`; Cohere `embeddings` as a list or keyed by type (`{"float": [...]}`)."""
    if isinstance(data.get("embedding"), list):
        return [data["embedding"]]
    embeddings = data.get("embeddings")
    if isinstance(embeddings, dict):
        embeddings = embeddings.get("float")
    if isinstance(embeddings, list):
        return embeddings
    raise ResponseFormatError("InvokeModel answer holds no embeddings", provider=provider)


# --- errors --------------------------------------------------------------------------------------


def error_type(headers: dict[str, str], payload: Any) -> str | None:
    """botocore's rule: `x-amzn-ErrorType` first, then body `__type`/`code`/`Code`; keep the name
    between a `#` namespace and a `:` suffix."""
    raw = header(headers, "x-amzn-errortype")
    if not raw and isinstance(payload, dict):
        raw = payload.get("__type") or payload.get("code") or payload.get("Code")
    if not raw:
        return None
    return str(raw).split(":", 1)[0].rsplit("#", 1)[-1] or None


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("Message") or "")
    return str(payload or "")
