"""Structured logs: JSON lines (one per request, plus start-up and errors), or a readable
console format when run in a terminal. Prompt and completion text never appear unless
`SOLARIS_LOG_CONTENT` turns it on.

Every line the process writes is one object in that format, not only the gateway's own:
dependencies log through the standard library (asyncpg's "Failed to restore the pool connection
floor" during a database outage, uvicorn's "Exception in ASGI application", asyncio's "Task
exception was never retrieved"), and warnings, uncaught exceptions and unraisable ones are routed
there too. One handler on the root logger renders them with structlog's own processors
(`ProcessorFormatter`), a traceback as the `exception` field of the JSON object, and writes
through structlog's printer, whose lock keeps lines from different threads whole. Run uvicorn
with `log_config=None` so that it keeps this set-up instead of installing its own handlers.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any, Literal

import orjson
import structlog

__all__ = ["configure_logging"]

DEPENDENCIES_LEVEL = logging.WARNING  # their INFO lines (alembic's, aiohttp's) are noise here

log = structlog.get_logger("solaris")


def configure_logging(format_: Literal["auto", "json", "console"], level: str = "INFO") -> None:
    console = format_ == "console" or (format_ == "auto" and sys.stdout.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if console
        else structlog.processors.JSONRenderer(serializer=_json)
    )
    # The console renderer lays tracebacks out itself; in JSON a traceback is one string field.
    exceptions: list[structlog.typing.Processor] = (
        [] if console else [structlog.processors.format_exc_info]
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, *exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exceptions,
            renderer,
        ],
    )
    handler = _PrinterHandler(structlog.PrintLogger(sys.stdout))
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(DEPENDENCIES_LEVEL)
    logging.captureWarnings(True)
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread
    sys.unraisablehook = _unraisable


class _PrinterHandler(logging.Handler):
    """Writes records through structlog's printer: one lock per file for both kinds of line."""

    def __init__(self, printer: structlog.PrintLogger) -> None:
        super().__init__()
        self.printer = printer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.printer.msg(self.format(record))
        except Exception:
            self.handleError(record)


def _json(value: Any, **_: Any) -> str:
    # default=str: a foreign record may carry anything (an exception, a path) as a field.
    return orjson.dumps(value, default=str).decode()


def _uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    log.critical("uncaught_exception", exc_info=(kind, error, traceback))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    thread = args.thread.name if args.thread is not None else None
    log.error(
        "uncaught_exception_in_thread",
        thread=thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    error = unraisable.exc_value
    log.warning(
        "unraisable_exception",
        message=unraisable.err_msg or "Exception ignored",
        object=repr(unraisable.object),
        exc_info=(type(error), error, unraisable.exc_traceback) if error else None,
    )
