"""What starting costs: a CLI call's fixed cost, `import solaris.app`, `solaris serve` until
/healthz answers, and an idle gateway's resident memory (issue #16, "Memory and start-up").

    uv run python bench/startup.py               # SQLite, and PostgreSQL + Redis when they answer

Each wall time is the best of a few tries (the machine is shared: the best is the one least
disturbed), with the median beside it. The gateway's memory is VmRSS of /proc/<pid>/status once
/healthz answers and again after a few streamed chats through the development provider: of the
one process, or with workers (PostgreSQL + Redis: one per core) of the largest worker, which is
what serves (the supervisor's is printed beside it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from common import ADMIN_URL, REDIS_URL, REPO, log, median
from measure import rss_mib
from servers import migrate
from solaris.cli.processes import (
    free_port,
    process_cpu_s,
    running,
    solaris_command,
    start,
    stop,
)

TRIES = 5
CHATS = 5
KEY = "sk-bench-startup"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


def timed(argv: list[str], tries: int = TRIES) -> str:
    """Best and median wall seconds of running `argv` to its end, and its best CPU-seconds."""
    times, cpus = [], []
    for _ in range(tries):
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        subprocess.run(argv, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
    return f"best {min(times):.2f} s, median {median(times):.2f} s wall; {min(cpus):.2f} CPU-s"


def worker_rss_mib(pid: int) -> tuple[float, float | None]:
    """VmRSS of the process serving: `pid` itself, or its largest worker (then the supervisor's
    own is the second value)."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        workers = [int(child) for child in children.read().split()]
    if not workers:
        return rss_mib(pid), None
    return max(rss_mib(worker) for worker in workers), rss_mib(pid)


def serve_once(
    env: dict[str, str], workdir: Path
) -> tuple[float, float, float, float, float | None]:
    """One `solaris serve`: seconds (wall, then CPU) until /healthz answers, the serving
    process's VmRSS then and after a few chats, and the supervisor's (None without workers)."""
    port = free_port()
    env = {**os.environ, **env, "SOLARIS_PORT": str(port)}
    began = time.perf_counter()
    with open(workdir / "gateway.log", "ab") as log_file:
        process = subprocess.Popen(
            solaris_command("serve"), env=env, cwd=REPO, stdout=log_file, stderr=log_file
        )
    try:
        url = f"http://127.0.0.1:{port}"
        while not healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"serve exited; see {workdir / 'gateway.log'}")
            time.sleep(0.01)
        ready_s = time.perf_counter() - began
        ready_cpu_s = process_cpu_s(process.pid)
        started_mib, _ = worker_rss_mib(process.pid)
        for n in range(CHATS):
            chat(url, f"startup-user-{n}")
        return ready_s, ready_cpu_s, started_mib, *worker_rss_mib(process.pid)
    finally:
        stop(process)


def healthy(url: str) -> bool:
    try:
        with OPENER.open(url + "/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def chat(url: str, user: str) -> None:
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {KEY}",
            "X-LibreChat-User-Id": user,
            "Content-Type": "application/json",
        },
    )
    with OPENER.open(request, timeout=30) as answer:
        answer.read()


def serve(name: str, env: dict[str, str], workdir: Path) -> None:
    migrate(env)
    tries = [serve_once(env, workdir) for _ in range(3)]
    ready, cpu = [t[0] for t in tries], [t[1] for t in tries]
    _, _, started, chatted, supervisor = tries[-1]
    whose = "" if supervisor is None else f" (largest worker; supervisor {supervisor:.0f} MiB)"
    print(
        f"solaris serve → /healthz ({name}): best {min(ready):.2f} s, median {median(ready):.2f} s"
        f" wall; {min(cpu):.2f} CPU-s; VmRSS {started:.0f} MiB started, "
        f"{chatted:.0f} MiB after {CHATS} chats{whose}"
    )


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh database for one measurement (None when PostgreSQL does not answer)."""
    name = f"solaris_startup_{secrets.token_hex(3)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError:
        yield None
        return
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    script = Path(sys.executable).with_name("solaris")
    print(f"solaris --help: {timed([str(script), '--help'])}")
    print(f"python -c 'import solaris.app': {timed([sys.executable, '-c', 'import solaris.app'])}")
    workdir = Path(tempfile.mkdtemp(prefix="solaris-startup-"))
    provider_port = free_port()
    provider = start(
        "provider",
        solaris_command("dev-provider", "--port", str(provider_port)),
        workdir / "provider.log",
        f"http://127.0.0.1:{provider_port}/health",
        cwd=REPO,
    )
    common = {
        "SOLARIS_UPSTREAM_BASE_URL": f"http://127.0.0.1:{provider_port}/v1",
        "SOLARIS_LIBRECHAT_KEYS": KEY,
        "SOLARIS_SECRET_KEY": secrets.token_hex(16),
        "SOLARIS_DEFAULT_ALLOWANCE_TOKENS": "1000000",
    }
    with running(provider):
        log(f"logs in {workdir}")
        sqlite = {**common, "SOLARIS_DATABASE_URL": f"sqlite:///{workdir / 'solaris.db'}"}
        serve("SQLite", sqlite, workdir)
        with postgres_database() as url:
            if url is None:
                print("PostgreSQL does not answer: its row is left out")
            else:
                env = {**common, "SOLARIS_DATABASE_URL": url, "SOLARIS_REDIS_URL": REDIS_URL}
                serve("PostgreSQL + Redis", env, workdir)


if __name__ == "__main__":
    main()
