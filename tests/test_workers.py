"""`solaris serve --workers 2` on PostgreSQL + Redis: parallel requests spread over both workers
are each charged once, /metrics counts every worker's, and SIGTERM to the supervisor lets a
stream in flight finish before every process exits 0.

Which worker served a request is read from its log line (each worker's lines carry its `pid`);
the waits are bounded as `solaris.cli.processes` bounds a starting child, by what the processes
report (log lines, CPU used), not by a guess of how long a busy machine takes.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from solaris.cli.processes import READY_CPU_S_MAX, READY_WALL_S_MAX, STOP_S_MAX, process_cpu_s
from tests.conftest import Database, Gateway, gateway_env, start_process
from tests.servers import wait_for
from tests.test_operations import chat, scrape

WORKERS = 2
USERS = 4
REQUESTS = 48  # spread over USERS, half of them streamed
IN_FLIGHT = 12
FUNDS = 1_000_000
RUN = uuid.uuid4().hex[:8]  # the users are this run's own in the session's database


def log_lines(gateway: Gateway) -> list[dict[str, Any]]:
    lines = []
    for text in gateway.log.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue  # not one of ours (nothing else should write there)
    return lines


def worker_pids(gateway: Gateway) -> set[int]:
    """The workers the supervisor forked, once each has started (logged `started`)."""
    assert gateway.process is not None
    deadline = time.monotonic() + READY_WALL_S_MAX
    while True:
        lines = log_lines(gateway)
        forked = {line["worker_pid"] for line in lines if line["event"] == "worker_started"}
        started = {line.get("pid") for line in lines if line["event"] == "started"}
        if len(forked) == WORKERS and forked <= started:
            return forked
        assert gateway.process.poll() is None, "the supervisor exited"
        for pid in forked - started:
            assert process_cpu_s(pid) < READY_CPU_S_MAX, f"worker {pid} did not start"
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def workers(
    postgres_url: str, redis_url: str, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("workers")
    backend = Database(postgres_url, redis_url)
    env = gateway_env(
        tmp, provider, backend, SOLARIS_WORKERS=str(WORKERS), SOLARIS_LOG_FORMAT="json"
    )
    yield from start_process(env, tmp)


def _send(gateway: Gateway, number: int) -> tuple[str, int, str, bool]:
    """One request on a connection of its own (so the workers take turns accepting)."""
    user = f"worker-{RUN}-{number % USERS}"
    stream = number % 2 == 0
    with (
        gateway.client(user) as http,
        http.stream("POST", "/v1/chat/completions", json=chat(stream=stream)) as response,
    ):
        body = response.read().decode()
    complete = "data: [DONE]" in body if stream else '"usage"' in body
    return user, response.status_code, response.headers.get("x-request-id", ""), complete


def test_parallel_requests_spread_over_the_workers_and_are_charged_exactly(
    workers: Gateway,
) -> None:
    gateway = workers
    pids = worker_pids(gateway)
    users = [f"worker-{RUN}-{n}" for n in range(USERS)]
    for user in users:
        gateway.fund(user, FUNDS)
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        answers = list(pool.map(lambda n: _send(gateway, n), range(REQUESTS)))

    assert [(status, complete) for _, status, _, complete in answers] == [(200, True)] * REQUESTS
    billable = 0
    for user in users:
        rows = gateway.usage_rows(user)  # once nothing is held
        assert sorted(row["request_id"] for row in rows) == sorted(
            request_id for owner, _, request_id, _ in answers if owner == user
        )
        assert all(row["status"] == "ok" and not row["estimated"] for row in rows)
        spent = sum(row["billable"] for row in rows)
        account = gateway.user_row(user)
        assert (account["balance"], account["held"]) == (FUNDS - spent, 0)
        billable += spent
    assert "every balance equals its entries" in gateway.cli("ledger", "verify")

    def logged() -> list[dict[str, Any]]:
        return [line for line in log_lines(gateway) if line["event"] == "request"]

    # A worker logs a request, and counts it, once its answer has left: wait for the last.
    wait_for("every request's log line", lambda: len(logged()) == REQUESTS)
    assert {line["pid"] for line in logged()} == pids  # both workers served

    samples = scrape(gateway)  # whichever worker answers, the sum over both
    requests = [v for (name, _), v in samples.items() if name == "solaris_requests_total"]
    assert sum(requests) == REQUESTS
    assert sum(
        v for (name, _), v in samples.items() if name == "solaris_billable_tokens_total"
    ) == (billable)
    assert samples[("solaris_reservations_open", ())] == 0


def test_sigterm_lets_a_stream_in_flight_finish_then_every_worker_exits_0(
    workers: Gateway,
) -> None:
    gateway = workers
    pids = worker_pids(gateway)
    supervisor = gateway.process
    assert supervisor is not None
    gateway.fund(f"worker-{RUN}-grace", FUNDS)
    body = chat(stream=True, reply_tokens=40, chunk_delay_s=0.05)  # about 2 s of stream
    received = []
    with (
        gateway.client(f"worker-{RUN}-grace") as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        for line in response.iter_lines():
            received.append(line)
            if len(received) == 3:
                supervisor.send_signal(signal.SIGTERM)
    assert "data: [DONE]" in received
    assert supervisor.wait(timeout=STOP_S_MAX) == 0

    lines = log_lines(gateway)
    exits = {line["worker_pid"]: line["code"] for line in lines if line["event"] == "worker_exited"}
    assert exits == dict.fromkeys(pids, 0)
    [starting] = [line for line in lines if line["event"] == "workers_starting"]
    assert not Path(starting["metrics_directory"]).exists()  # removed at exit
    [row] = gateway.usage_rows(f"worker-{RUN}-grace")
    assert row["status"] == "ok" and row["completion_tokens"] == 40 and not row["estimated"]
    account = gateway.user_row(f"worker-{RUN}-grace")
    assert (account["balance"], account["held"]) == (FUNDS - row["billable"], 0)
