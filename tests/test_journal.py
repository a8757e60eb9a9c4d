"""Nothing lost when the database goes away: settlements wait in the local journal, replayed once.

Each test runs a private PostgreSQL cluster that it stops mid-load (the shared one must stay up),
or holds the SQLite file's write lock from another process, and then checks the promise of
DESIGN §2.3 from the outside: every answer a client received has exactly one usage row and its
charge, every refusal has none, and the ledger adds up.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_process
from tests.pgcluster import BIN, PrivateCluster
from tests.servers import wait_for

pytestmark = pytest.mark.skipif(BIN is None, reason="PostgreSQL server binaries are not installed")

running = contextmanager(start_process)
OUTAGE_S = 5.0
REPLAY_WAIT_S = 60.0


@dataclass(frozen=True)
class Answer:
    request_id: str
    status: int
    complete: bool  # a JSON answer, or a stream that ended with [DONE]
    body: str


def chat(stream: bool, **behaviour: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Resuma a reunião de ontem."}],
        "stream": stream,
        "max_tokens": 32,
        "dev_provider": behaviour,
    }


async def _one(http: httpx.AsyncClient, url: str, user: str, body: dict[str, Any]) -> Answer:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    try:
        async with http.stream(
            "POST", url + "/v1/chat/completions", json=body, headers=headers
        ) as r:
            text = (await r.aread()).decode()
    except httpx.TransportError as error:
        return Answer("", 0, False, repr(error))
    complete = r.status_code == 200 and (not body["stream"] or "data: [DONE]" in text)
    return Answer(r.headers.get("x-request-id", ""), r.status_code, complete, text)


async def _load(url: str, user: str, total: int, in_flight: int) -> list[Answer]:
    """`total` chats, half streamed, `in_flight` at a time, each taking ~0.3 s upstream."""
    gate = asyncio.Semaphore(in_flight)

    async def one(index: int, http: httpx.AsyncClient) -> Answer:
        stream = index % 2 == 0
        body = chat(True, chunk_delay_s=0.02) if stream else chat(False, stall_s=0.3)
        async with gate:
            return await _one(http, url, user, body)

    async with httpx.AsyncClient(timeout=60) as http:
        return await asyncio.gather(*(one(i, http) for i in range(total)))


def _journal_settled(gateway: Gateway) -> bool:
    ready = httpx.get(gateway.url + "/readyz", timeout=30).json()
    return bool(ready["checks"]["database"] == "ok" and ready["checks"]["journal"] == "ok")


def _metric(gateway: Gateway, name: str) -> float:
    for line in httpx.get(gateway.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _check_nothing_lost(gateway: Gateway, user: str, funded: int, answers: list[Answer]) -> None:
    rows = gateway.usage_rows(user)
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids)), "a request was charged twice"
    answered = {a.request_id for a in answers if a.complete}
    refused = {a.request_id for a in answers if a.status != 200}
    assert set(ids) == answered, (
        f"answers without a usage row: {len(answered - set(ids))}, "
        f"rows without an answer: {len(set(ids) - answered)}"
    )
    assert not refused & set(ids), "a refused request was charged"
    shown = gateway.user_row(user)
    assert shown["balance"] == funded - sum(row["billable"] for row in rows)
    assert shown["held"] == 0
    assert "ledger verified" in gateway.cli("ledger", "verify")


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    cluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_a_database_outage_under_load_loses_no_answer(
    cluster: PrivateCluster, provider: str, redis_url: str, tmp_path: Path
) -> None:
    env = gateway_env(tmp_path, provider, Database(cluster.url, redis_url))
    with running(env, tmp_path) as gateway:
        user = "outage-" + uuid.uuid4().hex[:8]
        funded = 10_000_000
        gateway.fund(user, funded)
        seen_waiting: list[str] = []

        async def scenario() -> list[Answer]:
            load = asyncio.create_task(_load(gateway.url, user, total=400, in_flight=24))
            # The load is under way, with answers on their way to a settlement (counted: on a
            # busy machine the first requests take longer than a guessed second to arrive).
            while await asyncio.to_thread(gateway.pending_reservations, user) < 8:
                assert not load.done(), "the load ended before the outage"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(cluster.stop)
            deadline = time.monotonic() + OUTAGE_S
            async with httpx.AsyncClient(timeout=30) as http:
                while time.monotonic() < deadline:
                    checks = (await http.get(gateway.url + "/readyz")).json()["checks"]
                    seen_waiting.append(checks["journal"])
                    await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.start)
            return await load

        answers = asyncio.run(scenario())
        wait_for("the journal to be replayed", lambda: _journal_settled(gateway), REPLAY_WAIT_S)
        after = asyncio.run(_load(gateway.url, user, total=20, in_flight=8))
        assert [a.status for a in after] == [200] * 20, "served again once the database is back"
        answers += after
        assert _metric(gateway, "solaris_journal_writes_total") > 0, "no answer met the outage"
        assert any(state.endswith("settlements waiting for the database") for state in seen_waiting)
        assert {a.status for a in answers} <= {200, 503}, {a.status for a in answers}
        for refused in (a for a in answers if a.status == 503):
            assert '"code":"service_unavailable"' in refused.body.replace(" ", "")
        assert all(a.complete for a in answers if a.status == 200), "a stream ended unrecorded"
        _check_nothing_lost(gateway, user, funded, answers)
        assert not list((tmp_path / "journal").glob("*.jsonl"))[1:], "one file per process"
        logged = [
            line
            for line in map(json.loads, gateway.log.read_text().splitlines())
            if line.get("event") == "request"
        ]
        assert len(logged) == len(answers), "every request leaves its log line"
        assert {(line["status"], line["outcome"]) for line in logged} <= {
            (200, "served"),
            (503, "unavailable"),
        }


STALL_S = 6.0  # the provider holds each answer this long: time to admit them all, then stop


def _answers_during_outage(
    gateway: Gateway, cluster: PrivateCluster, user: str, count: int
) -> list[Answer]:
    """`count` non-streamed chats that reserve, then find the database gone when they settle."""

    async def scenario() -> list[Answer]:
        async with httpx.AsyncClient(timeout=60) as http:
            calls = [
                asyncio.create_task(_one(http, gateway.url, user, chat(False, stall_s=STALL_S)))
                for _ in range(count)
            ]
            # Every call has its reservation and waits on the provider (counted, not guessed:
            # a busy machine takes longer to admit them all).
            while await asyncio.to_thread(gateway.pending_reservations, user) < count:
                assert not any(call.done() for call in calls), "a call ended before the outage"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(cluster.stop)
            return await asyncio.gather(*calls)

    return asyncio.run(scenario())


def test_kill_9_with_journaled_settlements_then_restart_settles_each_once(
    cluster: PrivateCluster, provider: str, redis_url: str, tmp_path: Path
) -> None:
    env = gateway_env(tmp_path, provider, Database(cluster.url, redis_url))
    journal = tmp_path / "journal"
    user = "killed-" + uuid.uuid4().hex[:8]
    funded = 100_000
    doomed = start_process(env, tmp_path)
    first = next(doomed)
    first.fund(user, funded)
    answers = _answers_during_outage(first, cluster, user, 10)
    assert [a.status for a in answers] == [200] * 10, [a.body for a in answers]
    checks = httpx.get(first.url + "/readyz", timeout=30).json()["checks"]
    assert checks["journal"] == "10 settlements waiting for the database"
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    [left] = list(journal.glob("*.jsonl"))
    assert len(left.read_bytes().splitlines()) == 10
    copy = tmp_path / "copy.jsonl"
    shutil.copy(left, copy)
    next(doomed, None)

    cluster.start()
    with running(env, tmp_path) as second:
        wait_for("the dead process's journal", lambda: not left.exists(), REPLAY_WAIT_S)
        _check_nothing_lost(second, user, funded, answers)
    # The same journal once more (a replay that happens twice): each entry is settled already.
    shutil.copy(copy, left)
    with running(env, tmp_path) as third:
        wait_for("the second replay", lambda: not left.exists(), REPLAY_WAIT_S)
        _check_nothing_lost(third, user, funded, answers)


def test_a_full_journal_withholds_the_answer_instead_of_giving_it_away(
    cluster: PrivateCluster, provider: str, redis_url: str, tmp_path: Path
) -> None:
    env = gateway_env(
        tmp_path, provider, Database(cluster.url, redis_url), SOLARIS_JOURNAL_BYTES_MAX="4096"
    )
    user = "full-" + uuid.uuid4().hex[:8]
    funded = 100_000
    with running(env, tmp_path) as gateway:
        gateway.fund(user, funded)
        answers = _answers_during_outage(gateway, cluster, user, 30)
        served = [a for a in answers if a.status == 200]
        withheld = [a for a in answers if a.status == 503]
        assert served and withheld and len(served) + len(withheld) == 30
        assert all('"code":"service_unavailable"' in a.body.replace(" ", "") for a in withheld)
        assert _metric(gateway, "solaris_settlements_lost_total") == len(withheld)
        cluster.start()
        wait_for("the journal to be replayed", lambda: _journal_settled(gateway), REPLAY_WAIT_S)
        rows = gateway.usage_rows(user, settled=False)
        assert {row["request_id"] for row in rows} == {a.request_id for a in served}


def test_sqlite_locked_by_another_process_journals_and_replays(
    provider: str, tmp_path: Path
) -> None:
    """SQLite's outage: another process holds the write lock longer than a settle waits."""
    path = tmp_path / "solaris.db"
    env = gateway_env(tmp_path, provider, Database(f"sqlite:///{path}", None))
    user = "locked-" + uuid.uuid4().hex[:8]
    funded = 100_000
    with running(env, tmp_path) as gateway:
        gateway.fund(user, funded)
        release = threading.Event()

        def hold_the_lock() -> None:
            connection = sqlite3.connect(path, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")
            release.wait(timeout=30)
            connection.execute("ROLLBACK")
            connection.close()

        async def scenario() -> list[Answer]:
            async with httpx.AsyncClient(timeout=60) as http:
                calls = [
                    asyncio.create_task(_one(http, gateway.url, user, chat(False, stall_s=STALL_S)))
                    for _ in range(4)
                ]
                # Every call holds its reservation before the lock is taken (counted, not
                # guessed: on a busy machine admitting them takes longer than half a second).
                while await asyncio.to_thread(gateway.pending_reservations, user) < 4:
                    assert not any(call.done() for call in calls), "a call ended before the lock"
                    await asyncio.sleep(0.05)
                locker = threading.Thread(target=hold_the_lock)
                locker.start()
                answers = await asyncio.gather(*calls)
                release.set()
                locker.join()
                return answers

        answers = asyncio.run(scenario())
        assert [a.status for a in answers] == [200] * 4, [a.body for a in answers]
        assert _metric(gateway, "solaris_journal_writes_total") == 4
        wait_for("the journal to be replayed", lambda: _journal_settled(gateway), REPLAY_WAIT_S)
        _check_nothing_lost(gateway, user, funded, answers)
