"""Real servers for tests: `solaris …` subprocesses that are ready when their port answers, and
a webhook receiver standing in for the operator's Slack.

Children are started, awaited and stopped by `solaris.cli.processes`, as `solaris demo` and the
benchmark do: a spawned server is waited for as long as it works at starting, not for a guessed
number of seconds, so a busy machine makes the tests slower, not red.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from solaris.cli.processes import free_port, running, solaris_command, start

__all__ = ["Hooks", "free_port", "spawn", "system_events", "wait_for", "webhook_server"]

WAIT_S_DEFAULT = 20.0


@contextmanager
def spawn(
    argv: Sequence[str],
    ready_url: str,
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `solaris ARGV…` in a subprocess, with `env` over this one's environment, from the
    moment `ready_url` answers (with any status) until the block ends."""
    child = start(
        f"`solaris {' '.join(argv)}`",
        solaris_command(*argv),
        log_path,
        ready_url,
        env={**os.environ, **(env or {})},
        ready_status=None,
    )
    with running(child):
        yield child.process


class Hooks:
    """A threaded HTTP server standing in for the operator's webhook (e.g. Slack)."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.requests: list[tuple[str, dict[str, str], bytes]] = []  # with the path and query
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.bodies.append((dict(self.headers), body))
                hooks.requests.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _headers, body in self.bodies]


@contextmanager
def webhook_server() -> Iterator[Hooks]:
    hooks = Hooks()
    thread = threading.Thread(target=hooks.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hooks
    finally:
        hooks.server.shutdown()
        hooks.server.server_close()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S_DEFAULT) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def system_events(hooks: Hooks) -> list[str]:
    """The system events the operator's webhook received, in order."""
    return [event["data"]["event"] for event in hooks.events() if event.get("kind") == "system"]
