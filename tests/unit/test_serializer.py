from __future__ import annotations

import msgspec
import pytest

from shared.schema import Chunk, Request, Result, Usage
from shared.serializer import MAX_JOB_BYTES, MsgpackSerializer
from shared.store import decode_result, encode_result


def chunk() -> Chunk:
    req = Request("a", "chat", "openai", "gpt-4o-mini", {"messages": [{"role": "user", "content": "hi"}]})
    return Chunk("batch_1", "batch_1-000000", "openai", (req,))


def test_rq_job_tuple_round_trips_without_pickle() -> None:
    data = ("workers.task.run_chunk", None, [msgspec.msgpack.encode(chunk())], {})
    raw = MsgpackSerializer.dumps(data)
    assert not raw.startswith(b"\x80")  # pickle protocol marker
    func, instance, args, kwargs = MsgpackSerializer.loads(raw)
    assert (func, instance, kwargs) == ("workers.task.run_chunk", None, {})
    assert msgspec.msgpack.decode(args[0], type=Chunk) == chunk()


def test_loads_refuses_oversized_input() -> None:
    with pytest.raises(ValueError, match="refusing"):
        MsgpackSerializer.loads(b"\x00" * (MAX_JOB_BYTES + 1))


def test_loads_refuses_arbitrary_objects() -> None:
    import pickle

    with pytest.raises(msgspec.DecodeError):
        MsgpackSerializer.loads(pickle.dumps(object()))


def test_result_round_trip_keeps_every_field() -> None:
    result = Result("a", 200, "openai", "gpt", request_id="r", body={"x": 1}, usage=Usage(1, 2, 3))
    assert decode_result(encode_result(result)) == result
