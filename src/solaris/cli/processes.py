"""The processes a command, a test or the benchmark starts and owns: the dev provider, gateways,
LiteLLM, nginx.

`solaris demo`, the tests and `bench/` all start children, wait until they answer and stop them;
this module is the one way to do it, so a fix to any of those steps reaches all three. Each child
writes its output to a log file, never to a pipe nobody reads; `solaris …` children run with the
parent's interpreter and package (`solaris_command`). The demo puts its children in their own
process group (`own_group`): a Ctrl-C in the terminal then reaches only the parent, which stops
them in order (SIGTERM, so a gateway drains and settles, SIGKILL past a bound) instead of every
process racing to shut down by itself.

Waiting for a child is bounded by what the child reports, not by a guess of wall time: on a busy
machine a starved child may take minutes to import and is still waited for, while one that has
used `ready_cpu_s_max` CPU-seconds (utime + stime of /proc/<pid>/stat) without answering has
failed. A child that exits while awaited fails at once, and one that hangs without using a CPU
meets a generous wall-clock ceiling; each failure shows the end of the child's log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from solaris.errors import SolarisError

__all__ = [
    "POLL_INTERVAL_S",
    "READY_CPU_S_MAX",
    "READY_WALL_S_MAX",
    "STOP_S_MAX",
    "Child",
    "free_port",
    "port_in_use",
    "process_cpu_s",
    "running",
    "solaris_command",
    "start",
    "stop",
    "stop_all",
    "wait_ready",
]

# A `solaris serve` uses ~3 CPU-seconds to start on a small machine; ten times that, unanswered,
# is a child that will not answer.
READY_CPU_S_MAX = 30.0
# For a child that neither answers nor uses a CPU (e.g. stuck connecting somewhere).
READY_WALL_S_MAX = 300.0
STOP_S_MAX = 15.0  # SIGTERM, then SIGKILL: a gateway drains for its shutdown grace meanwhile
PROBE_TIMEOUT_S = 2.0
READY_POLL_S = 0.05
POLL_INTERVAL_S = 0.2  # how often a watcher (the demo) looks at its running children
LOG_TAIL_LINES = 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Loopback only, and never through a proxy named in $http_proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class Child:
    """A started process and how to tell it is ready: `ready_url` answers with `ready_status`
    (None: with any HTTP status) before it has used `ready_cpu_s_max` CPU-seconds."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_url: str
    ready_status: int | None = 200
    ready_cpu_s_max: float = READY_CPU_S_MAX

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def failure(self, what: str) -> SolarisError:
        """An error naming the child and `what` went wrong, with the end of its log."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        lines = text.splitlines()[-LOG_TAIL_LINES:]
        return SolarisError(
            f"the {self.name} {what}; the end of {self.log_path}:\n" + "\n".join(lines)
        )


def solaris_command(*argv: str) -> list[str]:
    """`solaris ARGV…` run by this interpreter, so a child runs the same package as its parent."""
    return [sys.executable, "-m", "solaris", *argv]


def start(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    ready_url: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    own_group: bool = False,
    ready_status: int | None = 200,
    ready_cpu_s_max: float = READY_CPU_S_MAX,
) -> Child:
    """Start `argv` with its output appended to `log_path`, in `env` (the whole environment;
    default this process's), in a process group of its own with `own_group`."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0 if own_group else None,
        )
    return Child(name, process, log_path, ready_url, ready_status, ready_cpu_s_max)


def wait_ready(
    children: Sequence[Child],
    stopped: Callable[[], bool] = lambda: False,
    wall_s_max: float = READY_WALL_S_MAX,
) -> None:
    """Return once every child is ready, or as soon as `stopped()`; raise if a child exits
    first, uses its CPU budget without answering, or `wall_s_max` passes."""
    deadline = time.monotonic() + wall_s_max
    waiting = list(children)
    while waiting and not stopped():
        for child in list(waiting):
            if child.exited():
                raise child.failure(f"exited with {child.process.returncode} while starting")
            if _answers(child.ready_url, child.ready_status):
                waiting.remove(child)
                continue
            # Read after the probe: an answer that came while the budget ran out still counts.
            used_s = process_cpu_s(child.pid)
            if used_s > child.ready_cpu_s_max:
                raise child.failure(
                    f"used {used_s:.1f} CPU-seconds without answering at {child.ready_url} "
                    f"(at most {child.ready_cpu_s_max:g})"
                )
        if waiting and time.monotonic() > deadline:
            child = waiting[0]
            raise child.failure(
                f"was not ready at {child.ready_url} in {wall_s_max:g} s "
                f"(it used {process_cpu_s(child.pid):.1f} CPU-seconds)"
            )
        if waiting:
            time.sleep(READY_POLL_S)


@contextmanager
def running(child: Child, stop_s: float = STOP_S_MAX) -> Iterator[Child]:
    """`child` from the moment it is ready until the block ends, then stopped (`stop`); stopped
    too when it fails to become ready."""
    try:
        wait_ready([child])
        yield child
    finally:
        stop(child.process, stop_s)


def stop(
    process: subprocess.Popen[bytes],
    timeout_s: float = STOP_S_MAX,
    first: signal.Signals = signal.SIGTERM,
) -> None:
    """Send `first` (SIGTERM: a gateway drains and settles), then SIGKILL if the process is still
    there after `timeout_s`. Returns once it has exited and been reaped."""
    if process.poll() is None:
        process.send_signal(first)
    try:
        process.wait(timeout=max(0.0, timeout_s))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_all(children: Sequence[Child], timeout_s: float) -> None:
    """Stop the children one by one, last started first (a gateway drains while its upstream
    still answers), all within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    for child in reversed(children):
        stop(child.process, deadline - time.monotonic())


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds one process has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the name in (…) may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _answers(url: str, status: int | None) -> bool:
    try:
        with _OPENER.open(url, timeout=PROBE_TIMEOUT_S) as response:
            return status is None or bool(response.status == status)
    except urllib.error.HTTPError as error:  # an HTTP answer all the same
        error.close()
        return status is None or error.code == status
    except (urllib.error.URLError, OSError):  # refused, reset, or slow
        return False
