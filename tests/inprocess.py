"""The gateway in this process, for the behaviours that need no process boundary.

`solaris serve`'s own uvicorn server (`cli.server.server_config`) on an event loop in a thread of
the test process, with the real dev provider, database and Redis behind it: the same settings,
parser, streaming and client disconnects as a process, none of the ~3 s a process takes to import
and start. What it leaves out is the process itself (signals, kill -9, its log file, uvloop), so
the tests where that is the point spawn one (`conftest.start_gateway`).

(`httpx.ASGITransport` would skip the socket too, but it reads each answer whole: a stream would
arrive at once and a client could never hang up half-way, which is what Stop is.)
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import uvicorn

from solaris.app import build_app
from solaris.cli.processes import READY_CPU_S_MAX, READY_WALL_S_MAX
from solaris.cli.server import server_config
from solaris.clock import utcnow
from solaris.config import Settings, load_settings
from solaris.ledger.plans import Plans
from solaris.store.database import migrate, open_database

__all__ = ["prepare_database", "serving", "settings_of"]

# As for a child process: the start is bounded by the CPU time the server's thread has used
# (it takes ~1 s here), so a busy machine only makes it slower; the wall-clock ceiling is for
# a thread that hangs without using any.
START_CPU_S, START_WALL_S = READY_CPU_S_MAX, READY_WALL_S_MAX
_ENVIRON = threading.Lock()


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings `solaris serve` reads from `env` (the process environment, parsed alike)."""
    with _ENVIRON:
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def prepare_database(settings: Settings) -> None:
    """What `solaris migrate` does: the schema to the newest revision, the plans from settings."""

    async def run() -> None:
        database = open_database(settings.database_url, pool_size=1)
        try:
            await migrate(database)
            await Plans(database).sync_from_settings(settings, utcnow())
        finally:
            await database.close()

    asyncio.run(run())


@contextmanager
def serving(settings: Settings) -> Iterator[None]:
    """The gateway built from `settings`, served on `settings.port` until the block ends."""
    server = uvicorn.Server(server_config(settings, build_app(settings), loop="asyncio"))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as error:  # start-up failed: say so in the test's thread
            failure.append(error)

    thread = threading.Thread(target=run, name=f"gateway-{settings.port}", daemon=True)
    thread.start()
    assert thread.ident is not None
    cpu_clock = time.pthread_getcpuclockid(thread.ident)
    deadline = time.monotonic() + START_WALL_S
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the gateway did not start: {failure or 'see its log above'}")
        used_s = time.clock_gettime(cpu_clock)
        assert used_s < START_CPU_S, f"the gateway used {used_s:.1f} s of CPU without starting"
        assert time.monotonic() < deadline, f"the gateway did not start in {START_WALL_S} s"
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=settings.shutdown_grace_s + START_WALL_S)
        assert not thread.is_alive(), "the gateway did not stop"
