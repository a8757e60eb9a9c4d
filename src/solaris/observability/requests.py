"""Each request's story, filled in as it flows through the proxy, then logged and measured once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from solaris.observability.metrics import Metrics, provider_of

__all__ = ["Counted", "Exchange", "RequestLog", "UpstreamWatch"]

log = structlog.get_logger("solaris.request")


class Counted(Protocol):
    """What a settled request consumed, as far as the log and the metrics care (the ledger's
    `UsageRecord` is one)."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def tool_billable(self) -> int: ...
    @property
    def billable(self) -> int: ...
    @property
    def estimated(self) -> bool: ...
    @property
    def status(self) -> str: ...


@dataclass(slots=True)
class Exchange:
    request_id: str
    route: str
    started: float
    model: str = ""
    user_id: int | None = None
    external_id: str | None = None  # the LibreChat user id, when LibreChat named the user
    status: int = 0
    # served | blocked | held | limited | rejected | upstream_error | unavailable | error
    outcome: str = ""
    upstream_sent: float | None = None
    upstream_first_byte: float | None = None
    upstream_done: float | None = None
    record: Counted | None = None
    error: str | None = None
    content: dict[str, Any] | None = None  # only with SOLARIS_LOG_CONTENT


# Told of every upstream call: (provider, failed, time to first byte), for the system alerts.
UpstreamWatch = Callable[[str, bool, float | None], None]


def _unwatched(_provider: str, _failed: bool, _latency_s: float | None) -> None:
    pass


class RequestLog:
    def __init__(self, metrics: Metrics, watch: UpstreamWatch = _unwatched) -> None:
        self.metrics = metrics
        self.watch = watch

    def finish(self, exchange: Exchange, ended: float) -> None:
        m = self.metrics
        model = m.model(exchange.model) if exchange.model else "none"
        total_s = ended - exchange.started
        upstream_s = 0.0
        if exchange.upstream_sent is not None:
            provider = provider_of(exchange.model)
            done = exchange.upstream_done or ended
            upstream_s = done - exchange.upstream_sent
            first_byte_s = None
            if exchange.upstream_first_byte is not None:
                first_byte_s = exchange.upstream_first_byte - exchange.upstream_sent
                m.child(m.upstream_first_byte_seconds, exchange.route, provider).observe(
                    first_byte_s
                )
            self.watch(provider, _upstream_failed(exchange), first_byte_s)
            m.child(m.upstream_seconds, exchange.route, provider).observe(upstream_s)
            if exchange.outcome == "upstream_error":
                m.upstream_errors.labels(provider, exchange.error or str(exchange.status)).inc()
        m.child(m.gateway_seconds, exchange.route).observe(max(0.0, total_s - upstream_s))
        m.child(m.requests, exchange.route, model, str(exchange.status), exchange.outcome).inc()
        record = exchange.record
        if record is not None:
            m.child(m.tokens, model, "prompt").inc(record.prompt_tokens)
            m.child(m.tokens, model, "completion").inc(record.completion_tokens)
            m.child(m.tokens, model, "cached").inc(record.cached_tokens)
            m.child(m.tokens, model, "reasoning").inc(record.reasoning_tokens)
            m.child(m.tokens, model, "cache_write").inc(record.cache_write_tokens)
            if record.tool_billable:
                m.child(m.tool_billable, model).inc(record.tool_billable)
            m.child(m.billable, model).inc(record.billable)
            if record.estimated:
                m.child(m.estimated, model).inc()
        log.info(
            "request",
            request_id=exchange.request_id,
            route=exchange.route,
            user_id=exchange.user_id,
            librechat_user=exchange.external_id,
            model=exchange.model or None,
            status=exchange.status,
            outcome=exchange.outcome,
            error=exchange.error,
            prompt_tokens=record.prompt_tokens if record else None,
            completion_tokens=record.completion_tokens if record else None,
            billable=record.billable if record else None,
            estimated=record.estimated if record else None,
            settle_status=record.status if record else None,
            gateway_ms=round((total_s - upstream_s) * 1000, 2),
            upstream_ms=round(upstream_s * 1000, 2) if exchange.upstream_sent else None,
            **({"content": exchange.content} if exchange.content is not None else {}),
        )


def _upstream_failed(exchange: Exchange) -> bool:
    """The provider's fault: no answer, a cut stream, a 5xx or its own rate limit. A 4xx is
    the request's fault and says nothing about the provider's health."""
    if exchange.outcome != "upstream_error":
        return False
    return exchange.status >= 500 or exchange.status in (0, 429) or exchange.error == "cut"
