from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer import jsonl
from producer.submit import validate
from shared.errors import InputError, UnknownProviderError


def line(custom_id: str = "a", model: str = "openai/gpt-4o-mini", url: str = "/v1/chat/completions") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if "embeddings" in url:
        body = {"model": model, "input": ["x", "y"]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def test_batch_line_resolves_provider_and_strips_prefix() -> None:
    request = jsonl.parse_batch_line(line(model="vllm/meta-llama/Llama-3.1-8B").encode(), 1)
    assert (request.provider, request.model, request.kind) == ("vllm", "meta-llama/Llama-3.1-8B", "chat")
    assert "model" not in request.body


def test_embeddings_line() -> None:
    request = jsonl.parse_batch_line(line(url="/v1/embeddings").encode(), 1)
    assert request.kind == "embeddings"
    assert request.body["input"] == ["x", "y"]


def test_malformed_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(line("a") + "\n" + line("b") + "\n{not json\n")
    items = list(jsonl.read_batch(path))
    error = items[2]
    assert isinstance(error, InputError)
    assert error.line == 3
    assert str(error).startswith("in.jsonl:3: ")
    with pytest.raises(InputError, match=r"in\.jsonl:3"):
        validate(lambda: jsonl.read_batch(path))


def test_unknown_provider_lists_close_matches() -> None:
    with pytest.raises(UnknownProviderError) as info:
        jsonl.parse_batch_line(line(model="opnai/gpt-4o").encode(), 5)
    assert "openai" in info.value.matches
    assert info.value.line == 5
    assert "Did you mean: openai" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}}', "method"),
        ('{"custom_id": "a", "url": "/v1/responses", "body": {"model": "openai/x"}}', "unsupported url"),
        ('{"custom_id": "a", "body": {"messages": []}}', "body.model"),
        ('{"custom_id": "a", "body": {"model": "openai/x", "messages": []}}', "messages"),
        ('{"body": {"model": "openai/x"}}', "custom_id"),
    ],
)
def test_invalid_lines_explain_themselves(raw: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        jsonl.parse_batch_line(raw.encode(), 2)


def test_prompt_file_makes_one_request_per_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("first\n\nthird\n")
    requests = [r for r in jsonl.read_prompts(path, model="openai/gpt-4o-mini") if not isinstance(r, InputError)]
    assert [r.custom_id for r in requests] == ["line-1", "line-3"]
    assert requests[1].body["messages"] == [{"role": "user", "content": "third"}]
    assert not jsonl.looks_like_jsonl(path)


def test_validate_refuses_duplicate_custom_ids_unless_partial() -> None:
    requests = [jsonl.parse_batch_line(line(cid).encode(), i) for i, cid in enumerate("aba", 1)]
    with pytest.raises(InputError, match="duplicate custom_id 'a'"):
        validate(lambda: requests)
    report = validate(lambda: requests, partial=True)
    assert report.total == 2
    assert len(report.errors) == 1


def test_validate_partial_skips_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(line("a") + "\n{bad\n" + line("c") + "\n")
    report = validate(lambda: jsonl.read_batch(path), partial=True)
    assert report.total == 2
    assert report.skipped_lines == {2}
    assert report.providers == {"openai"}
