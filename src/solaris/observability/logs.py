"""Structured logs: JSON lines (one per request, plus start-up and errors), or a readable
console format when run in a terminal. Prompt and completion text never appear unless
`SOLARIS_LOG_CONTENT` turns it on.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import orjson
import structlog

__all__ = ["configure_logging"]


def configure_logging(format_: Literal["auto", "json", "console"], level: str = "INFO") -> None:
    console = format_ == "console" or (format_ == "auto" and sys.stdout.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if console
        else structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
