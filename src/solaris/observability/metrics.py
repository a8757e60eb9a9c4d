"""The gateway's Prometheus metrics. No per-user label: per-user figures live in the database.

Model names come from clients, so they are bounded: the first `MODEL_LABELS_MAX` distinct names
get their own label value, the rest are counted as "other".

With several workers (`solaris serve --workers N`) prometheus-client's multiprocess mode is on:
each process writes its values to files in one directory (`share_between_processes`), and any
worker's /metrics adds up every process's files, so a scrape sees the whole gateway whichever
worker answers. Counters and histograms are summed over every process that ever ran (a
replaced worker's counts stay); the gauges over the live ones only (`livesum`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values

__all__ = ["Metrics", "forget_process", "provider_of", "share_between_processes"]

MULTIPROCESS_DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the library's own variable

MODEL_LABELS_MAX = 64
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
)  # fmt: skip
PROVIDER_PREFIXES = (
    ("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
    ("text-embedding", "openai"), ("chatgpt", "openai"), ("claude", "anthropic"),
    ("gemini", "google"), ("mistral", "mistral"), ("llama", "meta"), ("deepseek", "deepseek"),
)  # fmt: skip


def provider_of(model: str) -> str:
    """The provider a model name points at: LiteLLM's "provider/model" prefix, or its family."""
    if "/" in model:
        return model.split("/", 1)[0][:32]
    for prefix, provider in PROVIDER_PREFIXES:
        if model.startswith(prefix):
            return provider
    return "other"


def share_between_processes(directory: Path) -> None:
    """Metrics made after this, here and in processes forked from here, are kept in `directory`
    (fresh and empty: counts found there would be added)."""
    os.environ[MULTIPROCESS_DIRECTORY_ENV] = str(directory)
    # The library chooses how values are stored when it is first imported; it was, already.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def forget_process(pid: int) -> None:
    """A process that exited no longer counts in the `livesum` gauges."""
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # What /metrics shows: this process's registry, or every process's files.
        self.exposed = self.registry
        if os.environ.get(MULTIPROCESS_DIRECTORY_ENV):
            self.exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposed)  # type: ignore[no-untyped-call]
        r = self.registry
        self.requests = Counter(
            "solaris_requests", "Requests by route, model, HTTP status and outcome.",
            ["route", "model", "status", "outcome"], registry=r,
        )  # fmt: skip
        self.gateway_seconds = Histogram(
            "solaris_gateway_seconds", "Time the gateway itself spent on a request (not upstream).",
            ["route"], buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.upstream_first_byte_seconds = Histogram(
            "solaris_upstream_first_byte_seconds", "Upstream time to response headers.",
            ["route", "provider"], buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "solaris_upstream_seconds", "Upstream time to the end of the answer.",
            ["route", "provider"], buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "solaris_tokens",
            "Tokens by model and kind (prompt, completion, and the parts: cached, cache_write, "
            "reasoning).",
            ["model", "kind"], registry=r,
        )  # fmt: skip
        self.tool_billable = Counter(
            "solaris_tool_billable_tokens",
            "Billable tokens charged at a price per unit (hosted tool calls, images, speech, "
            "moderation), by model.",
            ["model"], registry=r,
        )  # fmt: skip
        self.billable = Counter(
            "solaris_billable_tokens", "Billable tokens charged, by model.", ["model"], registry=r
        )
        self.estimated = Counter(
            "solaris_estimated_requests", "Settled requests counted offline (no usage).",
            ["model"], registry=r,
        )  # fmt: skip
        self.reservations_open = Gauge(
            "solaris_reservations_open", "Reservations the gateway holds right now.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.upstream_errors = Counter(
            "solaris_upstream_errors", "Upstream failures by provider and kind.",
            ["provider", "kind"], registry=r,
        )  # fmt: skip
        self.store_errors = Counter(
            "solaris_store_errors", "Database and Redis errors.", ["store"], registry=r
        )
        self.journal_entries = Gauge(
            "solaris_journal_entries",
            "Settlements waiting in the local journals for the database (this gateway's).",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.journal_writes = Counter(
            "solaris_journal_writes", "Settlements written to the journal (database away).",
            registry=r,
        )  # fmt: skip
        self.journal_replayed = Counter(
            "solaris_journal_replayed", "Journaled settlements replayed into the database.",
            registry=r,
        )  # fmt: skip
        self.settlements_lost = Counter(
            "solaris_settlements_lost",
            "Settlements neither settled nor journaled (their answers were withheld).",
            registry=r,
        )
        self.identity_cache = Counter(
            "solaris_identity_cache_lookups", "Identity cache lookups by result (hit, miss).",
            ["result"], registry=r,
        )  # fmt: skip
        # Credit purchases: each order transition once (by the process that made it), and money
        # in the currency's minor unit (centavos), counted once when paid and once per refund.
        self.orders = Counter(
            "solaris_orders", "Orders reaching a status, by payment provider and status.",
            ["provider", "status"], registry=r,
        )  # fmt: skip
        self.revenue = Counter(
            "solaris_revenue_minor_units", "Money paid for orders, in the currency's minor unit.",
            ["provider", "currency"], registry=r,
        )  # fmt: skip
        self.refunded = Counter(
            "solaris_refunded_minor_units", "Money refunded, in the currency's minor unit.",
            ["provider", "currency"], registry=r,
        )  # fmt: skip
        self._models: set[str] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: label values here are bounded."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def model(self, name: str) -> str:
        if name in self._models:
            return name
        if len(self._models) < MODEL_LABELS_MAX:
            self._models.add(name)
            return name
        return "other"
