"""A diagnostic of where the time goes, not a way to run the gateway: two settings measured
again on a gateway restarted with its database's synchronous_commit on and off in turn, to show
what waiting for WAL flushes costs; and the report's section on it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from common import USERS, Options, log, median
from measure import Bench, Run
from servers import servers


async def wal_diagnostic(
    admin: Any,
    db_name: str,
    env: dict[str, str],
    workdir: Path,
    args: Options,
    key: str,
    run_id: str,
) -> list[Run]:
    """Two settings again, on a gateway restarted with its database's synchronous_commit on and
    off in turn (2 rounds): what waiting for WAL flushes costs. A diagnostic only."""
    runs = []
    seconds = max(3.0, args.duration - 2)
    for rnd in range(1, args.diagnostic_rounds + 1):
        for sync in ("on", "off") if rnd % 2 else ("off", "on"):
            log(f"diagnostic round {rnd}: gateway restarted with synchronous_commit={sync}")
            await admin.execute(f'ALTER DATABASE "{db_name}" SET synchronous_commit = {sync}')
            with servers(env, workdir) as srv:
                db = await asyncpg.connect(env["SOLARIS_DATABASE_URL"])
                try:
                    counter = 800 + 10 * rnd + 5 * (sync == "off")
                    bench = Bench.of_run(run_id, args.wrk, srv, db, key, workdir, counter)
                    await bench.wrk_run("gateway", "json", 16, USERS, args.warmup, "warmup-diag")
                    for connections, users in ((1, USERS), (16, 1)):
                        run = await bench.measure(
                            "gateway", "json", connections, users, seconds, -rnd
                        )
                        run.note = f"synchronous_commit={sync}"
                        runs.append(run)
                finally:
                    await db.close()
    await admin.execute(f'ALTER DATABASE "{db_name}" RESET synchronous_commit')
    return runs


def diagnostic_summary(runs: list[Run]) -> dict[tuple[int, int, str], dict[str, float]]:
    grouped: dict[tuple[int, int, str], list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run.connections, run.users, run.note.rpartition("=")[2])].append(run)
    return {
        k: {
            "rps": median([r.rps for r in v]),
            "p50": median([r.p50_ms for r in v]),
            "p99": median([r.p99_ms for r in v]),
            "cpu": median([r.cpu_ms_per_request("gateway") for r in v]),
            "wait": median([1000 * r.cpu["gateway_wait"] / r.requests for r in v]),
            "other": median([r.cpu["other"] / r.duration_s for r in v]),
        }
        for k, v in grouped.items()
    }


def diagnostic_text(runs: list[Run]) -> str:
    if not runs:
        return "Not run (`--no-wal-diagnostic`)."
    rounds = len({r.round for r in runs})
    lines = [
        "After the main rounds the gateway was restarted with `ALTER DATABASE ... SET "
        "synchronous_commit = on` and `= off` in turn, and two non-streamed settings were "
        f"measured on each ({rounds} rounds, medians; every run's usage rows are in the raw "
        "table). This is a diagnostic of where the time goes, not a way to run the gateway: "
        "without synchronous commits a PostgreSQL crash can lose the last settlements.",
        "",
        "| setting | synchronous_commit | gateway req/s | p50 ms | p99 ms | gateway CPU/req "
        "| waiting for a CPU /req | other jobs (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (connections, users, sync), m in sorted(
        diagnostic_summary(runs).items(), key=lambda item: (item[0][0], item[0][2] != "on")
    ):
        lines.append(
            f"| {connections} conn, {users} user(s) | {sync} | {m['rps']:,.0f} | {m['p50']:.2f} "
            f"| {m['p99']:.2f} | {m['cpu']:.3f} | {m['wait']:.3f} | {m['other']:.2f} |"
        )
    short = [r for r in runs if (r.rows or 0) < r.ok]
    lines += [
        "",
        f"Accounting in these runs: {sum(r.ok for r in runs):,} 2xx, "
        f"{sum(r.rows or 0 for r in runs):,} usage rows; runs with fewer rows than 2xx: "
        f"{len(short)}.",
    ]
    return "\n".join(lines)
