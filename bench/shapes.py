"""Streamed /v1/responses and /v1/messages beside streamed chat: the API shapes LibreChat's
"Use Responses API" switch and its Anthropic endpoint send, each measured like chat (wrk with
bench/chat.lua's body for that shape, `BENCH_API`), gateway against direct, at 1 and 16
connections. A full run measures the two shapes in every round next to chat's streamed rows;
`run.py --shapes-only` measures just these rows, chat's included, and writes their own report.
"""

from __future__ import annotations

import datetime as dt
import textwrap

from common import API_PATHS, SHAPE_CONNECTIONS, SHAPES, USERS, Options, fmt, log
from measure import Bench, Run
from tables import Row

__all__ = [
    "measure_shapes",
    "shape_rounds",
    "shapes_report",
    "shapes_table",
    "shapes_text",
    "warm_shapes",
]

MODE = "stream"


async def warm_shapes(bench: Bench, apis: tuple[str, ...], seconds: float) -> None:
    for api in apis:
        for target in ("direct", "gateway"):
            await bench.wrk_run(target, MODE, 16, USERS, seconds, "warmup", api)


async def measure_shapes(
    bench: Bench, options: Options, apis: tuple[str, ...], rnd: int
) -> list[Run]:
    """One round of the shapes' settings, direct and gateway back to back, order alternating."""
    runs = []
    for i, (api, connections) in enumerate((a, c) for a in apis for c in SHAPE_CONNECTIONS):
        order = ("direct", "gateway") if (i + rnd) % 2 else ("gateway", "direct")
        for target in order:
            run = await bench.measure(target, MODE, connections, USERS, options.duration, rnd, api)
            runs.append(run)
    return runs


def shape_rows(runs: list[Run]) -> list[tuple[str, Row]]:
    """(api, gateway against direct) per API and connections, streamed, over the rounds."""
    rows = []
    for api in ("chat", *SHAPES):
        for connections in SHAPE_CONNECTIONS:

            def of(target: str, api: str = api, connections: int = connections) -> list[Run]:
                return [
                    r
                    for r in runs
                    if r.round > 0
                    and (r.api, r.target, r.mode, r.connections, r.users)
                    == (api, target, MODE, connections, USERS)
                ]

            if of("gateway"):
                row = Row("gateway", MODE, connections, USERS, of("direct"), of("gateway"))
                rows.append((api, row))
    return rows


def shapes_table(runs: list[Run]) -> str:
    head = (
        "| API | conns | users | direct req/s | gateway req/s | direct p50 | gateway p50 "
        "| **added p50** | direct p99 | gateway p99 | **added p99** | gateway CPU/req "
        "| PostgreSQL CPU/req |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| `{API_PATHS[api]}` | {row.connections} | {row.users} "
        f"| {fmt(row.med(row.base, 'rps'), 0)} | {fmt(row.med(row.runs, 'rps'), 0)} "
        f"| {fmt(row.med(row.base, 'p50_ms'))} | {fmt(row.med(row.runs, 'p50_ms'))} "
        f"| **{fmt(row.added_p50)}** "
        f"| {fmt(row.med(row.base, 'p99_ms'))} | {fmt(row.med(row.runs, 'p99_ms'))} "
        f"| **{fmt(row.added_p99)}** "
        f"| {fmt(row.cpu('gateway'), 3)} | {fmt(row.cpu('postgres'), 3)} |"
        for api, row in shape_rows(runs)
    ]
    return head + "\n".join(lines)


NOTE = (
    "Streamed only, 16 reply tokens from the dev provider on every shape. Each request is the "
    "same short question: chat as above; `/v1/responses` `{model: gpt-4o-mini, input, stream}` "
    "(its stream: `response.created`, the item and part events, 16 `response.output_text.delta`, "
    "the done events, `response.completed` with the usage); `/v1/messages` `{model: "
    "claude-sonnet-4-5, max_tokens: 64, messages, stream}` with `anthropic-version` "
    "(`message_start` with the input usage, 16 `content_block_delta`, `message_delta` with the "
    "output usage, `message_stop`). The gateway holds each stream's closing events until the "
    "request is settled (chat's `[DONE]`, Responses' `response.completed`, Anthropic's "
    "`message_delta` and `message_stop`), so the settlement is inside every latency here."
)


def shapes_text(runs: list[Run]) -> str:
    """The report's section body: the table and what it measured."""
    if not any(r.api != "chat" for r in runs):
        return "Not measured in this run."
    return shapes_table(runs) + "\n\n" + textwrap.fill(NOTE, 100, break_on_hyphens=False)


async def shape_rounds(bench: Bench, options: Options) -> list[Run]:
    """`--shapes-only`: the warm-up, then every round of chat's and the shapes' settings."""
    apis = ("chat", *SHAPES)
    log(f"warming up ({options.warmup:g} s per target and API)")
    await warm_shapes(bench, apis, options.warmup)
    await bench.settled()
    runs: list[Run] = []
    for rnd in range(1, options.rounds + 1):
        log(f"round {rnd}/{options.rounds}")
        runs += await measure_shapes(bench, options, apis, rnd)
    return runs


def shapes_report(
    runs: list[Run], options: Options, accounting: str, commands: list[str], raw: str
) -> str:
    """What `run.py --shapes-only` writes (bench/REPORT.shapes.md by default)."""
    date = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = "\n".join(commands)
    return (
        "# SOLARIS Gateway benchmark: streamed /v1/responses and /v1/messages beside chat\n\n"
        f"Written by `bench/run.py --shapes-only` on {date}: medians of {options.rounds} "
        f"round(s), every measurement {options.duration:g} s.\n\n"
        f"{shapes_text(runs)}\n\n### Commands\n\n```sh\n{body}\n```\n\n"
        f"## Accounting check\n\n{accounting}\n\n## Raw runs\n\n{raw}\n"
    )
