"""Where the gateway spends its time: py-spy sampling the gateway during one more run, the
samples summarised by library area and by gateway function, and the report's section on it.

py-spy is not a project dependency (`--profile`, with py-spy on PATH or `--py-spy BIN`).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from dataclasses import dataclass

from common import BENCH_DIR, USERS, log
from measure import Bench, Run


@dataclass
class Profile:
    command: str
    seconds: float
    requests: int
    summary: Summary
    cpu_ms: float  # gateway CPU per request during the profiled run
    wait_ms: float  # gateway run-queue wait per request during the profiled run


FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
AREAS = (
    ("aiohttp", "aiohttp (upstream client)"),
    ("asyncpg", "asyncpg (PostgreSQL driver)"),
    ("sqlalchemy", "SQLAlchemy (engine, pool, compiled statements)"),
    ("redis", "redis-py"),
    ("uvicorn", "uvicorn (HTTP server)"),
    ("starlette", "starlette"),
    ("tiktoken", "tiktoken"),
    ("structlog", "structlog"),
    ("prometheus_client", "prometheus_client (metrics)"),
    ("pydantic", "pydantic"),
    ("solaris", "solaris (gateway code)"),
)


def area_of(path: str) -> str | None:
    for needle, label in AREAS:
        if f"/{needle}/" in path or path.startswith(f"{needle}/"):
            return label
    return None


Shares = list[tuple[str, float]]
SYSCALLS = {"write", "writev", "send", "sendto", "sendmsg", "read", "recv", "recvfrom", "recvmsg"}
LOCK_WAIT = "PyThread_acquire_lock_timed"  # in a stack: a thread waiting on a lock, idle
NOT_GATEWAY = ("solaris/__main__.py", "solaris/cli.py", "solaris/cli/", "solaris/devprovider/")
NO_GATEWAY_FRAME = "(no gateway frame: event-loop, HTTP and driver protocol callbacks)"


@dataclass
class Summary:
    samples: int
    by_area: list[tuple[str, float, float]]  # area, % of samples, % in socket syscalls
    inclusive: Shares
    leaves: Shares
    syscalls: float  # % of samples in socket read/write system calls
    by_function: Shares  # innermost gateway function, as % of the samples outside syscalls


def summarise_profile(raw: str) -> Summary:
    """Summarise py-spy's raw (collapsed) stacks.

    A sample is charged to the innermost frame that belongs to a known library (stdlib, asyncio
    and native frames are charged to their caller's area). With --native, a leaf in libc's
    write()/read() family is a socket system call, counted separately within its area. A thread
    blocked on a lock (`PyThread_acquire_lock_timed`: an idle executor worker waiting for work)
    is idle, though py-spy's --native sampling counts it as running: it is left out.
    """
    areas: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    area_syscalls: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = syscalls = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or LOCK_WAIT in stack:
            continue
        frames = [
            (match["func"], match["file"])
            for part in stack.split(";")
            if (match := FRAME.match(part))
        ]
        if not frames:
            continue
        count = int(count_text)
        total += count
        area = next((a for f in reversed(frames) if (a := area_of(f[1]))), None)
        area = area or "event loop (uvloop, asyncio tasks) and stdlib"
        areas[area] += count
        func, path = frames[-1]
        if path.startswith("libc") and func in SYSCALLS:
            syscalls += count
            area_syscalls[area] += count
        else:
            own = next((f for f in reversed(frames) if _is_gateway(f[1])), None)
            name = f"{own[0]} ({short_path(own[1])})" if own else NO_GATEWAY_FRAME
            by_function[name] += count
        leaves[f"{func} ({short_path(path)})"] += count
        seen = set()
        for func, path in frames:
            if _is_gateway(path):
                name = f"{func} ({short_path(path)})"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] += count
    share = 100 / total if total else 0.0
    return Summary(
        samples=total,
        by_area=[(name, n * share, area_syscalls[name] * share) for name, n in areas.most_common()],
        inclusive=[(name, n * share) for name, n in inclusive.most_common(12)],
        leaves=[(name, n * share) for name, n in leaves.most_common(15)],
        syscalls=syscalls * share,
        by_function=[
            (name, 100 * n / max(1, total - syscalls)) for name, n in by_function.most_common(15)
        ],
    )


def _is_gateway(path: str) -> bool:
    """A frame of the gateway's request code (not the CLI that started the server)."""
    return "solaris/" in path and not any(part in path for part in NOT_GATEWAY)


def short_path(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return path


async def profile(bench: Bench, py_spy: str, seconds: float) -> tuple[Profile, Run] | None:
    """py-spy (with native frames when it can unwind them) during one 16-connection run."""
    out = bench.workdir / "profile.txt"
    pid = bench.servers.gateway.pid
    for native in (["--native"], []):
        argv = [
            py_spy, "record", *native, "--format", "raw", "-o", str(out), "-r", "100",
            "-d", f"{seconds + 1:g}", "-p", str(pid),
        ]  # fmt: skip
        log(f"py-spy {' '.join(argv[1:])} during a 16-connection non-streamed run")
        spy = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        await asyncio.sleep(0.5)
        run = await bench.measure("gateway", "json", 16, USERS, seconds, 0)
        _, error = await spy.communicate()
        if spy.returncode == 0 and out.exists():
            break
        log(f"py-spy failed ({spy.returncode}): {error.decode(errors='replace')[-300:]}")
        bench.extra_runs.append(run)
    else:
        return None
    shutil.copyfile(out, BENCH_DIR / "profile-latest.txt")
    shown = " ".join(argv[1:]).replace(str(out), "/tmp/profile.txt").replace(str(pid), "<pid>")
    wait_ms = 1000 * run.cpu["gateway_wait"] / run.requests if run.requests else float("nan")
    profiled = Profile(
        f"py-spy {shown}",
        seconds,
        run.requests,
        summarise_profile(out.read_text()),
        run.cpu_ms_per_request("gateway"),
        wait_ms,
    )
    return profiled, run


def profile_text(prof: Profile | None) -> str:
    if prof is None:
        return (
            "Not profiled in this run: pass `--profile` with py-spy installed "
            "(`pip install --target /tmp/pyspy py-spy`, then `--py-spy /tmp/pyspy/bin/py-spy`)."
        )
    summary = prof.summary
    per_req = 1000 * prof.seconds / prof.requests if prof.requests else float("nan")
    outside = max(1e-9, 100 - summary.syscalls)
    areas = (
        "| area | % of samples | of which in socket write()/read() | % of the samples outside "
        "those syscalls |\n|---|---:|---:|---:|\n"
    )
    areas += "\n".join(
        f"| {name} | {share:.1f} | {sys_:.1f} | {100 * (share - sys_) / outside:.1f} |"
        for name, share, sys_ in summary.by_area
    )
    waiting = 100 * prof.wait_ms / (prof.cpu_ms + prof.wait_ms) if prof.cpu_ms else float("nan")

    def table(items: Shares, what: str, unit: str = "% of samples") -> str:
        return f"| {what} | {unit} |\n|---|---:|\n" + "\n".join(
            f"| `{name}` | {share:.1f} |" for name, share in items
        )

    return "\n".join(
        [
            f"py-spy sampled the gateway process while wrk drove it with 16 connections, "
            f"non-streamed, {USERS} users, for {prof.seconds:g} s ({prof.requests:,} requests, "
            f"{per_req:.2f} ms of wall time per request; {summary.samples:,} non-idle samples "
            f"at 100 Hz). Command: `{prof.command}`. The raw stacks are kept in "
            "`bench/profile-latest.txt` (each run overwrites it).",
            "",
            f"**Reading it:** {summary.syscalls:.0f}% of the samples are inside libc `write()` "
            "or `read()` on a socket. Each such write wakes another process (PostgreSQL, the "
            "provider, wrk), and on a busy 2-core machine the kernel often switches to it right "
            "there, leaving the gateway runnable but off the CPU inside the syscall. During this "
            f"run the gateway used {prof.cpu_ms:.2f} ms of CPU and waited {prof.wait_ms:.2f} ms "
            f"for a CPU per request (schedstat): it spent {waiting:.0f}% of its non-idle time "
            f"waiting for a CPU, against {summary.syscalls:.0f}% of samples in those syscalls. "
            "So most of those samples are the cost of round trips on a crowded machine rather "
            "than Python work; the last column below, and the table of gateway functions, count "
            "only the samples outside those syscalls.",
            "",
            "**By area.** Each sample is charged to the innermost frame of a known library; "
            "stdlib, asyncio and C frames are charged to their caller. Samples with no library "
            "frame are the event loop itself (uvloop callbacks, task stepping).",
            "",
            areas,
            "",
            "**Gateway function that was running** (innermost `solaris` frame, libraries it "
            "called included; samples outside socket syscalls). Driver and HTTP protocol "
            "callbacks run from the event loop, not under the function that awaits them:",
            "",
            table(summary.by_function, "function", "% of CPU samples"),
            "",
            "**Gateway functions, inclusive** (share of all samples with the function on the "
            "stack):",
            "",
            table(summary.inclusive, "function"),
            "",
            "**Hottest leaf frames (self time, all samples)**:",
            "",
            table(summary.leaves, "frame"),
        ]
    )
