"""Benchmark: what the SOLARIS gateway adds on top of talking to the provider directly.

    uv run python bench/run.py            # full run (3 rounds, ~15 minutes), writes bench/REPORT.md
    uv run python bench/run.py --quick    # 1 round of short runs, writes bench/REPORT.quick.md
    uv run python bench/run.py --profile  # also a py-spy profile of the gateway (py-spy on PATH
                                          # or --py-spy BIN; e.g. pip install --target /tmp/pyspy)
    uv run python bench/run.py --shapes-only  # only streamed chat, /v1/responses, /v1/messages
                                              # (gateway vs direct), writes bench/REPORT.shapes.md

It starts the dev provider and one gateway (PostgreSQL in a fresh database, Redis, accounting on),
warms both up, then measures every setting with wrk (bench/chat.lua): target ∈ {direct, gateway},
mode ∈ {non-streamed, streamed}, connections ∈ {1, 16, 64}, plus single-user gateway rows (the
hot balance row), and streamed /v1/responses and /v1/messages at 1 and 16 connections beside
chat's (`shapes`). When the LiteLLM proxy is installed (`make litellm`) it also starts LiteLLM in
front of the provider and a second gateway in front of LiteLLM, and measures two more targets at 1
and 16 connections: litellm (wrk → LiteLLM → provider) and chain (wrk → gateway → LiteLLM →
provider). Within a round the targets of a setting run back to back, in alternating order; each
number in the report is the median over the rounds. After each gateway or chain run it checks
that the usage rows written for that run match the 2xx responses wrk counted, and at the end that
the ledger balances. Only processes this script started are stopped; its database is dropped.

This module runs those steps in order; each is a module of its own: `prerequisites` (wrk,
PostgreSQL, Redis), `servers` (the processes measured), `measure` (one wrk run and the CPU around
it), `profiling` (py-spy), `accounting` (usage rows against 2xx), `diagnostic` (synchronous_commit
on and off), and `tables`, `analysis` and `report` (REPORT.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from accounting import check_accounting, database_work
from common import (
    ADMIN_URL,
    BENCH_DIR,
    CONNECTIONS,
    LITELLM_BIN,
    LITELLM_CONNECTIONS,
    MODES,
    REDIS_URL,
    REPO,
    SHAPES,
    SOLO,
    TARGETS,
    USERS,
    Options,
    log,
)
from diagnostic import wal_diagnostic
from ledger_paths import measure as measure_paths
from measure import Bench, Run, rss_mib
from prerequisites import ensure_services, ensure_wrk
from profiling import Profile, profile
from report import Outcome, accounting_text, machine_info, write
from servers import Servers, litellm_version, servers
from shapes import measure_shapes, shape_rounds, shapes_report, warm_shapes
from tables import build_rows, raw_table, results_table


async def main_async(options: Options) -> int:
    import redis

    redis_version = str(redis.Redis.from_url(REDIS_URL).info("server")["redis_version"])
    run_id = secrets.token_hex(3)
    db_name = f"solaris_bench_{run_id}"
    workdir = Path(tempfile.mkdtemp(prefix=f"solaris-bench-{run_id}-"))
    log(f"logs in {workdir}; database {db_name}")
    admin = await asyncpg.connect(ADMIN_URL)
    pg_version = await postgres_version(admin)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name
    key = "sk-bench-" + secrets.token_hex(8)
    env = {
        "SOLARIS_DATABASE_URL": db_url,
        "SOLARIS_REDIS_URL": REDIS_URL,
        "SOLARIS_WORKERS": "1",  # the figures are per worker (and the profile is of its pid)
        "SOLARIS_LIBRECHAT_KEYS": key,
        "SOLARIS_SECRET_KEY": secrets.token_hex(16),
        "SOLARIS_DEFAULT_ALLOWANCE_TOKENS": "10000000000",
    }
    started = time.monotonic()
    try:
        with_litellm = not options.litellm_skipped and not options.shapes_only
        with servers(env, workdir, with_litellm=with_litellm) as srv:
            db = await asyncpg.connect(db_url)
            bench = Bench.of_run(run_id, options.wrk, srv, db, key, workdir)
            if options.shapes_only:
                return await shapes_only(bench, options)
            runs = await measure_rounds(bench, options)
            prof = await profiled(bench, options, runs)
            rss = rss_mib(srv.gateway.pid)
            accounting = await check_accounting(bench, [*runs, *bench.extra_runs])
            commands = measured_commands(srv, options, prof)
        # The gateway has exited: its connections' statistics are flushed.
        await asyncio.sleep(0.6)
        work = await database_work(db, db_name, accounting.totals["usage_rows"])
        await db.close()
        log("timing the ledger paths (bench/ledger_paths.py)")
        paths = await measure_paths(db_url, 150 if options.quick else 400)
        diagnostic: list[Run] = []
        if options.wal_diagnostic:
            diagnostic = await wal_diagnostic(admin, db_name, env, workdir, options, key, run_id)
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
    elapsed = time.monotonic() - started

    print()
    print(results_table(build_rows(runs)))
    print()
    print(accounting_text(accounting))
    litellm = f"{litellm_version()} (`.tools/litellm`)" if LITELLM_BIN.exists() else "not installed"
    machine = machine_info(pg_version, redis_version, options.wrk, litellm)
    outcome = Outcome(
        runs, diagnostic, accounting, work, prof, paths, rss, commands, machine, elapsed
    )
    write(outcome, options)
    log(f"wrote {options.report} in {elapsed / 60:.1f} minutes; logs in {workdir}")
    return 0 if accounting.passed else 1


async def shapes_only(bench: Bench, options: Options) -> int:
    """`--shapes-only`: streamed chat, /v1/responses and /v1/messages rows, and their report."""
    runs = await shape_rounds(bench, options)
    accounting = await check_accounting(bench, runs)
    commands = measured_commands(bench.servers, options, None)
    text = accounting_text(accounting)
    options.report.write_text(shapes_report(runs, options, text, commands, raw_table(runs)))
    log(f"wrote {options.report}")
    return 0 if accounting.passed else 1


async def postgres_version(admin: Any) -> str:
    """The server's version and the settings that decide what a commit costs."""
    pg_version = str(await admin.fetchval("SHOW server_version"))
    pg_settings = ", ".join(
        [
            f"{name}={await admin.fetchval(f'SHOW {name}')}"
            for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        ]
    )
    return pg_version + f" ({pg_settings})"


async def measure_rounds(bench: Bench, options: Options) -> list[Run]:
    """The warm-up, then every round: each setting against every target, in alternating order,
    then the single-user gateway settings."""
    runs: list[Run] = []
    targets = TARGETS if bench.servers.litellm is not None else ("direct", "gateway")
    log(f"warming up ({options.warmup:g} s per target and mode)")
    for target in targets:
        for mode in MODES:
            await bench.wrk_run(target, mode, 16, USERS, options.warmup, "warmup")
    await warm_shapes(bench, SHAPES, options.warmup)
    await bench.wrk_run("gateway", "json", 4, 1, 1, "warmup")
    await bench.settled()
    settings = [(m, c, USERS) for m in MODES for c in CONNECTIONS]
    for rnd in range(1, options.rounds + 1):
        log(f"round {rnd}/{options.rounds}")
        for i, (mode, connections, users) in enumerate(settings):
            # direct, gateway[, litellm, chain], or the reverse: the chain always runs
            # next to LiteLLM alone, the gateway next to direct.
            setting = [
                t
                for t in targets
                if t in ("direct", "gateway") or connections in LITELLM_CONNECTIONS
            ]
            order = setting if (i + rnd) % 2 else setting[::-1]
            for target in order:
                runs.append(
                    await bench.measure(target, mode, connections, users, options.duration, rnd)
                )
        for mode, connections in SOLO:
            runs.append(await bench.measure("gateway", mode, connections, 1, options.duration, rnd))
        runs += await measure_shapes(bench, options, SHAPES, rnd)
    return runs


async def profiled(bench: Bench, options: Options, runs: list[Run]) -> Profile | None:
    """With `--profile`, py-spy during one more run (appended to `runs`)."""
    if not options.profile:
        return None
    py_spy = options.py_spy or shutil.which("py-spy")
    if not py_spy:
        log("no py-spy: pip install --target /tmp/pyspy py-spy, then --py-spy BIN")
        return None
    found = await profile(bench, py_spy, options.profile_seconds)
    if found is None:
        return None
    prof, profile_run = found
    runs.append(profile_run)
    return prof


def measured_commands(srv: Servers, options: Options, prof: Profile | None) -> list[str]:
    """How to start what was measured and run one measurement by hand, for the report."""
    port = srv.gateway_port
    commands = [
        *srv.commands,
        "# each measurement (direct: the provider's port instead of the gateway's):",
        "BENCH_STREAM=0|1 BENCH_USERS=100|1 BENCH_USER_PREFIX=<per run> "
        "BENCH_KEY=<service key> BENCH_TAG=<run tag> \\\n"
        f"  wrk -t1 -c1|16|64 -d{options.duration:g}s --timeout 10s --latency "
        f"-s bench/chat.lua http://127.0.0.1:{port}/v1/chat/completions",
        "# the other API shapes (streamed, -c1|16): BENCH_API=responses|messages BENCH_STREAM=1 "
        f"... -s bench/chat.lua http://127.0.0.1:{port}/v1/responses|/v1/messages",
    ]
    if srv.litellm is not None:
        commands.append(
            f"# litellm: port {srv.litellm_port} and BENCH_KEY=<master key>; chain: port "
            f"{srv.chain_port} (the chain's gateway); both with -c1|16 only"
        )
    if prof is not None:
        commands.append(prof.command.replace(str(srv.gateway.pid), "<gateway pid>"))
    return commands


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of short runs")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per run (default 7, quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per target and mode")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway at the end")
    parser.add_argument("--py-spy", help="the py-spy binary (default: py-spy on PATH)")
    parser.add_argument("--profile-seconds", type=float, default=None)
    parser.add_argument("--report", type=Path, help="where to write the report")
    parser.add_argument(
        "--diagnostic-rounds", type=int, help="rounds of the WAL diagnostic (default 2, quick 1)"
    )
    parser.add_argument(
        "--no-litellm",
        dest="litellm",
        action="store_false",
        help="skip the LiteLLM and gateway → LiteLLM targets",
    )
    parser.add_argument(
        "--shapes-only",
        action="store_true",
        help="only streamed chat, /v1/responses and /v1/messages (gateway vs direct)",
    )
    parser.add_argument(
        "--no-wal-diagnostic",
        dest="wal_diagnostic",
        action="store_false",
        help="skip the synchronous_commit=off diagnostic runs",
    )
    args = parser.parse_args()
    quick: bool = args.quick
    shapes: bool = args.shapes_only
    default_report = "REPORT.shapes.md" if shapes else "REPORT.quick.md" if quick else "REPORT.md"
    return Options(
        quick=quick,
        rounds=args.rounds or (1 if quick else 3),
        duration=args.duration or (3.0 if quick else 7.0),
        warmup=args.warmup or (1.0 if quick else 3.0),
        profile=args.profile,
        py_spy=args.py_spy,
        profile_seconds=args.profile_seconds or (5.0 if quick else 15.0),
        report=args.report or BENCH_DIR / default_report,
        diagnostic_rounds=args.diagnostic_rounds or (1 if quick else 2),
        wal_diagnostic=args.wal_diagnostic,
        litellm_skipped=litellm_skipped(args.litellm and not shapes),
        wrk=ensure_wrk(),  # once the arguments are valid (`--help` needs no wrk)
        shapes_only=shapes,
    )


def litellm_skipped(wanted: bool) -> str:
    """Why the litellm and chain targets are not measured, if they aren't ("" when they are)."""
    if not wanted:
        return "skipped with `--no-litellm`"
    if LITELLM_BIN.exists():
        return ""
    where = LITELLM_BIN.relative_to(REPO)
    log(
        f"{where} is missing: the litellm and chain (gateway → LiteLLM) targets are skipped. "
        "Install LiteLLM with `make litellm` (litellm[proxy] in its own virtualenv, "
        ".tools/litellm), then re-run to measure them."
    )
    return (
        f"the LiteLLM proxy is not installed (`{where}` is missing; `make litellm` installs "
        "it, and the next run measures these rows)"
    )


def main() -> None:
    options = parse_options()
    ensure_services(ADMIN_URL, REDIS_URL)
    sys.exit(asyncio.run(main_async(options)))


if __name__ == "__main__":
    main()
