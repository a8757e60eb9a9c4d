"""`solaris serve --workers N`: N gateway processes on one port, and the supervisor that starts,
replaces and stops them.

A small supervisor of our own rather than uvicorn's (`uvicorn.run(…, workers=N)`), because
uvicorn's starts each worker with multiprocessing's spawn: every worker imports the gateway
again (seconds of CPU each, at every start) from an import string that reads the settings
again, and is killed and restarted when it misses a 5 s pipe health check (as a worker still
importing on a busy machine does); and it waits for stopping workers without a bound. Here the
supervisor checks the database once, binds the socket and forks: a worker starts with the code
loaded and builds everything of its own (database engine, asyncpg pool, Redis, aiohttp session)
in its lifespan, as a single `solaris serve` does, and drains alike on SIGTERM.

One listening socket, bound here and inherited by every worker, rather than one SO_REUSEPORT
socket each: a port already in use fails the start as it does with one process (with
SO_REUSEPORT a stale or second gateway would silently share the port and its traffic), and a
worker that stops leaves no connections queued on a socket nobody will accept from (the kernel
resets those of a closed SO_REUSEPORT socket). Each connection goes to whichever worker accepts
it first, one with time to.

The supervisor handles its signals synchronously (blocked, then `sigwaitinfo`), so no handler
ever interrupts it mid-way; SIGTERM, SIGINT or SIGHUP stop the workers with one SIGTERM each
(they are in a process group of their own, so a Ctrl-C does not reach them twice), and a
worker killed -9 or crashed is replaced. A worker whose start fails (the app's lifespan raised)
stops the gateway: its replacement would fail alike. Workers die with the supervisor
(PR_SET_PDEATHSIG), so no orphan keeps the port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import structlog

from solaris.config import Settings
from solaris.errors import ConfigError
from solaris.observability.metrics import forget_process, share_between_processes

__all__ = ["STARTUP_FAILURE", "supervise", "worker_count"]

log = structlog.get_logger("solaris")

STARTUP_FAILURE = 3  # a worker's exit status when its app did not start (uvicorn's too)
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
WATCHED = STOP_SIGNALS | {signal.SIGCHLD}
PR_SET_PDEATHSIG = 1  # linux/prctl.h
REPLACEMENTS_MAX, REPLACEMENTS_WINDOW_S = 10, 60.0
THREADS_JOIN_S = 5.0

# Serves the gateway with `settings` on `sockets` until SIGTERM; False if it never started.
ServeWorker = Callable[[Settings, list[socket.socket]], bool]


def worker_count(settings: Settings) -> int:
    """SOLARIS_WORKERS, or one per core this process may run on when Redis holds what workers
    must share; without Redis, one. More than one without Redis is refused: the identity cache
    and the rate limits would live in each process (a user allowed the limit once per worker, a
    revoked key still taken by the others until their cache expires)."""
    if settings.workers is None:
        return 1 if settings.redis_url is None else len(os.sched_getaffinity(0))
    if settings.workers > 1 and settings.redis_url is None:
        raise ConfigError(
            f"SOLARIS_WORKERS: {settings.workers} workers need SOLARIS_REDIS_URL (without Redis "
            "the identity cache and rate limits are per process); set it, or serve with one"
        )
    return settings.workers


def supervise(settings: Settings, count: int, serve: ServeWorker, stop_s_max: float) -> int:
    """Serve with `count` workers until a stop signal; the exit status: 0 when every worker
    stopped cleanly within `stop_s_max` of it."""
    assert count > 1, count
    with tempfile.TemporaryDirectory(prefix="solaris-metrics-") as directory:
        share_between_processes(Path(directory))  # a fresh directory per serve, removed after
        _join_threads(THREADS_JOIN_S)
        listener = _bind(settings.host, settings.port)
        try:
            supervisor = _Supervisor(settings, count, serve, listener, stop_s_max)
            return supervisor.run(Path(directory))
        finally:
            listener.close()


def _join_threads(wait_s: float) -> None:
    """A fork copies only the thread that forks: let the others end first (aiosqlite's
    connection thread winds down after the database check has closed it)."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(wait_s)
            if thread.is_alive():
                log.warning("thread_alive_at_fork", thread=thread.name)


def _bind(host: str, port: int) -> socket.socket:
    """The port, bound as uvicorn binds it (workers listen on it as they start)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise ConfigError(f"SOLARIS_PORT: cannot bind {host}:{port}: {error}") from None
    return listener


class _Supervisor:
    def __init__(
        self,
        settings: Settings,
        count: int,
        serve: ServeWorker,
        listener: socket.socket,
        stop_s_max: float,
    ) -> None:
        self.settings = settings
        self.count = count
        self.serve = serve
        self.listener: socket.socket | None = listener
        self.stop_s_max = stop_s_max
        self.workers: dict[int, int] = {}  # pid → index (0 also serves SOLARIS_METRICS_PORT)
        self.stopping = False
        self.deadline: float | None = None  # set by the first stop signal
        self.failed = False
        self.replaced: deque[float] = deque(maxlen=REPLACEMENTS_MAX)  # when, monotonic

    def run(self, metrics_directory: Path) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        log.info("workers_starting", workers=self.count, metrics_directory=str(metrics_directory))
        for index in range(self.count):
            self._fork(index)
        while self.workers:
            caught = self._next_signal()
            if caught is None:
                self._kill_stragglers()
            elif caught.si_signo == signal.SIGCHLD:
                self._reap()
            elif not self.stopping:
                log.info("workers_stopping", signal=signal.Signals(caught.si_signo).name)
                self._stop()
        log.info("workers_stopped", clean=not self.failed)
        return 1 if self.failed else 0

    def _next_signal(self) -> signal.struct_siginfo | None:
        """The next signal; None once the workers have had `stop_s_max` to stop."""
        if self.deadline is None:
            return signal.sigwaitinfo(WATCHED)
        left_s = self.deadline - time.monotonic()
        return signal.sigtimedwait(WATCHED, left_s) if left_s > 0 else None

    def _stop(self) -> None:
        self.stopping = True
        if self.deadline is None:
            self.deadline = time.monotonic() + self.stop_s_max
        # Once every worker has closed its copy too, new connections are refused at once
        # instead of waiting in the queue of a socket nobody accepts from.
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for pid in self.workers:
            os.kill(pid, signal.SIGTERM)

    def _kill_stragglers(self) -> None:
        log.error("workers_killed", worker_pids=sorted(self.workers), after_s=self.stop_s_max)
        self.failed = True
        for pid in self.workers:
            os.kill(pid, signal.SIGKILL)
        self.deadline = None  # then wait for them to be reaped

    def _reap(self) -> None:
        while self.workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            index = self.workers.pop(pid, None)
            if index is None:
                continue  # not a worker
            forget_process(pid)
            code = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
            log.info("worker_exited", worker_pid=pid, index=index, code=code)
            if self.stopping:
                self.failed = self.failed or code != 0
            elif code > 0 or not self._may_replace():
                # It failed by itself (its start, or an error that escaped): another would
                # fail alike. The gateway stops, for its supervisor (Docker, systemd) to see.
                log.error("worker_failed", worker_pid=pid, index=index, code=code)
                self.failed = True
                self._stop()
            else:  # killed (kill -9, the OOM killer), or told to stop: the others served on
                self._fork(index)

    def _may_replace(self) -> bool:
        """At most REPLACEMENTS_MAX replacements a minute: a worker that dies as it starts
        does not make the supervisor fork forever."""
        now = time.monotonic()
        full = len(self.replaced) == REPLACEMENTS_MAX
        if full and now - self.replaced[0] < REPLACEMENTS_WINDOW_S:
            return False
        self.replaced.append(now)
        return True

    def _fork(self, index: int) -> None:
        assert self.listener is not None, "no worker is started once stopping"
        supervisor = os.getpid()
        sys.stdout.flush()  # or the child would write the supervisor's buffered output again
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._work(index, supervisor)  # never returns
        self.workers[pid] = index
        log.info("worker_started", worker_pid=pid, index=index)

    def _work(self, index: int, supervisor: int) -> None:
        """In the forked child: serve, then exit with its status (never return into the
        supervisor's code)."""
        code = 1
        try:
            os.setpgid(0, 0)
            _die_with(supervisor)
            signal.signal(signal.SIGINT, _exit_cleanly)  # as SIGTERM in `serve`
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
            structlog.contextvars.bind_contextvars(pid=os.getpid())  # on each of its log lines
            settings = self.settings
            if index != 0:  # one process serves the metrics port
                settings = settings.model_copy(update={"metrics_port": None})
            assert self.listener is not None
            code = 0 if self.serve(settings, [self.listener]) else STARTUP_FAILURE
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            log.exception("worker_failed", index=index)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _die_with(supervisor: int) -> None:
    """SIGTERM this process when the supervisor dies (even by kill -9): it drains, then exits."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("worker_orphan_guard_failed", errno=ctypes.get_errno())
    if os.getppid() != supervisor:  # it died before the guard was set
        raise SystemExit(0)


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
