"""Chart descriptions for /static/solaris.js: plain dicts (type, labels, series) that the page
embeds as JSON; the script adds colours and Chart.js options. No JavaScript is generated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["bar", "doughnut", "line"]


def _chart(
    kind: str, title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]
) -> dict[str, Any]:
    assert all(len(values) == len(labels) for _name, values in series), "one value per label"
    return {
        "type": kind,
        "title": title,
        "data": {
            "labels": list(labels),
            "datasets": [{"label": name, "data": list(values)} for name, values in series],
        },
    }


def bar(title: str, labels: Sequence[str], name: str, values: Sequence[int]) -> dict[str, Any]:
    return _chart("bar", title, labels, [(name, values)])


def line(title: str, labels: Sequence[str], name: str, values: Sequence[int]) -> dict[str, Any]:
    return _chart("line", title, labels, [(name, values)])


def doughnut(title: str, labels: Sequence[str], values: Sequence[int]) -> dict[str, Any]:
    return _chart("doughnut", title, labels, [(title, values)])
