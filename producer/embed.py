"""`sluice embed`: a text corpus, one input per line, to a vectors JSONL file in input order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final

import msgspec

from producer import jsonl
from producer.client import Client
from shared.schema import Request

_encoder: Final = msgspec.json.Encoder()


Group = list[tuple[int, str]]


def corpus_groups(path: Path, batch_size: int) -> Iterator[Group]:
    """Groups of `batch_size` non-empty lines as (1-based line number, text)."""
    group: Group = []
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            text = text.rstrip("\n")
            if text.strip():
                group.append((number, text))
            if len(group) >= batch_size:
                yield group
                group = []
    if group:
        yield group


def group_request(group: Group, model: str, provider: str | None) -> Request:
    """One embeddings request per group; custom_id `lines-<first>-<last>`."""
    custom_id = f"lines-{group[0][0]}-{group[-1][0]}"
    body = {"model": model, "input": [text for _, text in group]}
    return jsonl.make_request(custom_id, "embeddings", body, provider)


def embed_corpus(
    client: Client,
    corpus: Path,
    output: Path,
    *,
    model: str,
    provider: str | None,
    batch_size: int,
    pool: Callable[[tuple[str, ...]], AbstractContextManager[Any]],
    progress: Callable[[Any], Callable[[Any], None]],
) -> int:
    def source() -> Iterator[Request]:
        for group in corpus_groups(corpus, batch_size):
            yield group_request(group, model, provider)

    batch_id, _ = client.submitter.submit(source, input_file=str(corpus),
                                          check=client._checker("local"))
    state = client.status(batch_id)
    with pool(state.providers):
        client.wait(batch_id, progress=progress(state))
    return _write_vectors(client, batch_id, corpus_groups(corpus, batch_size), output)


def _write_vectors(client: Client, batch_id: str, groups: Iterator[Group], output: Path) -> int:
    written = 0
    tmp = output.with_name(output.name + ".part")
    with open(tmp, "wb") as fh:
        for group in groups:
            for line in _vector_lines(client, batch_id, group):
                fh.write(_encoder.encode(line) + b"\n")
                written += 1
    tmp.replace(output)
    return written


def _vector_lines(client: Client, batch_id: str, group: Group) -> Iterator[dict[str, Any]]:
    lines = [number for number, _ in group]
    result = client.store.get(batch_id, f"lines-{lines[0]}-{lines[-1]}")
    if result is None or result.body is None or result.error is not None:
        error = result.error.message if result is not None and result.error else "no result"
        for number in lines:
            yield {"line": number, "embedding": None, "error": error}
        return
    for number, item in zip(lines, result.body["data"], strict=False):
        yield {"line": number, "embedding": item["embedding"]}
