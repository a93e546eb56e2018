"""RQ's serializer for sluice: msgpack through msgspec. Nothing is ever pickled.

RQ hands `dumps` a `(func_name, instance, args, kwargs)` tuple and the job's return value; jobs
carry encoded `Chunk` bytes, so there is nothing here that could name code to run on load.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

MAX_JOB_BYTES: Final = 32 * 1024 * 1024
"""Refuse to decode anything larger (msgspec has no input-size limit of its own)."""

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder()


class MsgpackSerializer:
    """`dumps`/`loads` as RQ's `Serializer` protocol wants them."""

    @staticmethod
    def dumps(obj: Any, /) -> bytes:
        return _encoder.encode(obj)

    @staticmethod
    def loads(data: bytes, /) -> Any:
        if len(data) > MAX_JOB_BYTES:
            raise ValueError(f"refusing to decode {len(data)} bytes (limit {MAX_JOB_BYTES})")
        try:
            return _decoder.decode(data)
        except RecursionError:
            raise ValueError("refusing to decode: nested too deeply") from None
