"""Scale-out: two gateway processes behind nginx, sharing PostgreSQL and Redis.

nginx (Debian's package; `make services` installs it when missing and run as root) runs as a
child process with a config generated in the test's tmp directory, listening on a free loopback
port, its upstream the two gateways. Its proxy settings are those of deploy/nginx.conf, with a
static upstream instead of Docker's DNS; it also reports which gateway served each answer
(`X-Upstream-Addr`). Under CI=true a missing nginx fails the module; elsewhere it is skipped.

TODO(issues 3 and 4): once per-user rate limits (issue 3) and exactly-once 80%/100% alerts
(issue 4) exist, add here: a user's RPM/TPM limit holds across both instances behind nginx, and
a threshold crossed under parallel load through both instances alerts exactly once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from solaris.cli.processes import Child, free_port, stop, wait_ready
from solaris.metering.estimate import chat_prompt_tokens
from tests.conftest import (
    SERVICE_KEY,
    SETTLE_WAIT_S,
    Database,
    Gateway,
    gateway_env,
    start_process,
)
from tests.test_balance import COST, MESSAGES, _check_hard_balance, chat

RESERVATION_TIMEOUT_S = 16  # short enough to wait for, long enough for a loaded CI machine
STREAM_SECONDS_MAX = 8  # streams here last ~1 s; below RESERVATION_TIMEOUT_S (the gateway checks)
UPSTREAM_HEADER = "x-upstream-addr"
NGINX_STOP_S = 10.0


def _nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        message = "nginx is not installed: run `make services` as root (apt-get install nginx)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _nginx_config(tmp: Path, port: int, upstreams: list[str]) -> str:
    servers = "\n".join(
        f"        server {addr} max_fails=1 fail_timeout=10s;" for addr in upstreams
    )
    # As root, workers would drop to `nobody`, who cannot enter pytest's 0700 tmp directories.
    user = "user root root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream solaris_gateway {{
{servers}
        keepalive 64;
    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;

        location = /nginx-health {{
            return 200 "ok\\n";
        }}

        location / {{
            proxy_pass http://solaris_gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_connect_timeout 5s;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            add_header X-Upstream-Addr $upstream_addr always;
        }}
    }}
}}
"""


@contextmanager
def run_nginx(upstreams: list[str], tmp: Path) -> Iterator[str]:
    """nginx in the foreground as a child process, balancing `upstreams`; yields its base URL."""
    binary = _nginx_binary()
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = tmp / "nginx.conf"
    config.write_text(_nginx_config(tmp, port, upstreams))
    argv = [binary, "-p", str(tmp), "-c", str(config), "-e", str(tmp / "error.log")]
    with open(tmp / "nginx.out", "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready([Child("nginx", process, tmp / "error.log", url + "/nginx-health", None)])
        yield url
    finally:
        stop(process, NGINX_STOP_S, signal.SIGQUIT)  # graceful: workers finish, then exit


@dataclass
class Pair:
    """Two gateways on one PostgreSQL + Redis, and nginx in front of them."""

    url: str
    gateways: tuple[Gateway, Gateway]

    @staticmethod
    def address(gateway: Gateway) -> str:
        return gateway.url.removeprefix("http://")


@contextmanager
def pair_behind_nginx(env: dict[str, str], tmp: Path) -> Iterator[Pair]:
    with ExitStack() as stack:
        first = stack.enter_context(contextmanager(start_process)(env, tmp))
        second = stack.enter_context(contextmanager(start_process)(env, tmp))
        upstreams = [Pair.address(first), Pair.address(second)]
        url = stack.enter_context(run_nginx(upstreams, tmp / "nginx"))
        yield Pair(url, (first, second))


@pytest.fixture
def shared(postgres_url: str, redis_url: str) -> Database:
    return Database(postgres_url, redis_url)


@dataclass
class Outcome:
    """What the client got for one request."""

    complete: bool  # a 200 whose whole body arrived, ending in `data: [DONE]`
    blocked: bool
    status: int | None
    request_id: str | None
    upstream: str | None  # the gateway that answered last (nginx's $upstream_addr)
    after_kill: bool
    error: str = ""


@dataclass
class Kill:
    """SIGKILL `process` (serving at `address`) once `after_complete` answers arrived whole,
    at the moment one of its own streams is half-way through reaching the client."""

    process: subprocess.Popen[bytes]
    address: str
    after_complete: int
    done: bool = False

    def maybe(self, outcomes: list[Outcome], answered_by: str | None) -> None:
        if self.done or answered_by != self.address:
            return
        if sum(o.complete for o in outcomes) >= self.after_complete:
            self.process.send_signal(signal.SIGKILL)
            self.done = True


async def _load(
    url: str,
    user: str,
    body: dict[str, Any],
    total: int,
    in_flight: int,
    kill: Kill | None = None,
) -> list[Outcome]:
    """`total` requests, `in_flight` at a time, through nginx; `kill` happens once, mid-load."""
    gate = asyncio.Semaphore(in_flight)
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    outcomes: list[Outcome] = []

    async def one(http: httpx.AsyncClient) -> None:
        async with gate:
            after_kill = kill is not None and kill.done
            status: int | None = None
            answer = httpx.Headers()
            parts: list[bytes] = []
            try:
                async with http.stream(
                    "POST", url + "/v1/chat/completions", json=body, headers=headers
                ) as response:
                    status, answer = response.status_code, response.headers
                    async for part in response.aiter_bytes():
                        parts.append(part)
                        if kill is not None:
                            kill.maybe(outcomes, _last(answer))
            except httpx.TransportError as error:
                outcomes.append(
                    Outcome(
                        complete=False,
                        blocked=False,
                        status=status,
                        request_id=answer.get("x-request-id"),
                        upstream=_last(answer),
                        after_kill=after_kill,
                        error=f"{type(error).__name__}: {error}",
                    )
                )
                return
            payload = b"".join(parts).decode()
            blocked = "x-solaris-blocked" in answer
            complete = status == 200 and not blocked and payload.rstrip().endswith("[DONE]")
            outcomes.append(
                Outcome(
                    complete=complete,
                    blocked=blocked,
                    status=status,
                    request_id=answer.get("x-request-id"),
                    upstream=_last(answer),
                    after_kill=after_kill,
                )
            )

    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(one(http) for _ in range(total)))
    return outcomes


def _last(headers: httpx.Headers) -> str | None:
    """The gateway that answered: the last address nginx tried."""
    tried = headers.get(UPSTREAM_HEADER)
    return tried.split(",")[-1].strip() if tried else None


def _rows_covering(
    gateway: Gateway, user: str, request_ids: set[str | None]
) -> list[dict[str, Any]]:
    """The user's usage rows, once they include `request_ids` (bounded wait: settling follows
    the answer by a database round trip)."""
    deadline = time.monotonic() + SETTLE_WAIT_S
    while True:
        rows = gateway.usage_rows(user, settled=False)
        missing = request_ids - {row["request_id"] for row in rows}
        if not missing or time.monotonic() > deadline:
            assert not missing, f"answered in full but never charged: {sorted(map(str, missing))}"
            return rows
        time.sleep(0.05)


def _client(url: str, user: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def test_the_hard_balance_holds_across_two_instances_behind_nginx(
    shared: Database, provider: str, tmp_path: Path
) -> None:
    env = gateway_env(tmp_path, provider, shared)
    with pair_behind_nginx(env, tmp_path) as pair:
        first, second = pair.gateways
        user = "lb-" + uuid.uuid4().hex[:8]
        balance = 20 * COST  # covers about 20 of the 200 requests
        first.fund(user, balance)
        body = chat(True, max_tokens=16, dev_provider={"chunk_delay_s": 0.005})
        outcomes = asyncio.run(_load(pair.url, user, body, total=200, in_flight=32))
        counted = Counter(
            "served" if o.complete else "blocked" if o.blocked else f"other {o.status} {o.error}"
            for o in outcomes
        )
        _check_hard_balance(first, user, balance, counted)
        answered_by = {o.upstream for o in outcomes}
        assert answered_by == {Pair.address(first), Pair.address(second)}, "nginx used both"


def test_killing_one_instance_mid_load_loses_no_usage(
    shared: Database, provider: str, tmp_path: Path
) -> None:
    env = gateway_env(
        tmp_path,
        provider,
        shared,
        SOLARIS_STREAM_SECONDS_MAX=str(STREAM_SECONDS_MAX),
        SOLARIS_RESERVATION_TIMEOUT_S=str(RESERVATION_TIMEOUT_S),
    )
    with pair_behind_nginx(env, tmp_path) as pair:
        victim, survivor = pair.gateways
        assert victim.process is not None
        user = "kill-" + uuid.uuid4().hex[:8]
        total, in_flight = 64, 16
        funded = COST * (total + 100)  # never blocked by the load itself
        survivor.fund(user, funded)
        # Streams of about a second each, so the victim always has some open when it dies.
        body = chat(True, max_tokens=16, dev_provider={"chunk_delay_s": 0.06})
        outcomes = asyncio.run(
            _load(
                pair.url,
                user,
                body,
                total,
                in_flight,
                kill=Kill(victim.process, Pair.address(victim), after_complete=in_flight),
            )
        )
        victim_addr, survivor_addr = Pair.address(victim), Pair.address(survivor)

        assert len(outcomes) == total
        assert not [o for o in outcomes if o.blocked], "the load never exhausts the balance"
        complete = [o for o in outcomes if o.complete]
        failed = [o for o in outcomes if not o.complete]
        # Nothing lost: every answer the client received whole has its usage row. (The gateway
        # settles right after answering; the killed instance's holds never settle, so wait for
        # the rows themselves, not for the user's held tokens to reach zero.)
        rows = _rows_covering(survivor, user, {o.request_id for o in complete})
        # The rest failed at the client, and only requests the killed instance held did.
        assert failed, "the kill cut no request: it did not happen mid-load"
        assert {o.upstream for o in failed} == {victim_addr}, failed
        # Both instances served before the kill; after it, the survivor served every answer.
        assert {o.upstream for o in complete if not o.after_kill} == {victim_addr, survivor_addr}
        served_after = [o for o in complete if o.after_kill]
        assert served_after, "requests went on being served after the kill"
        assert {o.upstream for o in served_after} == {survivor_addr}
        shown = survivor.user_row(user, settled=False)
        assert shown["balance"] == funded - sum(row["billable"] for row in rows)
        assert shown["held"] > 0, "the killed instance's requests still hold their reservations"

        # While those holds stand, spending the rest of the balance blocks the user…
        prompt = chat_prompt_tokens({"model": "gpt-4o-mini", "messages": MESSAGES})
        available = shown["balance"] - shown["held"]
        with _client(pair.url, user) as http:
            spend = http.post(
                "/v1/chat/completions",
                json=chat(
                    False, max_tokens=available - prompt, dev_provider={"reply_tokens": available}
                ),
            )
            assert spend.status_code == 200, spend.text
            blocked = http.post("/v1/chat/completions", json=chat(False, max_tokens=16))
            # The balance is there but held (by the dead instance): "try again", not "buy more".
            assert blocked.status_code == 429
            assert blocked.headers["x-solaris-blocked"] == "balance_held"

            # …until they expire by themselves: then the user is served again.
            deadline = time.monotonic() + RESERVATION_TIMEOUT_S + 15
            while survivor.user_row(user, settled=False)["held"] > 0:
                assert time.monotonic() < deadline, (
                    "the killed instance's reservations never expired"
                )
                time.sleep(0.25)
            served = http.post("/v1/chat/completions", json=chat(False, max_tokens=16))
            assert served.status_code == 200, served.text
            assert "x-solaris-blocked" not in served.headers
