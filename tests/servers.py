"""Real servers for tests: free ports, subprocesses that are ready when their port answers, and a
webhook receiver standing in for the operator's Slack."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 20.0
WAIT_S_DEFAULT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    require_ok: bool = False,
) -> None:
    """Poll `url` until it answers (with 200 when `require_ok`); fail if the process dies first,
    showing the end of its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            if log_path is not None:
                output = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
            else:
                output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200 or not require_ok:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


@contextmanager
def spawn(
    argv: Sequence[str],
    ready_url: str,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` (a `solaris …` command) in a subprocess until the block ends."""
    full_env = {**os.environ, **(env or {})}
    stdout = open(log_path, "wb") if log_path else subprocess.PIPE  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "solaris", *argv],
        env=full_env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(ready_url, process, log_path)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log_path:
            stdout.close()  # type: ignore[union-attr]


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
