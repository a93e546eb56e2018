"""The adapter seam: sans-I/O builders and parsers, one per wire protocol.

An adapter turns an OpenAI-shaped request body into the provider's HTTP request and the provider's
response bytes back into an OpenAI-shaped body. No socket, clock or Redis inside `build_*`/`parse_*`;
tests feed them the recorded bytes in `../shared/protocols/samples/`. Credentials that need I/O
(Bedrock signing, Vertex tokens) are applied by the optional async `authorize` hook at send time.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from shared.errors import ProviderError
from shared.schema import Usage


class HttpRequest(msgspec.Struct, frozen=True):
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""


class Endpoint(msgspec.Struct, frozen=True):
    """Where and how to reach one provider, resolved inside the worker. Holds the secret: never
    serialise it, never log it (its repr hides the key)."""

    provider: str
    base_url: str
    api_key: str | None = None
    options: dict[str, str] = {}

    def __repr__(self) -> str:
        key = "set" if self.api_key else "none"
        return f"Endpoint(provider={self.provider!r}, base_url={self.base_url!r}, api_key=<{key}>)"

    __str__ = __repr__

    def __rich_repr__(self) -> Any:
        yield "provider", self.provider
        yield "base_url", self.base_url
        yield "api_key", "<set>" if self.api_key else "<none>"


class Parsed(msgspec.Struct, frozen=True):
    """A provider answer in OpenAI shape: `body` is a `chat.completion` or an embeddings `list`."""

    body: dict[str, Any]
    usage: Usage
    model: str
    request_id: str = ""
    raw: Any = None


@runtime_checkable
class Adapter(Protocol):
    """One wire protocol. `max_embed_inputs` is the provider's per-call input cap (0 = none)."""

    name: str
    max_embed_inputs: int

    def build_chat(self, endpoint: Endpoint, model: str, body: dict[str, Any]) -> HttpRequest: ...

    def parse_chat(self, headers: dict[str, str], content: bytes, model: str) -> Parsed: ...

    def build_embeddings(
        self, endpoint: Endpoint, model: str, inputs: list[Any], body: dict[str, Any]
    ) -> HttpRequest: ...

    def parse_embeddings(self, headers: dict[str, str], content: bytes, model: str) -> Parsed: ...

    def parse_error(self, status: int, headers: dict[str, str], content: bytes) -> ProviderError: ...
