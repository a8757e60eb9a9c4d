"""One measurement: a wrk run against one target, the CPU every process used meanwhile (from
/proc), and, for a gateway, the usage rows it wrote for that run.

CPU is read around each run for the processes this script started (the gateways, the provider,
LiteLLM with any children), PostgreSQL and Redis by name, wrk as this process's reaped children,
and the whole machine, so the work of jobs this script did not start shows as `other`.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import API_PATHS, GATEWAYS, LUA, MODE_LABEL, append, log
from servers import Servers
from solaris.cli.processes import process_cpu_s

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run_queue_wait_s(pid: int) -> float:
    """Seconds the process's main thread (the gateway's event loop) spent runnable but waiting
    for a CPU (/proc/<pid>/schedstat, second field)."""
    with open(f"/proc/{pid}/schedstat") as schedstat:
        return int(schedstat.read().split()[1]) / 1e9


def cpu_by_name(
    names: Iterable[str], trees: Iterable[int] = ()
) -> tuple[dict[str, float], dict[int, float]]:
    """Summed CPU seconds of every process whose comm is one of `names` (e.g. all postgres), and
    of each process in `trees` together with its descendants (e.g. LiteLLM and any workers)."""
    wanted = set(names)
    totals = dict.fromkeys(wanted, 0.0)
    parent: dict[int, int] = {}
    own: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        fields = text.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        parent[int(entry.name)], own[int(entry.name)] = int(fields[1]), cpu
        if comm in wanted:
            totals[comm] += cpu
    by_tree = {}
    for root in trees:
        total = 0.0
        for pid, cpu in own.items():
            ancestor = pid
            while ancestor > 1 and ancestor != root:
                ancestor = parent.get(ancestor, 0)
            if ancestor == root:
                total += cpu
        by_tree[root] = total
    return totals, by_tree


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to see other jobs' load."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Run:
    target: str  # "direct" | "gateway" | "litellm" | "chain"
    mode: str  # "json" | "stream"
    connections: int
    users: int
    round: int
    duration_s: float
    requests: int
    non_2xx: int
    socket_errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    # CPU seconds during the run: gateway (the one answering: the chain's for chain runs),
    # idle_gateway (the other one), provider, litellm, postgres, redis, wrk, other
    cpu: dict[str, float]
    rows: int | None = None  # gateway and chain: usage rows written for this run
    row_status: dict[str, int] = field(default_factory=dict)
    note: str = ""
    api: str = "chat"  # "chat" | "responses" | "messages" (API_PATHS)

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    def cpu_ms_per_request(self, who: str) -> float:
        return 1000 * self.cpu[who] / self.requests if self.requests else float("nan")


@dataclass
class Bench:
    wrk: str
    servers: Servers
    db: Any  # asyncpg.Connection to the benchmark database
    user_prefix: str
    solo_prefix: str
    key: str
    workdir: Path
    counter: int = 0
    extra_runs: list[Run] = field(default_factory=list)  # measured but not reported (retries)

    @classmethod
    def of_run(
        cls,
        run_id: str,
        wrk: str,
        servers: Servers,
        db: Any,
        key: str,
        workdir: Path,
        counter: int = 0,
    ) -> Bench:
        """A bench whose user ids are unique to the run `run_id`: the gateway's Redis identity
        cache maps external ids to user ids and is shared by every gateway on this Redis."""
        return cls(
            wrk=wrk,
            servers=servers,
            db=db,
            user_prefix=f"bench-{run_id}-u",
            solo_prefix=f"bench-{run_id}-solo-",
            key=key,
            workdir=workdir,
            counter=counter,
        )

    def url(self, target: str, api: str = "chat") -> str:
        return f"http://127.0.0.1:{self.servers.port(target)}{API_PATHS[api]}"

    def cpu_now(self, target: str) -> dict[str, float]:
        """CPU seconds used so far by each process this script started (and the machine)."""
        srv = self.servers
        gateway = srv.gateway_of(target)
        idle = srv.chain if gateway is srv.gateway else srv.gateway
        trees = [srv.litellm.pid] if srv.litellm is not None else []
        procs, by_tree = cpu_by_name(("postgres", "redis-server"), trees)
        return {
            "gateway": process_cpu_s(gateway.pid),
            "idle_gateway": process_cpu_s(idle.pid) if idle is not None else 0.0,
            "provider": process_cpu_s(srv.provider.pid),
            "litellm": sum(by_tree.values()),
            "postgres": procs["postgres"],
            "redis": procs["redis-server"],
            "wrk": children_cpu_s(),
            "machine": machine_busy_s(),
            "gateway_wait": run_queue_wait_s(gateway.pid),
        }

    async def wrk_run(
        self,
        target: str,
        mode: str,
        connections: int,
        users: int,
        seconds: float,
        tag: str,
        api: str = "chat",
    ) -> tuple[dict[str, Any], dict[str, float]]:
        env = {
            **os.environ,
            "BENCH_API": api,
            "BENCH_STREAM": "1" if mode == "stream" else "0",
            "BENCH_USERS": str(users),
            "BENCH_USER_PREFIX": self.user_prefix if users > 1 else self.solo_prefix,
            "BENCH_KEY": self.servers.litellm_key if target == "litellm" else self.key,
            "BENCH_TAG": tag,
        }
        argv = [
            self.wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(LUA),
            self.url(target, api),
        ]
        before = self.cpu_now(target)
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await process.communicate()
        after = self.cpu_now(target)
        text = output.decode(errors="replace")
        append(
            self.workdir / "wrk.log",
            f"\n=== {tag} {target} {api} {mode} c={connections} users={users}\n{text}",
        )
        line = next((ln for ln in text.splitlines() if ln.startswith("BENCH ")), None)
        if process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
        cpu = {k: after[k] - before[k] for k in after}
        ours = sum(v for k, v in cpu.items() if k not in ("machine", "gateway_wait"))
        cpu["other"] = max(0.0, cpu.pop("machine") - ours)  # jobs this script did not start
        return json.loads(line[6:]), cpu

    async def measure(
        self,
        target: str,
        mode: str,
        connections: int,
        users: int,
        seconds: float,
        rnd: int,
        api: str = "chat",
    ) -> Run:
        self.counter += 1
        shape = "" if api == "chat" else f"-{api}"
        tag = f"run{self.counter:03d}-{target}{shape}-{mode}-c{connections}-u{users}"
        data, cpu = await self.wrk_run(target, mode, connections, users, seconds, tag, api)
        duration = data["duration_us"] / 1e6
        run = Run(
            target=target,
            mode=mode,
            connections=connections,
            users=users,
            round=rnd,
            duration_s=duration,
            requests=data["requests"],
            non_2xx=data["status_errors"],
            socket_errors=data["connect_errors"]
            + data["read_errors"]
            + data["write_errors"]
            + data["timeouts"],
            rps=data["requests"] / duration,
            p50_ms=data["p50_us"] / 1000,
            p90_ms=data["p90_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            cpu=cpu,
            api=api,
        )
        if target == "litellm":
            await self.litellm_idle()
        if target in GATEWAYS:
            await self.settled()
            rows = await self.db.fetch(
                "SELECT status, count(*) AS n FROM usage WHERE conversation_id = $1 GROUP BY status",
                tag,
            )
            run.row_status = {row["status"]: int(row["n"]) for row in rows}
            run.rows = sum(run.row_status.values())
        through_litellm = target in ("litellm", "chain")
        log(
            f"  {target:7} {api:9} {MODE_LABEL[mode]:12} c={connections:<3} users={users:<3} "
            f"{run.rps:8,.0f} req/s  p50 {run.p50_ms:7.3f} ms  p99 {run.p99_ms:7.3f} ms"
            + (
                f"  CPU {run.cpu_ms_per_request('gateway'):.3f} ms/req"
                f"  2xx {run.ok} rows {run.rows}"
                if target in GATEWAYS
                else ""
            )
            + (
                f"  LiteLLM CPU {run.cpu_ms_per_request('litellm'):.3f} ms/req"
                if through_litellm
                else ""
            )
            + (f"  NON-2xx {run.non_2xx}" if run.non_2xx else "")
            + (f"  socket errors {run.socket_errors}" if run.socket_errors else "")
        )
        return run

    async def litellm_idle(self, timeout_s: float = 5.0) -> None:
        """Wait until LiteLLM has finished the requests wrk dropped in flight when its timer ran
        out (about one per connection, each tens of ms of LiteLLM's CPU), so they do not run
        into the next measurement. (A gateway's are waited for by `settled`.)"""
        if self.servers.litellm is None:
            return
        root = self.servers.litellm.pid
        deadline, last = time.monotonic() + timeout_s, cpu_by_name((), [root])[1][root]
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now = cpu_by_name((), [root])[1][root]
            if now - last < 0.02:  # under 10% of a core: idle
                return
            last = now

    async def settled(self, timeout_s: float = 20.0) -> None:
        """Wait until the gateway has settled everything it started (no pending reservation)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pending = await self.db.fetchval(
                "SELECT count(*) FROM reservations WHERE state = 'pending'"
            )
            if pending == 0:
                return
            await asyncio.sleep(0.1)
        log(f"  WARNING: {pending} reservations still pending after {timeout_s} s")
