"""The report's analysis: what the numbers say, in sentences, next to the targets and to what
PERFORMANCE.md measured for other proxies. Every number in it comes from the tables above it."""

from __future__ import annotations

import os

from accounting import Accounting
from common import (
    LITELLM_ADDED_JSON_MS,
    LITELLM_ADDED_STREAM_MS,
    LITELLM_CONNECTIONS,
    LITELLM_RPS,
    MODES,
    NAIVE_METERING_ADDED_MS,
    NAIVE_METERING_CPU_MS,
    NAIVE_METERING_RPS,
    TARGET_ADDED_P50_MS,
    TARGET_RPS,
    USERS,
    median,
)
from diagnostic import diagnostic_summary
from ledger_paths import PathCost
from measure import Run
from profiling import Profile
from tables import Row, find_row

Through = dict[tuple[str, str, int], Row]  # (path, mode, connections) -> the LiteLLM rows


def analysis_text(
    rows: list[Row],
    acc: Accounting,
    work: dict[str, float],
    prof: Profile | None,
    paths: list[PathCost],
    diagnostic: list[Run],
    litellm_skipped: str = "",
) -> str:
    """The analysis bullets, in the report's order; a bullet without its data is left out."""

    def find(mode: str, connections: int, users: int = USERS) -> Row:
        return find_row(rows, "gateway", mode, connections, users)

    nproc = os.cpu_count() or 2
    j1, s1 = find("json", 1), find("stream", 1)
    j16, j64 = find("json", 16), find("json", 64)
    s16, s64 = find("stream", 16), find("stream", 64)
    best = max((j16, j64), key=lambda r: r.med(r.runs, "rps"))
    found = {(r.path, r.mode, r.connections): r for r in rows if r.has_litellm and r.users == USERS}
    wanted = [(p, m, c) for p in ("litellm", "chain") for m in MODES for c in LITELLM_CONNECTIONS]
    measured = all(k in found and found[k].runs and found[k].base for k in wanted)
    through = found if measured else None  # None: the comparisons come from PERFORMANCE.md
    by_key = {p.key: p for p in paths}
    bullets = [
        idle_latency(j1, s1, through),
        throughput(best, s16, s64, j16, through),
        full_chain(through, j1, s1, nproc, litellm_skipped),
        cpu_per_request(best, j1, nproc),
        queueing(j16, j64),
        single_user(j16, j64, find("json", 16, 1), find("json", 64, 1)),
        database_work(work, "functions" in by_key),
        ledger_alone(by_key, j1.cpu("gateway")),
        durable_commits(diagnostic_summary(diagnostic)),
        profile_summary(prof),
        accounting(acc),
        noise(rows, nproc),
    ]
    return "\n".join(f"- {b}" for b in bullets if b)


def idle_latency(j1: Row, s1: Row, through: Through | None) -> str:
    return (
        f"**Added latency, idle gateway (1 connection):** {j1.added_p50:.2f} ms at p50 "
        f"non-streamed ({j1.added_p99:.2f} ms at p99) and {s1.added_p50:.2f} ms streamed. "
        f"Target < {TARGET_ADDED_P50_MS:g} ms non-streamed: "
        + ("**met**." if j1.added_p50 < TARGET_ADDED_P50_MS else "**not met**.")
        + f" Per request at 1 connection the gateway ran {j1.cpu('gateway'):.2f} ms on a CPU and "
        f"waited {j1.cpu('gateway_wait'):.2f} ms for one (other jobs used "
        f"{j1.cores('other'):.2f} cores meanwhile); the rest is waiting on PostgreSQL (two "
        "commits, each a WAL flush) and the provider."
        + (
            f" For comparison: LiteLLM alone adds {through['litellm', 'json', 1].added_p50:.2f} ms "
            f"non-streamed / {through['litellm', 'stream', 1].added_p50:.2f} ms streamed here "
            f"(PERFORMANCE.md: {LITELLM_ADDED_JSON_MS:g} / {LITELLM_ADDED_STREAM_MS:g} ms), the "
            f"naive metering proxy of PERFORMANCE.md {NAIVE_METERING_ADDED_MS:g} ms."
            if through is not None
            else f" For comparison (PERFORMANCE.md): LiteLLM adds {LITELLM_ADDED_JSON_MS:g} ms "
            f"non-streamed / {LITELLM_ADDED_STREAM_MS:g} ms streamed, the naive metering proxy "
            f"{NAIVE_METERING_ADDED_MS:g} ms."
        )
    )


def throughput(best: Row, s16: Row, s64: Row, j16: Row, through: Through | None) -> str:
    best_json = best.med(best.runs, "rps")
    best_stream = max(s16.med(s16.runs, "rps"), s64.med(s64.runs, "rps"))
    litellm16 = through["litellm", "json", 16] if through is not None else None
    return (
        f"**Throughput with accounting on:** {best_json:,.0f} req/s non-streamed and "
        f"{best_stream:,.0f} req/s streamed (best of 16/64 connections, one gateway worker). "
        f"Target > {TARGET_RPS:,.0f} req/s: "
        + ("**met**." if best_json >= TARGET_RPS else "**not met**.")
        + " For comparison: LiteLLM tops out near "
        + (
            f"{litellm16.med(litellm16.runs, 'rps'):,.0f}"
            " req/s with one worker here (16 connections; PERFORMANCE.md: "
            f"{LITELLM_RPS:g})"
            if litellm16 is not None
            else f"{LITELLM_RPS:g} req/s per worker (PERFORMANCE.md)"
        )
        + f", the naive metering proxy in PERFORMANCE.md at ~{NAIVE_METERING_RPS:g} req/s, and "
        f"the provider alone answers {j16.med(j16.base, 'rps'):,.0f} req/s here."
    )


def full_chain(through: Through | None, j1: Row, s1: Row, nproc: int, skipped: str) -> str:
    if through is None:
        return (
            "**The full chain (gateway → LiteLLM → provider):** not measured in this run ("
            + (skipped or "no LiteLLM runs")
            + "), so the LiteLLM numbers above come from PERFORMANCE.md."
        )
    l1, ls1 = through["litellm", "json", 1], through["litellm", "stream", 1]
    c1, cs1 = through["chain", "json", 1], through["chain", "stream", 1]
    l16, ls16 = through["litellm", "json", 16], through["litellm", "stream", 16]
    c16, cs16 = through["chain", "json", 16], through["chain", "stream", 16]
    chain_added = l1.added_p50 + c1.added_p50
    share = c1.added_p50 / chain_added if chain_added > 0 else float("nan")
    l_rps, ls_rps, c_rps, cs_rps = (r.med(r.runs, "rps") for r in (l16, ls16, c16, cs16))
    return (
        "**The full chain (gateway → LiteLLM → provider), measured in this run:** at 1 "
        f"connection, p50, LiteLLM alone added {l1.added_p50:.2f} ms non-streamed and "
        f"{ls1.added_p50:.2f} ms streamed over calling the provider directly, and the gateway "
        f"in front of LiteLLM added {c1.added_p50:.2f} ms non-streamed and "
        f"{cs1.added_p50:.2f} ms streamed on top of that (in front of the provider directly "
        f"it adds {j1.added_p50:.2f} / {s1.added_p50:.2f} ms): of the {chain_added:.2f} ms "
        f"the chain adds to a non-streamed request, {share:.0%} is the gateway's. At 16 "
        f"connections LiteLLM alone served {l_rps:,.0f} req/s non-streamed and "
        f"{ls_rps:,.0f} streamed, the chain {c_rps:,.0f} and {cs_rps:,.0f} "
        f"({c_rps / l_rps if l_rps else float('nan'):.0%} and "
        f"{cs_rps / ls_rps if ls_rps else float('nan'):.0%} of LiteLLM's): per "
        f"non-streamed request LiteLLM used {l16.cpu('litellm'):.2f} ms of CPU and the "
        f"chain's gateway {c16.cpu('gateway'):.2f} ms, on the same {nproc} cores."
    )


def cpu_per_request(best: Row, j1: Row, nproc: int) -> str:
    gw_cpu, pg_cpu, gw_cpu_1 = best.cpu("gateway"), best.cpu("postgres"), j1.cpu("gateway")
    cores = {w: best.cores(w) for w in ("gateway", "provider", "postgres", "redis", "wrk", "other")}
    return (
        f"**CPU per request:** at {best.connections} connections the gateway process used "
        f"{gw_cpu:.2f} ms of CPU per non-streamed request ({gw_cpu_1:.2f} ms at 1 connection, "
        f"where nothing is batched) and PostgreSQL {pg_cpu:.2f} ms; PERFORMANCE.md's naive "
        f"metering proxy used {NAIVE_METERING_CPU_MS:g} ms + ~1 ms. During those runs the "
        f"gateway used {cores['gateway']:.2f} cores, PostgreSQL {cores['postgres']:.2f}, the "
        f"provider {cores['provider']:.2f}, wrk {cores['wrk']:.2f} and other jobs "
        f"{cores['other']:.2f}: {bottleneck(best, cores, nproc)}. At {gw_cpu:.2f} ms/request one "
        f"worker with a core to itself would top out near "
        f"{1000 / gw_cpu if gw_cpu else float('nan'):,.0f} req/s."
    )


def bottleneck(best: Row, cores: dict[str, float], nproc: int) -> str:
    """What limited the best throughput: the gateway's event loop, the machine, or neither."""
    busy = sum(cores.values())
    loop_busy = cores["gateway"] + best.cores("gateway_wait")  # running or runnable
    if loop_busy >= 0.85:
        return (
            f"the gateway's event loop was running or waiting for a CPU {loop_busy:.0%} of the "
            "time, so the single gateway process is the bottleneck"
            + (
                f" on a machine with {busy:.2f} of {nproc} cores busy"
                if busy >= 0.9 * nproc
                else ""
            )
        )
    if busy >= 0.9 * nproc:
        return (
            f"the machine was saturated ({busy:.2f} of {nproc} cores busy), so this throughput is "
            "what the whole stack gets from 2 shared cores, not the gateway's own ceiling"
        )
    return (
        f"neither the gateway's event loop (running or waiting for a CPU {loop_busy:.0%} of "
        f"the time) nor the machine ({busy:.2f} of {nproc} cores) was saturated: requests "
        "were waiting on something else (row locks, the connection pool, WAL flushes)"
    )


def queueing(j16: Row, j64: Row) -> str:
    return (
        f"**Latency under load is queueing:** wrk is a closed loop, so p50 is about connections "
        f"divided by throughput. At 16 connections the gateway's p50 is "
        f"{j16.med(j16.runs, 'p50_ms'):.1f} ms vs {j16.med(j16.base, 'p50_ms'):.2f} ms "
        f"direct (at 64: {j64.med(j64.runs, 'p50_ms'):.1f} vs "
        f"{j64.med(j64.base, 'p50_ms'):.1f} ms): the added latency under load is the "
        "throughput gap, not per-request work."
    )


def single_user(j16: Row, j64: Row, solo16: Row, solo64: Row) -> str:
    return (
        f"**Single user (hot balance row):** {solo16.med(solo16.runs, 'rps'):,.0f} req/s at 16 "
        f"connections and {solo64.med(solo64.runs, 'rps'):,.0f} at 64, vs "
        f"{j16.med(j16.runs, 'rps'):,.0f} / {j64.med(j64.runs, 'rps'):,.0f} with {USERS} "
        "users. "
        + (
            "No penalty worth the name at this throughput: "
            if solo16.med(solo16.runs, "rps") >= 0.9 * j16.med(j16.runs, "rps")
            else "One user is slower: "
        )
        + "every reserve and settle of a user locks that user's account row until its "
        "transaction commits, and a commit waits for its WAL flush (synchronous_commit=on), so "
        "one user's concurrent requests pass that row one commit at a time (the WAL diagnostic "
        "above shows what that costs)."
    )


def database_work(work: dict[str, float], functions: bool) -> str | None:
    if not work:
        return None
    path = (
        "Reservations and settlements go by group commit: those that arrive while a round "
        "trip is in flight share the next one, one `SELECT * FROM solaris_batch(...)` (the "
        "PL/pgSQL of migrations 0013 and 0015) in one transaction; a lone request's reserve "
        "and settle are one round trip and one commit each."
        if functions
        else "Reserve sends BEGIN, `SELECT ... FOR UPDATE`, `UPDATE accounts`, `INSERT "
        "reservations`, COMMIT; settle sends BEGIN, `INSERT usage`, `UPDATE reservations`, "
        "`INSERT ledger_entries`, `UPDATE accounts`, COMMIT: 11 round trips."
    )
    return (
        f"**Database work:** {work.get('xact_commit', 0):.2f} committed transactions (each a "
        f"WAL flush), {work.get('tup_inserted', 0):.2f} rows inserted and "
        f"{work.get('tup_updated', 0):.2f} updated per request. {path}"
    )


def ledger_alone(by_key: dict[str, PathCost], gw_cpu_1: float) -> str | None:
    if not {"sqlalchemy", "raw", "cte"} <= by_key.keys():
        return None
    a, b, c = by_key["sqlalchemy"], by_key["raw"], by_key["cte"]
    text = (
        "**The ledger alone** (`bench/ledger_paths.py`, one request at a time): reserve + "
        f"settle statement by statement through SQLAlchemy costs {a.cpu_ms:.2f} ms of client "
        f"CPU ({a.wall_ms:.2f} ms wall); the same 11 round trips from raw asyncpg "
        f"{b.cpu_ms:.2f} ms ({b.wall_ms:.2f} ms wall), so SQLAlchemy's per-statement work "
        f"(statement building, cache keys, the greenlet bridge, result objects) is "
        f"~{a.cpu_ms - b.cpu_ms:.1f} ms per request; one statement per phase "
        f"{c.cpu_ms:.2f} ms ({c.wall_ms:.2f} ms wall)."
    )
    if "functions" in by_key:
        d = by_key["functions"]
        return text + (
            f" The gateway's PostgreSQL path (SQL functions) costs {d.cpu_ms:.2f} ms CPU "
            f"({d.wall_ms:.2f} ms wall) of the {gw_cpu_1:.2f} ms of CPU the gateway spends "
            "per request at 1 connection. These timings run after the main rounds and are as "
            "noisy as the machine: the PostgreSQL server and its WAL are shared with other "
            "jobs' databases."
        )
    return text + (
        f" The gateway spends {gw_cpu_1:.2f} ms of CPU per request at 1 connection in "
        "all, most of it in the first path."
    )


def durable_commits(diag: dict[tuple[int, int, str], dict[str, float]]) -> str | None:
    keys = [(1, USERS, "on"), (1, USERS, "off"), (16, 1, "on"), (16, 1, "off")]
    if not all(k in diag for k in keys):
        return None
    idle_on, idle_off, hot_on, hot_off = (diag[k] for k in keys)
    return (
        "**What durable commits cost:** "
        + f"with synchronous_commit off (diagnostic above) the 1-connection p50 was "
        f"{idle_off['p50']:.2f} ms instead of {idle_on['p50']:.2f} ms, and one user at 16 "
        f"connections got {hot_off['rps']:,.0f} instead of {hot_on['rps']:,.0f} req/s. "
        "Each request waits for two WAL flushes (the reservation's commit, then the "
        "settlement's, which the answer waits for), and a user's account row stays locked "
        "until its flush is done."
    )


def profile_summary(prof: Profile | None) -> str | None:
    if prof is None or not prof.summary.by_function:
        return None
    outside = max(1e-9, 100 - prof.summary.syscalls)
    cpu_areas = sorted(
        ((name, 100 * (share - sys_) / outside) for name, share, sys_ in prof.summary.by_area),
        key=lambda item: -item[1],
    )
    top_areas = ", ".join(f"{name} {share:.0f}%" for name, share in cpu_areas[:5])
    top_functions = ", ".join(
        f"`{name.split(' (')[0]}` {share:.0f}%" for name, share in prof.summary.by_function[:5]
    )
    return (
        f"**Profile (16 connections, non-streamed):** {prof.summary.syscalls:.0f}% of the "
        "samples are the gateway inside socket write()/read(), mostly preempted after waking "
        "PostgreSQL, the provider or wrk (see the profile section). Of the rest: "
        f"{top_areas}; by gateway function: {top_functions}."
    )


def accounting(acc: Accounting) -> str:
    return "**Accounting:** " + (
        "no usage row was lost: every 2xx response has its usage row, balances equal their "
        "ledger entries and no reservation is left pending."
        if acc.passed
        else "**the check failed** (see above): that is a gateway bug, not a benchmark artefact."
    )


def noise(rows: list[Row], nproc: int) -> str:
    return (
        f"**Noise:** jobs this script did not start used a median "
        f"{median([row.cores('other') for row in rows]):.2f} of the {nproc} cores during the "
        "gateway runs ('other jobs' column above; per run in the raw table, next to the spread "
        "between rounds). Gateway vs direct within one report is more reliable than absolute "
        "numbers across reports."
    )
