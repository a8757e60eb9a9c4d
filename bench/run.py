"""Benchmark: what the SOLARIS gateway adds on top of talking to the provider directly.

    uv run python bench/run.py            # full run (3 rounds, ~12 minutes), writes bench/REPORT.md
    uv run python bench/run.py --quick    # 1 round of short runs, writes bench/REPORT.quick.md
    uv run python bench/run.py --profile  # also a py-spy profile of the gateway (py-spy on PATH
                                          # or --py-spy BIN; e.g. pip install --target /tmp/pyspy)

It starts the dev provider and one gateway (PostgreSQL in a fresh database, Redis, accounting on),
warms both up, then measures every setting with wrk (bench/chat.lua): target ∈ {direct, gateway},
mode ∈ {non-streamed, streamed}, connections ∈ {1, 16, 64}, plus single-user gateway rows (the
hot balance row). When the LiteLLM proxy is installed (`make litellm`) it also starts LiteLLM in
front of the provider and a second gateway in front of LiteLLM, and measures two more targets at 1
and 16 connections: litellm (wrk → LiteLLM → provider) and chain (wrk → gateway → LiteLLM →
provider). Within a round the targets of a setting run back to back, in alternating order; each
number in the report is the median over the rounds. After each gateway or chain run it checks
that the usage rows written for that run match the 2xx responses wrk counted, and at the end that
the ledger balances. Only processes this script started are stopped; its database is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from ledger_paths import PathCost
from ledger_paths import measure as measure_paths
from ledger_paths import table as paths_table

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA = BENCH_DIR / "chat.lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

MODES = ("json", "stream")
TARGETS = ("direct", "gateway", "litellm", "chain")
GATEWAYS = ("gateway", "chain")  # targets answered by a gateway: their usage rows are checked
MODE_LABEL = {"json": "non-streamed", "stream": "streamed"}
CONNECTIONS = (1, 16, 64)
SOLO = (("json", 16), ("json", 64), ("stream", 16))  # single-user gateway settings
LITELLM_CONNECTIONS = (1, 16)  # LiteLLM serves ~40 req/s: 64 connections would only queue
# Report rows: path -> (label, the target it is compared with).
PATHS = {
    "gateway": ("gateway", "direct"),
    "litellm": ("LiteLLM", "direct"),
    "chain": ("gateway → LiteLLM", "litellm"),
}
TARGET_LABEL = {"direct": "direct", "gateway": "gateway", "litellm": "LiteLLM", "chain": "chain"}
USERS = 100
ROUND_LABEL = {0: "profile", -1: "diagnostic 1", -2: "diagnostic 2", -3: "diagnostic 3"}
ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# The LiteLLM proxy from `make litellm` (its own virtualenv, litellm[proxy] pinned in the Makefile),
# started the way tests/test_litellm.py starts it.
LITELLM_DIR = REPO / ".tools" / "litellm"
LITELLM_BIN = LITELLM_DIR / "bin" / "litellm"
LITELLM_READY_TIMEOUT_S = 240.0  # LiteLLM imports for ~20 s on a quiet machine
# Settings of ours LiteLLM would pick up from the environment: a database, provider keys.
LITELLM_AMBIENT = ("DATABASE_URL", "DIRECT_URL", "LITELLM_", "OPENAI_", "ANTHROPIC_", "AZURE_")
FULL_RUN_MINUTES = 8  # what a full run takes without LiteLLM (with it: ~12)
PACKAGES = (
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "sqlalchemy",
    "asyncpg",
    "redis",
    "hiredis",
    "orjson",
    "tiktoken",
    "starlette",
    "structlog",
)
# PERFORMANCE.md, for the analysis.
LITELLM_ADDED_JSON_MS = 25.0
LITELLM_ADDED_STREAM_MS = 60.0
LITELLM_RPS = 40.0
NAIVE_METERING_RPS = 650.0
NAIVE_METERING_ADDED_MS = 1.9
NAIVE_METERING_CPU_MS = 1.2
TARGET_ADDED_P50_MS = 1.0
TARGET_RPS = 1500.0


# ----------------------------------------------------------------------------- small helpers


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Poll `url` until it answers with any HTTP status; fail if the process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{url}: process exited with {process.returncode}; log {log_path}:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout_s} s (log {log_path})")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


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


def append(path: Path, text: str) -> None:
    with open(path, "a") as out:
        out.write(text)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN: no data


# ----------------------------------------------------------------------------- prerequisites


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: apt-get install -y wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("wrk is not installed: run `apt-get install -y wrk` (Debian package), then retry.")


def ensure_services(admin_url: str, redis_url: str) -> None:
    """Start PostgreSQL / Redis as /work/shared/SERVICES.md says, if they are down and we can."""
    import redis

    def postgres_up() -> bool:
        async def probe() -> None:
            connection = await asyncpg.connect(admin_url, timeout=3)
            await connection.close()

        try:
            asyncio.run(probe())
            return True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False

    def redis_up() -> bool:
        try:
            return bool(redis.Redis.from_url(redis_url, socket_timeout=2).ping())
        except (redis.RedisError, OSError):
            return False

    root = os.geteuid() == 0
    if not postgres_up():
        clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if root and clusters:
            log("PostgreSQL is down: starting it")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "start"],
                check=False,
            )
            time.sleep(2)
        if not postgres_up():
            sys.exit(f"PostgreSQL is not reachable at {admin_url} (see /work/shared/SERVICES.md)")
    if not redis_up():
        if root and shutil.which("redis-server"):
            log("Redis is down: starting it")
            os.makedirs("/var/lib/redis", exist_ok=True)
            os.makedirs("/var/log/redis", exist_ok=True)
            subprocess.run(
                "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
                "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
                shell=True,
                check=False,
            )
            time.sleep(1)
        if not redis_up():
            sys.exit(f"Redis is not reachable at {redis_url} (see /work/shared/SERVICES.md)")


# ----------------------------------------------------------------------------- servers


@dataclass
class Servers:
    provider: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    provider_port: int
    gateway_port: int
    commands: list[str]
    # With LiteLLM: the proxy in front of the provider, and the chain's gateway in front of it.
    litellm: subprocess.Popen[bytes] | None = None
    litellm_port: int = 0
    litellm_key: str = ""
    chain: subprocess.Popen[bytes] | None = None
    chain_port: int = 0

    def port(self, target: str) -> int:
        return {
            "direct": self.provider_port,
            "gateway": self.gateway_port,
            "litellm": self.litellm_port,
            "chain": self.chain_port,
        }[target]

    def gateway_of(self, target: str) -> subprocess.Popen[bytes]:
        """The gateway that answers `target` (the first one for targets without a gateway)."""
        return self.chain if target == "chain" and self.chain is not None else self.gateway


def start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "solaris", *argv],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def litellm_config(provider_url: str, master_key: str) -> dict[str, Any]:
    """tests/test_litellm.py's configuration: one model, no database, a master key."""
    return {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": provider_url,
                    "api_key": "sk-dev-provider",
                },
            }
        ],
        "general_settings": {"master_key": master_key},
    }


def start_litellm(config: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LITELLM_AMBIENT)}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch the price list: no network here
    argv = [str(LITELLM_BIN), "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", "1"]
    with open(log_path, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def litellm_version() -> str:
    found = sorted(LITELLM_DIR.glob("lib/python*/site-packages/litellm-*.dist-info"))
    return found[-1].name.removesuffix(".dist-info").split("-", 1)[1] if found else "unknown"


def shown_env(env: dict[str, str]) -> str:
    return " ".join(
        f"{k}={'<random>' if k == 'SOLARIS_SECRET_KEY' else v}" for k, v in sorted(env.items())
    )


@contextlib.contextmanager
def servers(
    gateway_env: dict[str, str], workdir: Path, with_litellm: bool = False
) -> Iterator[Servers]:
    """The dev provider and a gateway in front of it; with `with_litellm`, also the LiteLLM proxy
    in front of the provider and a second gateway (same database and Redis) in front of LiteLLM."""
    provider_port, gateway_port = free_port(), free_port()
    env = {**gateway_env, "SOLARIS_UPSTREAM_BASE_URL": f"http://127.0.0.1:{provider_port}/v1"}
    env["SOLARIS_PORT"] = str(gateway_port)
    shown = shown_env(env)
    commands = [
        f"uv run solaris dev-provider --port {provider_port}",
        f"{shown} uv run solaris migrate",
        f"{shown} uv run solaris serve",
    ]
    migrate = subprocess.run(
        [sys.executable, "-m", "solaris", "migrate"],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"solaris migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
    provider_log, gateway_log = workdir / "provider.log", workdir / "gateway.log"
    provider = start(["dev-provider", "--port", str(provider_port)], {}, provider_log)
    gateway: subprocess.Popen[bytes] | None = None
    litellm: subprocess.Popen[bytes] | None = None
    chain: subprocess.Popen[bytes] | None = None
    try:
        wait_http(f"http://127.0.0.1:{provider_port}/health", provider, provider_log, 30)
        if with_litellm:  # started first: it takes a while to import
            litellm_port, litellm_key = free_port(), "sk-bench-litellm-" + secrets.token_hex(8)
            config = workdir / "litellm-config.yaml"
            provider_url = f"http://127.0.0.1:{provider_port}/v1"
            config.write_text(json.dumps(litellm_config(provider_url, litellm_key), indent=2))
            litellm_log = workdir / "litellm.log"
            log(f"starting LiteLLM {litellm_version()} (log {litellm_log})")
            litellm = start_litellm(config, litellm_port, litellm_log)
        gateway = start(["serve"], env, gateway_log)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway, gateway_log, 60)
        srv = Servers(provider, gateway, provider_port, gateway_port, commands)
        if litellm is not None:
            live = f"http://127.0.0.1:{litellm_port}/health/liveliness"
            wait_http(live, litellm, litellm_log, LITELLM_READY_TIMEOUT_S)
            chain_port = free_port()
            chain_env = {
                **env,
                "SOLARIS_UPSTREAM_BASE_URL": f"http://127.0.0.1:{litellm_port}/v1",
                "SOLARIS_UPSTREAM_API_KEY": litellm_key,
                "SOLARIS_PORT": str(chain_port),
            }
            chain_log = workdir / "chain-gateway.log"
            chain = start(["serve"], chain_env, chain_log)
            wait_http(f"http://127.0.0.1:{chain_port}/healthz", chain, chain_log, 60)
            srv.litellm, srv.litellm_port, srv.litellm_key = litellm, litellm_port, litellm_key
            srv.chain, srv.chain_port = chain, chain_port
            commands += [
                "# LiteLLM (tests/test_litellm.py's config: gpt-4o-mini → openai/gpt-4o-mini at "
                "the provider, master key, no database):",
                f"LITELLM_LOCAL_MODEL_COST_MAP=True .tools/litellm/bin/litellm --config "
                f"litellm-config.yaml --host 127.0.0.1 --port {litellm_port} --num_workers 1",
                "# the chain's gateway (same database and Redis), in front of LiteLLM:",
                f"{shown_env(chain_env).replace(litellm_key, '<master key>')} uv run solaris serve",
            ]
        yield srv
    finally:
        for process in (chain, gateway, litellm):
            if process is not None:
                stop(process)
        stop(provider)


# ----------------------------------------------------------------------------- wrk


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

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.servers.port(target)}/v1/chat/completions"

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
        self, target: str, mode: str, connections: int, users: int, seconds: float, tag: str
    ) -> tuple[dict[str, Any], dict[str, float]]:
        env = {
            **os.environ,
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
            self.url(target),
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
            f"\n=== {tag} {target} {mode} c={connections} users={users}\n{text}",
        )
        line = next((ln for ln in text.splitlines() if ln.startswith("BENCH ")), None)
        if process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
        cpu = {k: after[k] - before[k] for k in after}
        ours = sum(v for k, v in cpu.items() if k not in ("machine", "gateway_wait"))
        cpu["other"] = max(0.0, cpu.pop("machine") - ours)  # jobs this script did not start
        return json.loads(line[6:]), cpu

    async def measure(
        self, target: str, mode: str, connections: int, users: int, seconds: float, rnd: int
    ) -> Run:
        self.counter += 1
        tag = f"run{self.counter:03d}-{target}-{mode}-c{connections}-u{users}"
        data, cpu = await self.wrk_run(target, mode, connections, users, seconds, tag)
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
            f"  {target:7} {MODE_LABEL[mode]:12} c={connections:<3} users={users:<3} "
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


# ----------------------------------------------------------------------------- profile


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
    write()/read() family is a socket system call, counted separately within its area.
    """
    areas: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    area_syscalls: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = syscalls = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
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


# ----------------------------------------------------------------------------- report


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
        if run.round > 0:
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
            f"| {ROUND_LABEL.get(r.round, r.round)}{' ' + r.note if r.note else ''} | {r.target} | {MODE_LABEL[r.mode]} | {r.connections} "
            f"| {r.users} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p90_ms:.3f} | {r.p99_ms:.3f} "
            f"| {r.non_2xx} | {r.socket_errors} | {cpu} | {r.cpu['other'] / r.duration_s:.2f} "
            f"| {r.ok if r.target in GATEWAYS else ''} "
            f"| {r.rows if r.rows is not None else ''} |"
        )
    return head + "\n".join(lines)


@dataclass
class Accounting:
    measured_2xx: int
    measured_rows: int
    in_flight_allowance: int
    short_runs: list[str]  # runs with fewer rows than 2xx: lost usage
    extra_runs: list[str]  # more rows than 2xx + connections: unexplained
    status: dict[str, int]
    totals: dict[str, int]
    settle_problems: int
    non_2xx: int

    @property
    def passed(self) -> bool:
        t = self.totals
        return (
            not self.short_runs
            and not self.extra_runs
            and t["pending"] == 0
            and t["unbalanced_accounts"] == 0
            and t["usage_rows"] == t["settled_reservations"]
            and self.settle_problems == 0
        )


async def check_accounting(bench: Bench, runs: list[Run]) -> Accounting:
    await bench.settled()
    gateway_runs = [r for r in runs if r.target in GATEWAYS]
    short, extra = [], []
    status: Counter[str] = Counter()
    for r in gateway_runs:
        rows = r.rows or 0
        status.update(r.row_status)
        label = f"round {r.round} {r.target} {MODE_LABEL[r.mode]} c={r.connections} users={r.users}"
        if rows < r.ok:
            short.append(f"{label}: {r.ok} 2xx but {rows} usage rows")
        elif rows > r.ok + r.connections + r.non_2xx:
            extra.append(f"{label}: {r.ok} 2xx but {rows} usage rows")
    db = bench.db
    totals = {
        "usage_rows": int(await db.fetchval("SELECT count(*) FROM usage")),
        "reservations": int(await db.fetchval("SELECT count(*) FROM reservations")),
        "settled_reservations": int(
            await db.fetchval("SELECT count(*) FROM reservations WHERE state = 'settled'")
        ),
        "pending": int(
            await db.fetchval("SELECT count(*) FROM reservations WHERE state = 'pending'")
        ),
        "usage_entries": int(
            await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'usage'")
        ),
        "users": int(await db.fetchval("SELECT count(*) FROM users")),
        "unbalanced_accounts": int(
            await db.fetchval(
                """SELECT count(*) FROM accounts a
                   WHERE a.reserved <> 0 OR a.balance <> (
                       SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e
                       WHERE e.user_id = a.user_id)"""
            )
        ),
    }
    problems = 0
    for name in ("gateway.log", "chain-gateway.log"):  # the chain's gateway, when it ran
        with contextlib.suppress(FileNotFoundError):
            log_text = (bench.workdir / name).read_text(errors="replace")
            problems += sum(log_text.count(word) for word in ("settle_retry", "settle_failed"))
    return Accounting(
        measured_2xx=sum(r.ok for r in gateway_runs),
        measured_rows=sum(r.rows or 0 for r in gateway_runs),
        in_flight_allowance=sum(r.connections for r in gateway_runs),
        short_runs=short,
        extra_runs=extra,
        status=dict(status),
        totals=totals,
        settle_problems=problems,
        non_2xx=sum(r.non_2xx for r in gateway_runs),
    )


async def database_work(db: Any, name: str, usage_rows: int) -> dict[str, float]:
    row = await db.fetchrow(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched, blks_hit "
        "FROM pg_stat_database WHERE datname = $1",
        name,
    )
    return {k: int(v) / usage_rows for k, v in dict(row).items()} if usage_rows else {}


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
            "`bench/profile-latest.txt` (not committed).",
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


def analysis_text(
    rows: list[Row],
    acc: Accounting,
    work: dict[str, float],
    prof: Profile | None,
    paths: list[PathCost],
    diagnostic: list[Run],
    litellm_skipped: str = "",
) -> str:
    def find(mode: str, connections: int, users: int = USERS) -> Row:
        return find_row(rows, "gateway", mode, connections, users)

    nproc = os.cpu_count() or 2
    j1, s1 = find("json", 1), find("stream", 1)
    through = {
        (r.path, r.mode, r.connections): r for r in rows if r.has_litellm and r.users == USERS
    }
    wanted = [(p, m, c) for p in ("litellm", "chain") for m in MODES for c in LITELLM_CONNECTIONS]
    measured = all(k in through and through[k].runs and through[k].base for k in wanted)
    j16, j64 = find("json", 16), find("json", 64)
    s16, s64 = find("stream", 16), find("stream", 64)
    best = max((j16, j64), key=lambda r: r.med(r.runs, "rps"))
    best_json = best.med(best.runs, "rps")
    best_stream = max(s16.med(s16.runs, "rps"), s64.med(s64.runs, "rps"))
    solo16, solo64 = find("json", 16, 1), find("json", 64, 1)
    gw_cpu, pg_cpu = best.cpu("gateway"), best.cpu("postgres")
    gw_cpu_1 = j1.cpu("gateway")
    direct16 = j16.med(j16.base, "rps")
    by_key = {p.key: p for p in paths}
    functions = "functions" in by_key
    cores = {w: best.cores(w) for w in ("gateway", "provider", "postgres", "redis", "wrk", "other")}
    busy = sum(cores.values())
    loop_busy = cores["gateway"] + best.cores("gateway_wait")  # running or runnable
    if loop_busy >= 0.85:
        verdict = (
            f"the gateway's event loop was running or waiting for a CPU {loop_busy:.0%} of the "
            "time, so the single gateway process is the bottleneck"
            + (
                f" on a machine with {busy:.2f} of {nproc} cores busy"
                if busy >= 0.9 * nproc
                else ""
            )
        )
    elif busy >= 0.9 * nproc:
        verdict = (
            f"the machine was saturated ({busy:.2f} of {nproc} cores busy), so this throughput is "
            "what the whole stack gets from 2 shared cores, not the gateway's own ceiling"
        )
    else:
        verdict = (
            f"neither the gateway's event loop (running or waiting for a CPU {loop_busy:.0%} of "
            f"the time) nor the machine ({busy:.2f} of {nproc} cores) was saturated: requests "
            "were waiting on something else (row locks, the connection pool, WAL flushes)"
        )
    bullets = [
        f"**Added latency, idle gateway (1 connection):** {j1.added_p50:.2f} ms at p50 "
        f"non-streamed ({j1.added_p99:.2f} ms at p99) and {s1.added_p50:.2f} ms streamed. "
        f"Target < {TARGET_ADDED_P50_MS:g} ms non-streamed: "
        + ("**met**." if j1.added_p50 < TARGET_ADDED_P50_MS else "**not met**.")
        + f" Per request at 1 connection the gateway ran {gw_cpu_1:.2f} ms on a CPU and waited "
        f"{j1.cpu('gateway_wait'):.2f} ms for one (other jobs used "
        f"{j1.cores('other'):.2f} cores meanwhile); the rest is waiting on PostgreSQL (two "
        "commits, each a WAL flush) and the provider."
        + (
            f" For comparison: LiteLLM alone adds {through['litellm', 'json', 1].added_p50:.2f} ms "
            f"non-streamed / {through['litellm', 'stream', 1].added_p50:.2f} ms streamed here "
            f"(PERFORMANCE.md: {LITELLM_ADDED_JSON_MS:g} / {LITELLM_ADDED_STREAM_MS:g} ms), the "
            f"naive metering proxy of PERFORMANCE.md {NAIVE_METERING_ADDED_MS:g} ms."
            if measured
            else f" For comparison (PERFORMANCE.md): LiteLLM adds {LITELLM_ADDED_JSON_MS:g} ms "
            f"non-streamed / {LITELLM_ADDED_STREAM_MS:g} ms streamed, the naive metering proxy "
            f"{NAIVE_METERING_ADDED_MS:g} ms."
        ),
        f"**Throughput with accounting on:** {best_json:,.0f} req/s non-streamed and "
        f"{best_stream:,.0f} req/s streamed (best of 16/64 connections, one gateway worker). "
        f"Target > {TARGET_RPS:,.0f} req/s: "
        + ("**met**." if best_json >= TARGET_RPS else "**not met**.")
        + " For comparison: LiteLLM tops out near "
        + (
            f"{through['litellm', 'json', 16].med(through['litellm', 'json', 16].runs, 'rps'):,.0f}"
            " req/s with one worker here (16 connections; PERFORMANCE.md: "
            f"{LITELLM_RPS:g})"
            if measured
            else f"{LITELLM_RPS:g} req/s per worker (PERFORMANCE.md)"
        )
        + f", the naive metering proxy in PERFORMANCE.md at ~{NAIVE_METERING_RPS:g} req/s, and "
        f"the provider alone answers {direct16:,.0f} req/s here.",
        f"**CPU per request:** at {best.connections} connections the gateway process used "
        f"{gw_cpu:.2f} ms of CPU per non-streamed request ({gw_cpu_1:.2f} ms at 1 connection, "
        f"where nothing is batched) and PostgreSQL {pg_cpu:.2f} ms; PERFORMANCE.md's naive "
        f"metering proxy used {NAIVE_METERING_CPU_MS:g} ms + ~1 ms. During those runs the "
        f"gateway used {cores['gateway']:.2f} cores, PostgreSQL {cores['postgres']:.2f}, the "
        f"provider {cores['provider']:.2f}, wrk {cores['wrk']:.2f} and other jobs "
        f"{cores['other']:.2f}: {verdict}. At {gw_cpu:.2f} ms/request one worker with a core "
        f"to itself would top out near {1000 / gw_cpu if gw_cpu else float('nan'):,.0f} req/s.",
        f"**Latency under load is queueing:** wrk is a closed loop, so p50 is about connections "
        f"divided by throughput. At 16 connections the gateway's p50 is "
        f"{j16.med(j16.runs, 'p50_ms'):.1f} ms vs {j16.med(j16.base, 'p50_ms'):.2f} ms "
        f"direct (at 64: {j64.med(j64.runs, 'p50_ms'):.1f} vs "
        f"{j64.med(j64.base, 'p50_ms'):.1f} ms): the added latency under load is the "
        "throughput gap, not per-request work.",
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
        "above shows what that costs).",
    ]
    if measured:
        l1, ls1 = through["litellm", "json", 1], through["litellm", "stream", 1]
        c1, cs1 = through["chain", "json", 1], through["chain", "stream", 1]
        l16, ls16 = through["litellm", "json", 16], through["litellm", "stream", 16]
        c16, cs16 = through["chain", "json", 16], through["chain", "stream", 16]
        chain_added = l1.added_p50 + c1.added_p50
        share = c1.added_p50 / chain_added if chain_added > 0 else float("nan")
        l_rps, ls_rps, c_rps, cs_rps = (r.med(r.runs, "rps") for r in (l16, ls16, c16, cs16))
        bullets.insert(
            2,
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
            f"chain's gateway {c16.cpu('gateway'):.2f} ms, on the same {nproc} cores.",
        )
    else:
        bullets.insert(
            2,
            "**The full chain (gateway → LiteLLM → provider):** not measured in this run ("
            + (litellm_skipped or "no LiteLLM runs")
            + "), so the LiteLLM numbers above come from PERFORMANCE.md.",
        )
    if work:
        path = (
            "Reserve and settle are one round trip each (`SELECT solaris_reserve(...)` / "
            "`SELECT solaris_settle(...)`, the PL/pgSQL functions of migration 0002), each its "
            "own transaction."
            if functions
            else "Reserve sends BEGIN, `SELECT ... FOR UPDATE`, `UPDATE accounts`, `INSERT "
            "reservations`, COMMIT; settle sends BEGIN, `INSERT usage`, `UPDATE reservations`, "
            "`INSERT ledger_entries`, `UPDATE accounts`, COMMIT: 11 round trips."
        )
        bullets.append(
            f"**Database work:** {work.get('xact_commit', 0):.2f} committed transactions (each a "
            f"WAL flush), {work.get('tup_inserted', 0):.2f} rows inserted and "
            f"{work.get('tup_updated', 0):.2f} updated per request. {path}"
        )
    if {"sqlalchemy", "raw", "cte"} <= by_key.keys():
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
        if functions:
            d = by_key["functions"]
            text += (
                f" The gateway's PostgreSQL path (SQL functions) costs {d.cpu_ms:.2f} ms CPU "
                f"({d.wall_ms:.2f} ms wall) of the {gw_cpu_1:.2f} ms of CPU the gateway spends "
                "per request at 1 connection. These timings run after the main rounds and are as "
                "noisy as the machine: the PostgreSQL server and its WAL are shared with other "
                "jobs' databases."
            )
        else:
            text += (
                f" The gateway spends {gw_cpu_1:.2f} ms of CPU per request at 1 connection in "
                "all, most of it in the first path."
            )
        bullets.append(text)
    diag = diagnostic_summary(diagnostic)
    keys = [(1, USERS, "on"), (1, USERS, "off"), (16, 1, "on"), (16, 1, "off")]
    if all(k in diag for k in keys):
        idle_on, idle_off, hot_on, hot_off = (diag[k] for k in keys)
        bullets.append(
            "**What durable commits cost:** "
            + f"with synchronous_commit off (diagnostic above) the 1-connection p50 was "
            f"{idle_off['p50']:.2f} ms instead of {idle_on['p50']:.2f} ms, and one user at 16 "
            f"connections got {hot_off['rps']:,.0f} instead of {hot_on['rps']:,.0f} req/s. "
            "Each request waits for two WAL flushes (the reservation's commit, then the "
            "settlement's, which the answer waits for), and a user's account row stays locked "
            "until its flush is done."
        )
    if prof is not None and prof.summary.by_function:
        outside = max(1e-9, 100 - prof.summary.syscalls)
        cpu_areas = sorted(
            ((name, 100 * (share - sys_) / outside) for name, share, sys_ in prof.summary.by_area),
            key=lambda item: -item[1],
        )
        top_areas = ", ".join(f"{name} {share:.0f}%" for name, share in cpu_areas[:5])
        top_functions = ", ".join(
            f"`{name.split(' (')[0]}` {share:.0f}%" for name, share in prof.summary.by_function[:5]
        )
        bullets.append(
            f"**Profile (16 connections, non-streamed):** {prof.summary.syscalls:.0f}% of the "
            "samples are the gateway inside socket write()/read(), mostly preempted after waking "
            "PostgreSQL, the provider or wrk (see the profile section). Of the rest: "
            f"{top_areas}; by gateway function: {top_functions}."
        )
    bullets.append(
        "**Accounting:** "
        + (
            "no usage row was lost: every 2xx response has its usage row, balances equal their "
            "ledger entries and no reservation is left pending."
            if acc.passed
            else "**the check failed** (see above): that is a gateway bug, not a benchmark artefact."
        )
    )
    bullets.append(
        f"**Noise:** jobs this script did not start used a median "
        f"{median([row.cores('other') for row in rows]):.2f} of the {nproc} cores during the "
        "gateway runs ('other jobs' column above; per run in the raw table, next to the spread "
        "between rounds). Gateway vs direct within one report is more reliable than absolute "
        "numbers across reports."
    )
    return "\n".join(f"- {b}" for b in bullets)


# ----------------------------------------------------------------------------- diagnostic


async def wal_diagnostic(
    admin: Any,
    db_name: str,
    env: dict[str, str],
    workdir: Path,
    args: argparse.Namespace,
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
                    bench = Bench(
                        wrk=args.wrk,
                        servers=srv,
                        db=db,
                        user_prefix=f"bench-{run_id}-u",
                        solo_prefix=f"bench-{run_id}-solo-",
                        key=key,
                        workdir=workdir,
                        counter=800 + 10 * rnd + 5 * (sync == "off"),
                    )
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


# ----------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    wrk, admin_url, redis_url = args.wrk, ADMIN_URL, REDIS_URL
    import redis

    redis_version = str(redis.Redis.from_url(redis_url).info("server")["redis_version"])
    run_id = secrets.token_hex(3)
    db_name = f"solaris_bench_{run_id}"
    workdir = Path(tempfile.mkdtemp(prefix=f"solaris-bench-{run_id}-"))
    log(f"logs in {workdir}; database {db_name}")
    admin = await asyncpg.connect(admin_url)
    pg_version = str(await admin.fetchval("SHOW server_version"))
    pg_settings = ", ".join(
        [
            f"{name}={await admin.fetchval(f'SHOW {name}')}"
            for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        ]
    )
    pg_version += f" ({pg_settings})"
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    db_url = admin_url.rsplit("/", 1)[0] + "/" + db_name
    key = "sk-bench-" + secrets.token_hex(8)
    env = {
        "SOLARIS_DATABASE_URL": db_url,
        "SOLARIS_REDIS_URL": redis_url,
        "SOLARIS_LIBRECHAT_KEYS": key,
        "SOLARIS_SECRET_KEY": secrets.token_hex(16),
        "SOLARIS_DEFAULT_ALLOWANCE_TOKENS": "10000000000",
    }
    started = time.monotonic()
    runs: list[Run] = []
    try:
        with servers(env, workdir, with_litellm=not args.litellm_skipped) as srv:
            db = await asyncpg.connect(db_url)
            bench = Bench(
                wrk=wrk,
                servers=srv,
                db=db,
                # Unique per run: the gateway's Redis identity cache maps external ids to user ids
                # and is shared by every gateway on this Redis.
                user_prefix=f"bench-{run_id}-u",
                solo_prefix=f"bench-{run_id}-solo-",
                key=key,
                workdir=workdir,
            )
            targets = TARGETS if srv.litellm is not None else ("direct", "gateway")
            log(f"warming up ({args.warmup:g} s per target and mode)")
            for target in targets:
                for mode in MODES:
                    await bench.wrk_run(target, mode, 16, USERS, args.warmup, "warmup")
            await bench.wrk_run("gateway", "json", 4, 1, 1, "warmup")
            await bench.settled()
            settings = [(m, c, USERS) for m in MODES for c in CONNECTIONS]
            for rnd in range(1, args.rounds + 1):
                log(f"round {rnd}/{args.rounds}")
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
                            await bench.measure(
                                target, mode, connections, users, args.duration, rnd
                            )
                        )
                for mode, connections in SOLO:
                    runs.append(
                        await bench.measure("gateway", mode, connections, 1, args.duration, rnd)
                    )
            prof = None
            if args.profile:
                py_spy = args.py_spy or shutil.which("py-spy")
                if py_spy:
                    profiled = await profile(bench, py_spy, args.profile_seconds)
                    if profiled is not None:
                        prof, profile_run = profiled
                        runs.append(profile_run)
                else:
                    log("no py-spy: pip install --target /tmp/pyspy py-spy, then --py-spy BIN")
            rss = rss_mib(srv.gateway.pid)
            accounting = await check_accounting(bench, [*runs, *bench.extra_runs])
            port = srv.gateway_port
            commands = [
                *srv.commands,
                "# each measurement (direct: the provider's port instead of the gateway's):",
                "BENCH_STREAM=0|1 BENCH_USERS=100|1 BENCH_USER_PREFIX=<per run> "
                "BENCH_KEY=<service key> BENCH_TAG=<run tag> \\\n"
                f"  wrk -t1 -c1|16|64 -d{args.duration:g}s --timeout 10s --latency "
                f"-s bench/chat.lua http://127.0.0.1:{port}/v1/chat/completions",
            ]
            if srv.litellm is not None:
                commands.append(
                    f"# litellm: port {srv.litellm_port} and BENCH_KEY=<master key>; chain: port "
                    f"{srv.chain_port} (the chain's gateway); both with -c1|16 only"
                )
            if prof is not None:
                commands.append(prof.command.replace(str(srv.gateway.pid), "<gateway pid>"))
        # The gateway has exited: its connections' statistics are flushed.
        await asyncio.sleep(0.6)
        work = await database_work(db, db_name, accounting.totals["usage_rows"])
        await db.close()
        log("timing the ledger paths (bench/ledger_paths.py)")
        paths = await measure_paths(db_url, 150 if args.quick else 400)
        diagnostic: list[Run] = []
        if args.wal_diagnostic:
            diagnostic = await wal_diagnostic(admin, db_name, env, workdir, args, key, run_id)
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
    elapsed = time.monotonic() - started

    rows = build_rows(runs)
    print()
    print(results_table(rows))
    print()
    print(accounting_text(accounting))
    litellm = f"{litellm_version()} (`.tools/litellm`)" if LITELLM_BIN.exists() else "not installed"
    machine = machine_info(pg_version, redis_version, wrk, litellm)
    report = REPORT.format(
        date=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        kind="quick run: 1 round of short runs, for a smoke test only"
        if args.quick
        else "full run",
        rounds=args.rounds,
        seconds=args.duration,
        minutes=elapsed / 60
        if not args.quick
        else FULL_RUN_MINUTES + (0 if args.litellm_skipped else 4),
        machine="\n".join(f"| {k} | {v} |" for k, v in machine.items()),
        users=USERS,
        warmup=args.warmup,
        args=" --quick" if args.quick else (" --profile" if args.profile else ""),
        commands="\n".join(commands),
        results=results_table(rows),
        results_note=results_note(args.litellm_skipped),
        litellm=litellm_text(args.litellm_skipped),
        cores=cores_table(rows),
        rss=rss,
        nproc=os.cpu_count(),
        accounting=accounting_text(accounting),
        dbwork=dbwork_text(work),
        profile=profile_text(prof),
        paths=paths_table(paths),
        diagnostic=diagnostic_text(diagnostic),
        analysis=analysis_text(
            rows, accounting, work, prof, paths, diagnostic, args.litellm_skipped
        ),
        raw=raw_table([*runs, *diagnostic]),
    )
    args.report.write_text(report)
    (args.report.with_suffix(".json")).write_text(
        json.dumps(
            {"machine": machine, "runs": [asdict(r) for r in [*runs, *diagnostic]]}, indent=1
        )
    )
    log(f"wrote {args.report} in {elapsed / 60:.1f} minutes; logs in {workdir}")
    return 0 if accounting.passed else 1


def main() -> None:
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
        "--no-wal-diagnostic",
        dest="wal_diagnostic",
        action="store_false",
        help="skip the synchronous_commit=off diagnostic runs",
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 7.0)
    args.diagnostic_rounds = args.diagnostic_rounds or (1 if args.quick else 2)
    args.warmup = args.warmup or (1.0 if args.quick else 3.0)
    args.profile_seconds = args.profile_seconds or (5.0 if args.quick else 15.0)
    args.report = args.report or BENCH_DIR / ("REPORT.quick.md" if args.quick else "REPORT.md")
    args.litellm_skipped = ""  # why the litellm and chain targets are not measured, if they aren't
    if not args.litellm:
        args.litellm_skipped = "skipped with `--no-litellm`"
    elif not LITELLM_BIN.exists():
        where = LITELLM_BIN.relative_to(REPO)
        args.litellm_skipped = (
            f"the LiteLLM proxy is not installed (`{where}` is missing; `make litellm` installs "
            "it, and the next run measures these rows)"
        )
        log(
            f"{where} is missing: the litellm and chain (gateway → LiteLLM) targets are skipped. "
            "Install LiteLLM with `make litellm` (litellm[proxy] in its own virtualenv, "
            ".tools/litellm), then re-run to measure them."
        )
    args.wrk = ensure_wrk()
    ensure_services(ADMIN_URL, REDIS_URL)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
