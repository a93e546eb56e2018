"""Writing results as OpenAI batch output JSONL, one line per request, never two."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from shared.schema import Result
from shared.store import ResultStore

_encoder: Final = msgspec.json.Encoder()
LOOKUP_BATCH: Final = 1000


def output_line(batch_id: str, result: Result) -> dict[str, Any]:
    """`{"id", "custom_id", "response": {"status_code", "request_id", "body"} | null, "error"}`."""
    response = None
    if result.body is not None or result.status_code:
        response = {
            "status_code": result.status_code,
            "request_id": result.request_id,
            "body": result.body,
        }
    line: dict[str, Any] = {
        "id": f"{batch_id}_req_{result.custom_id}",
        "custom_id": result.custom_id,
        "response": response,
        "error": None if result.error is None else {"code": result.error.code, "message": result.error.message},
    }
    line["provider"] = result.provider
    line["model"] = result.model
    if result.raw is not None:
        line["provider_body"] = result.raw
    return line


def write_results(fh: IO[bytes], batch_id: str, results: Iterable[Result]) -> int:
    count = 0
    for result in results:
        fh.write(_encoder.encode(output_line(batch_id, result)))
        fh.write(b"\n")
        count += 1
    return count


def in_input_order(store: ResultStore, batch_id: str, custom_ids: Iterable[str]) -> Iterator[Result]:
    """Results in the order of the given ids (the input file's), fetched a thousand at a time."""
    from shared import keys
    from shared.store import decode_result

    key = keys.batch_key(batch_id, "results")
    block: list[str] = []
    for cid in custom_ids:
        block.append(cid)
        if len(block) >= LOOKUP_BATCH:
            yield from _fetch(store, key, block, decode_result)
            block = []
    if block:
        yield from _fetch(store, key, block, decode_result)


def _fetch(store: ResultStore, key: str, ids: list[str], decode: Any) -> Iterator[Result]:
    for raw in store.client.hmget(key, ids):
        if raw is not None:
            yield decode(raw)


def export(store: ResultStore, batch_id: str, out: Path | None, order: Iterable[str] | None = None) -> int:
    """Write a batch's results to `out` (stdout when None); in `order` when given."""
    import sys

    results = in_input_order(store, batch_id, order) if order is not None else store.results(batch_id)
    if out is None:
        return write_results(sys.stdout.buffer, batch_id, results)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as fh:
        count = write_results(fh, batch_id, results)
    tmp.replace(out)
    return count
