"""Reading requests: OpenAI batch JSONL lines, plain prompt files, embedding corpora.

Every error names its line. Lines are read one at a time, so memory stays flat for any file size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from shared import registry
from shared.errors import InputError, UnknownProviderError
from shared.schema import ENDPOINT_KINDS, Request, Route

MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""A longer line is refused before it is parsed (msgspec has no size limit of its own)."""


class BatchLine(msgspec.Struct, forbid_unknown_fields=False):
    custom_id: str
    body: dict[str, Any]
    url: str = "/v1/chat/completions"
    method: str = "POST"


_line_decoder: Final = msgspec.json.Decoder(BatchLine)


def parse_batch_line(
    raw: bytes, line: int, *, provider: str | None = None, source: str = "input",
    fallbacks: tuple[Route, ...] = (),
) -> Request:
    """One OpenAI batch input line → a validated `Request` (InputError naming the line otherwise)."""
    if len(raw) > MAX_LINE_BYTES:
        raise InputError(f"line is longer than {MAX_LINE_BYTES} bytes", line=line, source=source)
    try:
        item = _line_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InputError(f"not a valid batch request line: {exc}", line=line, source=source) from None
    if item.method.upper() != "POST":
        raise InputError(f"method must be POST, not {item.method!r}", line=line, source=source)
    kind = ENDPOINT_KINDS.get(item.url)
    if kind is None:
        urls = ", ".join(sorted(ENDPOINT_KINDS))
        raise InputError(f"unsupported url {item.url!r} (expected one of {urls})", line=line, source=source)
    return make_request(item.custom_id, kind, item.body, provider, line=line, source=source,
                        fallbacks=fallbacks)


def make_request(
    custom_id: str,
    kind: str,
    body: dict[str, Any],
    provider: str | None,
    *,
    line: int | None = None,
    source: str = "input",
    fallbacks: tuple[Route, ...] = (),
) -> Request:
    if not custom_id:
        raise InputError("custom_id must not be empty", line=line, source=source)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InputError("body.model is required (e.g. openai/gpt-4o-mini)", line=line, source=source)
    try:
        spec, model_name = registry.resolve(model, provider)
    except UnknownProviderError as exc:
        raise UnknownProviderError(exc.name, exc.matches, line=line, source=source) from None
    except InputError as exc:
        raise InputError(str(exc), line=line, source=source) from None
    _check_body(kind, body, spec, line=line, source=source)
    return Request(
        custom_id=custom_id,
        kind=kind,  # type: ignore[arg-type]
        provider=spec.id,
        model=model_name,
        body={k: v for k, v in body.items() if k != "model"},
        fallbacks=fallbacks,
    )


def parse_routes(names: list[str] | tuple[str, ...]) -> tuple[Route, ...]:
    """`provider/model` names (e.g. `groq/llama-3.3-70b`) as fallback routes, in order."""
    routes = []
    for name in names:
        spec, model = registry.resolve(name)
        routes.append(Route(spec.id, model))
    return tuple(routes)


def _check_body(kind: str, body: dict[str, Any], spec: registry.ProviderSpec, **where: Any) -> None:
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InputError("body.messages must be a non-empty list", **where)
        if not spec.chat:
            raise InputError(f"provider {spec.id!r} does not offer chat", **where)
    else:
        value = body.get("input")
        if not isinstance(value, str | list) or not value:
            raise InputError("body.input must be a non-empty string or list", **where)
        if not spec.embeddings:
            raise InputError(f"provider {spec.id!r} does not offer embeddings", **where)


def read_batch(
    path: Path, *, provider: str | None = None, fallbacks: tuple[Route, ...] = ()
) -> Iterator[Request | InputError]:
    """Requests from an OpenAI batch JSONL file; blank lines are skipped. A bad line is yielded as
    its `InputError` (naming the line) so the caller decides whether to stop or skip it."""
    source = path.name
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                yield _attempt(parse_batch_line, raw, number, provider=provider, source=source,
                               fallbacks=fallbacks)


def _attempt(parse: Callable[..., Request], *args: Any, **kwargs: Any) -> Request | InputError:
    try:
        return parse(*args, **kwargs)
    except InputError as exc:
        return exc


def read_prompts(
    path: Path, *, model: str, provider: str | None = None, kind: str = "chat",
    fallbacks: tuple[Route, ...] = (),
) -> Iterator[Request | InputError]:
    """One request per non-empty line of a plain text file; `custom_id` is `line-<n>`."""
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            text = text.rstrip("\n")
            if not text.strip():
                continue
            body: dict[str, Any]
            if kind == "chat":
                body = {"model": model, "messages": [{"role": "user", "content": text}]}
            else:
                body = {"model": model, "input": text}
            yield _attempt(
                make_request, f"line-{number}", kind, body, provider, line=number, source=path.name,
                fallbacks=fallbacks,
            )


def looks_like_jsonl(path: Path) -> bool:
    """True when the first non-blank line is a JSON object (else: a plain prompt file)."""
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                return raw.lstrip().startswith(b"{")
    return False
