"""The report's tables: the runs grouped into rows (a path against the target it is compared
with, at one setting, medians over the rounds), the results and cores tables, and every run raw."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from common import (
    API_PATHS,
    CONNECTIONS,
    GATEWAYS,
    MODE_LABEL,
    MODES,
    PATHS,
    ROUND_LABEL,
    SOLO,
    TARGET_LABEL,
    USERS,
    fmt,
    median,
)
from measure import Run


@dataclass
class Row:
    path: str  # "gateway" | "litellm" | "chain": the target measured (PATHS)
    mode: str
    connections: int
    users: int
    base: list[Run]  # the runs it is compared with: direct, or LiteLLM alone for the chain
    runs: list[Run]

    def med(self, runs: list[Run], attr: str) -> float:
        return median([float(getattr(r, attr)) for r in runs])

    def cpu(self, who: str) -> float:
        return median([r.cpu_ms_per_request(who) for r in self.runs])

    def cores(self, who: str) -> float:
        return median([r.cpu[who] / r.duration_s for r in self.runs])

    @property
    def has_gateway(self) -> bool:
        return self.path in GATEWAYS

    @property
    def has_litellm(self) -> bool:
        return self.path in ("litellm", "chain")

    @property
    def added_p50(self) -> float:
        return self.med(self.runs, "p50_ms") - self.med(self.base, "p50_ms")

    @property
    def added_p99(self) -> float:
        return self.med(self.runs, "p99_ms") - self.med(self.base, "p99_ms")


def build_rows(runs: list[Run]) -> list[Row]:
    """Per setting: the gateway against direct, then (when measured) LiteLLM against direct and
    the chain (gateway → LiteLLM) against LiteLLM; then the single-user gateway rows."""
    grouped: dict[tuple[str, str, int, int], list[Run]] = defaultdict(list)
    for run in runs:
        if run.round > 0 and run.api == "chat":  # the other shapes have a table of their own
            grouped[(run.target, run.mode, run.connections, run.users)].append(run)
    rows = []
    for mode in MODES:
        for connections in CONNECTIONS:
            for path, (_, base) in PATHS.items():
                measured = grouped[(path, mode, connections, USERS)]
                if measured or path == "gateway":
                    based = grouped[(base, mode, connections, USERS)]
                    rows.append(Row(path, mode, connections, USERS, based, measured))
        for solo_mode, connections in SOLO:
            if solo_mode == mode:
                direct = grouped[("direct", mode, connections, USERS)]
                solo = grouped[("gateway", mode, connections, 1)]
                rows.append(Row("gateway", mode, connections, 1, direct, solo))
    return rows


def find_row(rows: list[Row], path: str, mode: str, connections: int, users: int = USERS) -> Row:
    return next(
        r
        for r in rows
        if (r.path, r.mode, r.connections, r.users) == (path, mode, connections, users)
    )


def results_table(rows: list[Row]) -> str:
    head = (
        "| path | vs | mode | conns | users | vs req/s | req/s | vs p50 | p50 "
        "| **added p50** | vs p99 | p99 | **added p99** | gateway CPU/req "
        "| gateway waiting for a CPU /req | PostgreSQL CPU/req | LiteLLM CPU/req |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for row in rows:
        label, base = PATHS[row.path]
        nan = float("nan")
        lines.append(
            f"| {label} | {TARGET_LABEL[base]} | {MODE_LABEL[row.mode]} | {row.connections} "
            f"| {row.users} "
            f"| {fmt(row.med(row.base, 'rps'), 0)} | {fmt(row.med(row.runs, 'rps'), 0)} "
            f"| {fmt(row.med(row.base, 'p50_ms'))} | {fmt(row.med(row.runs, 'p50_ms'))} "
            f"| **{fmt(row.added_p50)}** "
            f"| {fmt(row.med(row.base, 'p99_ms'))} | {fmt(row.med(row.runs, 'p99_ms'))} "
            f"| **{fmt(row.added_p99)}** "
            f"| {fmt(row.cpu('gateway') if row.has_gateway else nan, 3)} "
            f"| {fmt(row.cpu('gateway_wait') if row.has_gateway else nan, 3)} "
            f"| {fmt(row.cpu('postgres') if row.has_gateway else nan, 3)} "
            f"| {fmt(row.cpu('litellm') if row.has_litellm else nan, 3)} |"
        )
    return head + "\n".join(lines)


def cores_table(rows: list[Row]) -> str:
    head = (
        "| path | mode | conns | users | gateway | LiteLLM | provider | PostgreSQL | Redis | wrk "
        "| total | other jobs on the machine |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for row in rows:
        who = ("gateway", "litellm", "provider", "postgres", "redis", "wrk")
        parts = [row.cores(w) for w in who]
        lines.append(
            f"| {PATHS[row.path][0]} | {MODE_LABEL[row.mode]} | {row.connections} | {row.users} | "
            + " | ".join(fmt(p) for p in parts)
            + f" | {fmt(sum(parts))} | {fmt(row.cores('other'))} |"
        )
    return head + "\n".join(lines)


def raw_table(runs: list[Run]) -> str:
    head = (
        "| round | target | mode | conns | users | req/s | p50 ms | p90 ms | p99 ms | non-2xx "
        "| socket errors | CPU ms/req (gateway / provider / PostgreSQL / LiteLLM) "
        "| other jobs (cores) | 2xx | usage rows |\n"
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n"
    )
    lines = []
    for r in runs:
        cpu = " / ".join(
            fmt(r.cpu_ms_per_request(w), 3) if w in r.cpu else "-"
            for w in ("gateway", "provider", "postgres", "litellm")
        )
        lines.append(
            f"| {ROUND_LABEL.get(r.round, r.round)}{' ' + r.note if r.note else ''} | {r.target} "
            f"| {MODE_LABEL[r.mode]}{'' if r.api == 'chat' else ' ' + API_PATHS[r.api]} | {r.connections} "
            f"| {r.users} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p90_ms:.3f} | {r.p99_ms:.3f} "
            f"| {r.non_2xx} | {r.socket_errors} | {cpu} | {r.cpu['other'] / r.duration_s:.2f} "
            f"| {r.ok if r.target in GATEWAYS else ''} "
            f"| {r.rows if r.rows is not None else ''} |"
        )
    return head + "\n".join(lines)
