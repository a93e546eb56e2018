from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from shared.log import configure_logging
from shared.scrub import REDACTED, Scrubber, default_scrubber

CANARY = "sk-canary-3c1f0b9e7d2a4f6b8e1d5c7a9b0f2e4d"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {CANARY}",
        f"Incorrect API key provided: {CANARY[:8]}***************{CANARY[-4:]}",
        "https://generativelanguage.googleapis.com/v1beta/models/x?key=AIzaSyA1234567890abcdefghijklmnopqrstu",
        "sk-ant-api03-" + "a" * 93 + "AA",
        "sk-ant-oat01-abcdefghijklmnopqrstuvwxyz012345",
        "hf_" + "a" * 34,
        "gsk_" + "b" * 52,
        "AKIAIOSFODNN7EXAMPLE",
        "ya29.a0AfH6SMBx-abcdefghijklmnop",
        "grant_type=x&assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl",
        "sk-or-v1-" + "0123456789abcdef" * 4,
    ],
)
def test_key_shapes_and_known_values_are_redacted(text: str) -> None:
    scrubber = Scrubber([CANARY])
    out = scrubber(text)
    assert REDACTED in out
    for secret_part in (CANARY, CANARY[:12], "AIzaSyA1234567890", "a" * 30, "b" * 30, "IOSFODNN7"):
        assert secret_part not in out


def test_short_known_secret_is_redacted_exactly() -> None:
    scrubber = Scrubber(["tiny-key-9"])
    assert scrubber("Incorrect API key provided: tiny-key-9") == f"Incorrect API key provided: {REDACTED}"


def test_plain_text_is_left_alone() -> None:
    scrubber = Scrubber([CANARY])
    text = "model gpt-4o-mini answered in 120ms with 12 tokens"
    assert scrubber(text) == text


def test_value_scrubs_nested_structures_and_secret_headers() -> None:
    scrubber = Scrubber([CANARY])
    value = {"headers": {"x-api-key": "anything", "accept": "json"}, "errors": [f"bad {CANARY}"]}
    out = scrubber.value(value)
    assert out == {"headers": {"x-api-key": REDACTED, "accept": "json"}, "errors": [f"bad {REDACTED}"]}


def test_logs_are_scrubbed_and_tracebacks_carry_no_locals() -> None:
    default_scrubber().add([CANARY])
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    log = structlog.get_logger("test")
    log.info("provider_retry", note=f"key {CANARY}")
    logging.getLogger("rq.worker").warning("stdlib says %s", CANARY)
    try:
        headers = {"Authorization": f"Bearer {CANARY}"}
        raise ValueError(f"boom {len(headers)}")
    except ValueError:
        log.exception("call_failed")
    text = stream.getvalue()
    assert CANARY not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["event"] for line in lines][:1] == ["provider_retry"]
    assert any("ValueError: boom 1" in line.get("exception", "") for line in lines)
    structlog.reset_defaults()
