"""The processes a command starts and owns (`solaris demo`'s provider and gateway).

Each child is `sys.executable -m solaris …`, the same interpreter and package as the parent, in
its own process group: a Ctrl-C in the terminal reaches only the parent, which then stops its
children in order (SIGTERM, so the gateway drains and settles, SIGKILL past a bound) instead of
every process racing to shut down by itself. A child is ready when the URL it reports on answers
200; every wait is bounded, and a child that dies while awaited is reported with its log's end.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from solaris.errors import SolarisError

__all__ = ["POLL_INTERVAL_S", "Child", "port_in_use", "start", "stop_all", "wait_ready"]

PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.2
LOG_TAIL_LINES = 20
# Loopback only, and never through a proxy named in $http_proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_url: str

    def exited(self) -> bool:
        return self.process.poll() is not None

    def failure(self, what: str) -> SolarisError:
        """An error naming the child and `what` went wrong, with the end of its log."""
        lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return SolarisError(
            f"the {self.name} {what}; the end of {self.log_path}:\n" + "\n".join(lines)
        )


def start(name: str, argv: Sequence[str], log_path: Path, ready_url: str) -> Child:
    """Start `solaris ARGV…` writing its output to `log_path`."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "solaris", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    return Child(name, process, log_path, ready_url)


def wait_ready(children: Sequence[Child], stopped: Callable[[], bool], timeout_s: float) -> None:
    """Return once every child's URL answers 200, or as soon as `stopped()`; raise if a child
    exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    waiting = list(children)
    while waiting and not stopped():
        for child in list(waiting):
            if child.exited():
                raise child.failure(f"exited with {child.process.returncode} while starting")
            if _answers(child.ready_url):
                waiting.remove(child)
        if waiting and time.monotonic() > deadline:
            raise waiting[0].failure(f"was not ready at {waiting[0].ready_url} in {timeout_s:g} s")
        time.sleep(POLL_INTERVAL_S)


def stop_all(children: Sequence[Child], timeout_s: float) -> None:
    """Stop the children one by one, last started first (the gateway drains while its
    upstream still answers): SIGTERM, then SIGKILL for one still there when `timeout_s` has
    passed. Returns when every child has exited and been reaped."""
    deadline = time.monotonic() + timeout_s
    for child in reversed(children):
        if not child.exited():
            child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _answers(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=PROBE_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):  # refused, 503 while warming up, or slow
        return False
