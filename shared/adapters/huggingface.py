"""Hugging Face: chat through the router's OpenAI-compatible `/v1/chat/completions`; embeddings
through the HF Inference provider's feature-extraction pipeline.

The base URL is the router's `https://router.huggingface.co/v1`; the embeddings URL is built from
its host: `POST {host}/hf-inference/models/{model}/pipeline/feature-extraction` with
`{"inputs": [...]}`, answered by one vector per input. Errors are TGI-style
`{"error": str, "error_type": str}`; a loading model's 503 may say `estimated_time` (seconds).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from shared.adapters._wire import dump_json, header, load_json
from shared.adapters.base import Endpoint, HttpRequest, Parsed
from shared.adapters.openai import OpenAIAdapter, embeddings_body, error_payload, text_inputs
from shared.errors import ProviderError, ResponseFormatError
from shared.schema import Usage

_FEATURE_KEYS = ("normalize", "prompt_name", "truncate", "truncation_direction")


class HuggingFaceAdapter(OpenAIAdapter):
    name = "huggingface"
    max_embed_inputs = 0
    """The feature-extraction pipeline documents no per-call cap."""

    def __init__(self) -> None:
        super().__init__(max_embed_inputs=0)

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest:
        payload: dict[str, Any] = {"inputs": text_inputs(inputs, self.name)}
        payload.update({k: body[k] for k in _FEATURE_KEYS if body.get(k) is not None})
        url = feature_extraction_url(endpoint.base_url, model)
        return HttpRequest("POST", url, self.headers(endpoint), dump_json(payload))

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed:
        data = load_json(content, provider=self.name)
        vectors = sentence_vectors(data, self.name)
        body = embeddings_body(vectors, model, Usage())
        return Parsed(body, Usage(), model, header(headers, "x-request-id") or "", data)

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        error = super().parse_error(status, headers, content)
        payload = error_payload(content, self.name)
        estimate = payload.get("estimated_time") if isinstance(payload, dict) else None
        if error.retryable and isinstance(estimate, int | float) and estimate > 0:
            error.retry_after = float(estimate)
        return error


def feature_extraction_url(base_url: str, model: str) -> str:
    """`{scheme}://{host}/hf-inference/models/{model}/pipeline/feature-extraction`."""
    parts = urlsplit(base_url)
    host = f"{parts.scheme or 'https'}://{parts.netloc or 'router.huggingface.co'}"
    return f"{host}/hf-inference/models/{quote(model, safe='/')}/pipeline/feature-extraction"


def sentence_vectors(data: Any, provider: str) -> list[list[float]]:
    """One vector per input. A single flat vector is one input; token-level features (a 3-D
    array) mean the model is not a sentence-embedding model and are refused."""
    if isinstance(data, list) and data and all(isinstance(x, int | float) for x in data):
        return [data]
    if isinstance(data, list) and all(_is_vector(row) for row in data):
        return data
    raise ResponseFormatError(
        "feature-extraction answer is not one vector per input (token-level features?); "
        "use a sentence-embedding model",
        provider=provider,
    )


def _is_vector(row: Any) -> bool:
    return isinstance(row, list) and all(isinstance(x, int | float) for x in row)
