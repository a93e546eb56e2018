"""structlog set-up: JSON when not on a terminal, readable when on one; scrubbed last; no locals.

Tracebacks are rendered without local variables (a `headers` local would print a key), httpx's
request logger is kept at WARNING (it logs full URLs), and stdlib logging (RQ's) goes through the
same processors so RQ's own lines are scrubbed too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from shared.scrub import ScrubProcessor

QUIET_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "urllib3")


def _renderer(fmt: str, stream: TextIO) -> Any:
    if fmt == "json" or (fmt == "auto" and not stream.isatty()):
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(
        colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
    )


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging once per process (call at process start)."""
    stream = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        ScrubProcessor(),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared[:-1],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                ScrubProcessor(),
                _renderer(fmt, stream),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str | None = None, **context: Any) -> Any:
    return structlog.get_logger(name).bind(**context)
