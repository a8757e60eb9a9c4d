"""Writes deploy/grafana/dashboards/solaris.json, the Grafana dashboard for the gateway's metrics.

Run `python scripts/grafana_dashboard.py` after changing a panel; a test checks that every
metric the dashboard queries is one the gateway exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).parents[1] / "deploy" / "grafana" / "dashboards" / "solaris.json"
RATE = "[$__rate_interval]"


def panel(title: str, unit: str, targets: list[tuple[str, str]], x: int, y: int) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def quantile(q: float, metric: str, by: str = "") -> str:
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{RATE})))"


PANELS = [
    ("Requests by outcome", "reqps", [
        (f"sum by (outcome) (rate(solaris_requests_total{RATE}))", "{{outcome}}"),
    ]),
    ("Latency: the gateway's own time vs the upstream's", "s", [
        (quantile(0.5, "solaris_gateway_seconds"), "gateway p50"),
        (quantile(0.99, "solaris_gateway_seconds"), "gateway p99"),
        (quantile(0.95, "solaris_upstream_first_byte_seconds"), "upstream first byte p95"),
        (quantile(0.95, "solaris_upstream_seconds"), "upstream total p95"),
    ]),
    ("Tokens per minute by model", "short", [
        (f"60 * sum by (model, kind) (rate(solaris_tokens_total{RATE}))", "{{model}} {{kind}}"),
    ]),
    ("Billable tokens per minute by model", "short", [
        (f"60 * sum by (model) (rate(solaris_billable_tokens_total{RATE}))", "{{model}}"),
    ]),
    ("Blocked and rate-limited requests", "reqps", [
        (f'sum(rate(solaris_requests_total{{outcome="blocked"}}{RATE}))', "blocked (no balance)"),
        (f'sum(rate(solaris_requests_total{{outcome="limited"}}{RATE}))', "rate-limited"),
    ]),
    ("Upstream error rate by provider", "percentunit", [
        (
            f"sum by (provider) (rate(solaris_upstream_errors_total{RATE}))"
            f" / sum by (provider) (rate(solaris_upstream_seconds_count{RATE}))",
            "{{provider}}",
        ),
    ]),
    ("Open reservations and store errors", "short", [
        ("sum(solaris_reservations_open)", "reservations open"),
        (f"sum by (store) (rate(solaris_store_errors_total{RATE}))", "{{store}} errors/s"),
        (f"sum(rate(solaris_estimated_requests_total{RATE}))", "estimated (no usage)/s"),
    ]),
    ("Identity cache hit ratio", "percentunit", [
        (
            f'sum(rate(solaris_identity_cache_lookups_total{{result="hit"}}{RATE}))'
            f" / sum(rate(solaris_identity_cache_lookups_total{RATE}))",
            "hit ratio",
        ),
    ]),
]  # fmt: skip


def dashboard() -> dict[str, Any]:
    return {
        "title": "SOLARIS Gateway",
        "uid": "solaris-gateway",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["solaris"],
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "panels": [
            panel(title, unit, targets, x=12 * (i % 2), y=8 * (i // 2))
            for i, (title, unit, targets) in enumerate(PANELS)
        ],
    }


if __name__ == "__main__":
    OUTPUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUTPUT}")
