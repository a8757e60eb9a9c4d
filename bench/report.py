"""The text of REPORT.md: the template, the machine it ran on, the sections that are prose
rather than tables, and `write`, which fills the template from one run's outcome (next to it,
REPORT.json holds every run's numbers)."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import textwrap
from dataclasses import asdict, dataclass

from accounting import Accounting
from analysis import analysis_text
from common import FULL_RUN_MINUTES, PACKAGES, REPO, USERS, Options
from diagnostic import diagnostic_text
from goals import goals_table
from ledger_paths import PathCost
from ledger_paths import table as paths_table
from measure import Run
from profiling import Profile, profile_text
from servers import litellm_version
from shapes import shapes_text
from tables import build_rows, cores_table, raw_table, results_table


@dataclass
class Outcome:
    """What one run measured and how, for the report."""

    runs: list[Run]  # the rounds and the profiled run
    diagnostic: list[Run]
    accounting: Accounting
    work: dict[str, float]  # database work per request
    profile: Profile | None
    paths: list[PathCost]
    rss_mib: float  # the gateway's, after the runs
    commands: list[str]
    machine: dict[str, str]
    elapsed_s: float


def write(outcome: Outcome, options: Options) -> None:
    """REPORT.md (or `--report`) and, beside it, the same name with .json: every run raw."""
    options.report.write_text(render(outcome, options))
    runs = [asdict(r) for r in [*outcome.runs, *outcome.diagnostic]]
    dump = json.dumps({"machine": outcome.machine, "runs": runs}, indent=1)
    options.report.with_suffix(".json").write_text(dump)


def render(outcome: Outcome, options: Options) -> str:
    rows = build_rows(outcome.runs)
    skipped = options.litellm_skipped
    return REPORT.format(
        date=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        kind="quick run: 1 round of short runs, for a smoke test only"
        if options.quick
        else "full run",
        rounds=options.rounds,
        seconds=options.duration,
        minutes=outcome.elapsed_s / 60
        if not options.quick
        else FULL_RUN_MINUTES + (0 if skipped else 4),
        machine="\n".join(f"| {k} | {v} |" for k, v in outcome.machine.items()),
        users=USERS,
        warmup=options.warmup,
        args=" --quick" if options.quick else (" --profile" if options.profile else ""),
        commands="\n".join(outcome.commands),
        results=results_table(rows),
        results_note=results_note(skipped),
        shapes=shapes_text(outcome.runs),
        litellm=litellm_text(skipped),
        cores=cores_table(rows),
        rss=outcome.rss_mib,
        nproc=os.cpu_count(),
        accounting=accounting_text(outcome.accounting),
        dbwork=dbwork_text(outcome.work),
        profile=profile_text(outcome.profile),
        paths=paths_table(outcome.paths),
        diagnostic=diagnostic_text(outcome.diagnostic),
        goals=goals_table(rows, outcome.work, outcome.paths, outcome.rss_mib),
        analysis=analysis_text(
            rows,
            outcome.accounting,
            outcome.work,
            outcome.profile,
            outcome.paths,
            outcome.diagnostic,
            skipped,
        ),
        raw=raw_table([*outcome.runs, *outcome.diagnostic]),
    )


def machine_info(admin_version: str, redis_version: str, wrk: str, litellm: str) -> dict[str, str]:
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in PACKAGES)
    head = "unknown"
    with contextlib.suppress(OSError):
        ref = (REPO / ".git" / "HEAD").read_text().strip()
        head = (
            (REPO / ".git" / ref[5:]).read_text().strip()[:12] if ref.startswith("ref: ") else ref
        )
    return {
        "nproc": str(os.cpu_count()),
        "CPU": cpu_model,
        "memory": f"{total_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "PostgreSQL": admin_version,
        "Redis": redis_version,
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0].strip(),
        "packages": versions,
        "LiteLLM": litellm,
        "repository": f"HEAD {head} (plus whatever was uncommitted in the work tree)",
        "load average at start": open("/proc/loadavg").read().split(" ", 3)[:3].__str__(),
    }


def wrapped(*bullets: str) -> str:
    """Markdown bullets wrapped at 100 columns, like the rest of the report template."""
    return "\n".join(
        textwrap.fill(b, 100, subsequent_indent="  ", break_on_hyphens=False) for b in bullets
    )


def litellm_text(skipped: str) -> str:
    """The 'What was measured' bullets for the LiteLLM targets."""
    if skipped:
        return wrapped(
            "- **litellm** (wrk → LiteLLM → provider) and **chain** (wrk → gateway → LiteLLM → "
            f"provider): **not measured in this run**: {skipped}."
        )
    return wrapped(
        f"- **litellm**: wrk → the LiteLLM proxy ({litellm_version()}, `make litellm`: its own "
        "virtualenv in `.tools/litellm`; one worker, no database, a master key, one model "
        "`gpt-4o-mini` routed to `openai/gpt-4o-mini` at the same provider, as in "
        "`tests/test_litellm.py`) → the provider.",
        "- **chain**: wrk → a second `solaris serve` (same database and Redis, accounting on) "
        "whose upstream is that LiteLLM (`SOLARIS_UPSTREAM_BASE_URL` = LiteLLM's `/v1`, "
        "`SOLARIS_UPSTREAM_API_KEY` = its master key) → the provider: the full chain. litellm "
        "and chain run at 1 and 16 connections only (LiteLLM serves a few dozen req/s, so 64 "
        "connections would only queue), in the same rounds as direct and gateway.",
    )


def results_note(skipped: str) -> str:
    text = (
        "Rows **gateway** vs direct: what the gateway adds in front of the provider. "
        "**LiteLLM** vs direct: what LiteLLM alone adds. **gateway → LiteLLM** vs LiteLLM: what "
        "the gateway adds in front of LiteLLM (the full chain minus LiteLLM alone). CPU/req "
        "columns are the processes in the path (for gateway → LiteLLM, the chain's gateway). "
        "At 16 connections LiteLLM's own queue sets the latency of both LiteLLM rows, so there "
        "the gateway → LiteLLM row's req/s against LiteLLM's says more than its added p50."
    )
    if skipped:
        text += f" No LiteLLM rows in this run: {skipped}."
    return textwrap.fill(text, 100, break_on_hyphens=False)


REPORT = """\
# SOLARIS Gateway benchmark

Written by `bench/run.py` on {date} ({kind}). Numbers are medians of {rounds} round(s); every
measurement ran {seconds:g} s. Re-run with `uv run python bench/run.py` (full, ~{minutes:.0f} minutes).

## Machine

| | |
|---|---|
{machine}

## What was measured

- **direct**: wrk → the dev provider (`solaris dev-provider`, one uvicorn process, 16 reply
  tokens; streamed = 16 content events + a usage event + `[DONE]`).
- **gateway**: wrk → `solaris serve` (one uvicorn worker, uvloop + httptools) → the same provider,
  with accounting on: PostgreSQL (a fresh database, dropped afterwards), Redis identity cache, a
  reservation before forwarding and a settlement (usage row + ledger entry + balance update) after.
{litellm}
- Each request is `POST /v1/chat/completions` (gpt-4o-mini, one short user message) with the
  LibreChat service key and `X-LibreChat-User-Id` rotating over {users} users (`bench/chat.lua`);
  rows with users = 1 send every request as the same user, the worst case for the balance row lock.
- wrk runs with 1 thread (it shares the 2 cores with everything else), `--latency`, `--timeout 10s`.
  Latency is wrk's full-response time (for streams: until the last event).
- Within each round, the runs of all targets of one setting go back to back, their order
  reversed between settings and rounds. Warm-up: {warmup:g} s per target and mode first.
- **added** = median p50/p99 of a path minus that of the target it is compared with ("vs") at the
  same settings: the gateway and LiteLLM against direct, the chain (gateway → LiteLLM) against
  LiteLLM alone, i.e. what the gateway adds in front of LiteLLM.
- **CPU/req** = CPU seconds the process used during the run (from `/proc/<pid>/stat`) / requests
  wrk completed. PostgreSQL = all `postgres` processes on the machine (other databases' work would
  show up here too). **Waiting for a CPU** = time the gateway's event-loop thread was runnable but
  not running (`/proc/<pid>/schedstat`) / requests: what a busy machine adds to its latency.

### Commands

```sh
uv run python bench/run.py{args}
# which runs:
{commands}
```

## Results

{results}

{results_note}

### Streamed /v1/responses and /v1/messages beside chat (gateway vs direct)

{shapes}

### Where the cores went (median CPU cores busy during the runs of each path)

{cores}

Gateway RSS after the run: {rss:.0f} MiB. The provider, PostgreSQL, Redis, wrk (and LiteLLM) share
the machine's {nproc} cores with the gateway, so the gateway's throughput here is bounded by the
whole stack, not by the gateway alone.

## Accounting check

{accounting}

### Database work per request (pg_stat_database of the benchmark database / usage rows)

{dbwork}

### The ledger alone, several ways (`bench/ledger_paths.py`, one request at a time, after the runs)

{paths}

A and D are the project's code (D, where present, is what the gateway runs on PostgreSQL); B and C
are sketches that write the same rows, to show what the client stack (A vs B) and the number of
round trips (B vs C) cost per request.

### What waiting for WAL flushes costs (diagnostic)

{diagnostic}

## Where the gateway spends its time

{profile}

## Goals

{goals}

## Analysis

{analysis}

## Raw runs

{raw}
"""


def accounting_text(acc: Accounting) -> str:
    t = acc.totals
    verdict = "**PASS**" if acc.passed else "**FAIL**"
    lines = [
        f"{verdict}: wrk counted **{acc.measured_2xx:,} 2xx responses** from the gateways in the "
        "measured runs (the gateway in front of the provider and, when LiteLLM ran, the chain's "
        "gateway in front of LiteLLM: both write to the benchmark database); the database holds "
        f"**{acc.measured_rows:,} usage rows** for those runs "
        "(counted per run by the `X-LibreChat-Conversation-Id` tag the script sends). "
        f"Non-2xx responses: {acc.non_2xx}.",
        "",
        "A run may leave up to one usage row per connection more than wrk's 2xx count: wrk stops "
        "on a timer and drops the requests it has in flight, which the gateway still completes and "
        "bills (a non-streamed answer is settled before it is sent; a stream cut by the client is "
        f"billed as `client_disconnected`). Allowed extra rows over all runs: "
        f"{acc.in_flight_allowance:,}; seen: {acc.measured_rows - acc.measured_2xx:,}.",
        "",
        f"- runs with fewer rows than 2xx (lost usage): {len(acc.short_runs)}"
        + "".join(f"\n  - {s}" for s in acc.short_runs),
        f"- runs with more rows than 2xx + in-flight: {len(acc.extra_runs)}"
        + "".join(f"\n  - {s}" for s in acc.extra_runs),
        "- usage rows by status: " + ", ".join(f"{k} {v:,}" for k, v in sorted(acc.status.items())),
        f"- whole database, warm-up and profile included: {t['usage_rows']:,} usage rows, "
        f"{t['reservations']:,} reservations ({t['settled_reservations']:,} settled, "
        f"{t['pending']} pending), {t['usage_entries']:,} usage ledger entries, {t['users']} users",
        f"- accounts whose balance ≠ the sum of their ledger entries, or with tokens still "
        f"reserved: {t['unbalanced_accounts']}",
        f"- `settle_retry` / `settle_failed` lines in the gateway logs: {acc.settle_problems}",
    ]
    return "\n".join(lines)


def dbwork_text(work: dict[str, float]) -> str:
    if not work:
        return "(no data)"
    names = {
        "xact_commit": "transactions committed",
        "xact_rollback": "transactions rolled back",
        "tup_inserted": "rows inserted",
        "tup_updated": "rows updated",
        "tup_fetched": "rows fetched",
        "blks_hit": "buffer hits",
    }
    return "| per request | |\n|---|---:|\n" + "\n".join(
        f"| {names[k]} | {v:.2f} |" for k, v in work.items()
    )
