"""Plans as a LibreChat user meets them through the gateway: models, rate limits, statements."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis, RedisError

from tests.conftest import (
    SERVICE_KEY,
    Database,
    Gateway,
    gateway_env,
    new_postgres_database,
    start_gateway,
    start_process,
)
from tests.servers import free_port, system_events, wait_for, webhook_server

PLANS_YAML = """
plans:
  basic:
    allowance_tokens: 50000
    rpm: 5
    models: ["gpt-4o-mini"]
    default: true
  pro:
    allowance_tokens: 500000
    models: ["gpt-4o*", "text-embedding-*"]
    weights:
      gpt-4o: {input_weight: 2, output_weight: 8}
"""


def chat(model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Oi"}]}


def planned_env(tmp: Path, provider: str, backend: Database, **extra: str) -> dict[str, str]:
    config = tmp / "solaris.yaml"
    config.write_text(PLANS_YAML)
    return gateway_env(tmp, provider, backend, SOLARIS_CONFIG=str(config), **extra)


@pytest.fixture(scope="module")
def planned(
    own_backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """Plans are shared by all users of a database, so these tests get databases of their own."""
    tmp = tmp_path_factory.mktemp("planned")
    yield from start_gateway(planned_env(tmp, provider, own_backend), tmp)


def test_models_outside_the_plan_are_hidden_and_refused(planned: Gateway) -> None:
    user = "basic-" + uuid.uuid4().hex[:8]
    with planned.client(user) as http:
        listed = [m["id"] for m in http.get("/v1/models").json()["data"]]
        refused = http.post("/v1/chat/completions", json=chat("gpt-4o"))
    assert listed == ["gpt-4o-mini"]
    assert refused.status_code == 403
    assert "não está disponível no seu plano (basic)" in refused.json()["error"]["message"]
    assert planned.usage_rows(user) == []
    assert planned.user_row(user)["balance"] == 50_000  # the default plan's allowance


def test_plan_weights_and_a_plan_change_apply_at_once(planned: Gateway) -> None:
    user = "pro-" + uuid.uuid4().hex[:8]
    with planned.client(user) as http:
        assert http.post("/v1/chat/completions", json=chat()).status_code == 200
    planned.cli("users", "plan", user, "pro")
    deadline = time.monotonic() + 10  # the gateway caches a plan for up to 5 s
    with planned.client(user) as http:
        while (answer := http.post("/v1/chat/completions", json=chat("gpt-4o"))).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
    usage = answer.json()["usage"]
    row = planned.usage_rows(user)[-1]
    assert row["billable"] == 2 * usage["prompt_tokens"] + 8 * usage["completion_tokens"]
    assert planned.user_row(user)["balance"] == 500_000 - row["billable"]


def test_statement_csv_opens_as_a_spreadsheet_would(planned: Gateway, tmp_path: Path) -> None:
    user = "extrato-" + uuid.uuid4().hex[:8]
    with planned.client(user) as http:
        assert http.post("/v1/chat/completions", json=chat()).status_code == 200
    planned.usage_rows(user)  # settled
    target = tmp_path / "extrato.csv"
    printed = planned.cli("statement", user, "--csv", str(target))
    assert "opening balance 0" in printed
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "a BOM so spreadsheets read UTF-8"
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert [r["kind"] for r in rows] == ["allowance", "usage"]
    assert int(rows[-1]["balance"]) == planned.user_row(user)["balance"]


def _fire(urls: list[str], user: str, count: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    return [
        httpx.post(urls[i % len(urls)] + "/v1/chat/completions", json=chat(), headers=headers)
        for i in range(count)
    ]


@pytest.fixture
def two_planned(redis_url: str, provider: str, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    with new_postgres_database() as url:
        env = planned_env(tmp_path, provider, Database(url, redis_url))
        first, second = start_gateway(env, tmp_path), start_gateway(env, tmp_path)
        yield next(first), next(second)
        for gateway in (first, second):
            next(gateway, None)


def test_rpm_holds_across_two_gateways_sharing_redis(two_planned: tuple[Gateway, Gateway]) -> None:
    first, second = two_planned
    user = "rpm-" + uuid.uuid4().hex[:8]
    responses = _fire([first.url, second.url], user, 12)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 5, statuses
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 7
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in limited)
    assert limited[0].json()["error"]["code"] == "rate_limit_exceeded"
    # In the user's language (SOLARIS_LANGUAGE is pt-BR by default), seconds as pt-BR writes them.
    message = limited[0].json()["error"]["message"]
    assert re.fullmatch(
        r"Limite de solicitações por minuto do seu plano \(basic: 5\) atingido\. "
        r"Tente de novo em \d+,\d s\.",
        message,
    ), message
    assert len(first.usage_rows(user)) == 5


def test_gateway_keeps_serving_while_redis_stops_and_starts(provider: str, tmp_path: Path) -> None:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    database = Database(f"sqlite:///{tmp_path}/redisless.db", f"redis://127.0.0.1:{port}/0")
    closing = ExitStack()
    hooks = closing.enter_context(webhook_server())  # the operator's webhook
    env = planned_env(
        tmp_path,
        provider,
        database,
        SOLARIS_ALERT_WEBHOOK_URL=hooks.url,
        SOLARIS_ALERT_WEBHOOK_SECRET="operator-secret",
        SOLARIS_ALERT_SYSTEM_CHANNELS="webhook",
        SOLARIS_ALERT_CHECK_INTERVAL_S="0.3",
        SOLARIS_ALERT_POLL_INTERVAL_S="0.2",
    )
    try:
        for gateway in start_process(env, tmp_path):
            user = "redisless-" + uuid.uuid4().hex[:8]
            assert [r.status_code for r in _fire([gateway.url], user, 2)] == [200, 200]
            redis.send_signal(signal.SIGKILL)
            redis.wait()
            during = [r.status_code for r in _fire([gateway.url], user, 7)]
            # Requests keep flowing under this process's own limit (5 a minute, counted afresh).
            assert during.count(200) == 5 and during.count(429) == 2, during
            ready = httpx.get(gateway.url + "/readyz", timeout=10)
            assert ready.status_code == 200, "a replica without Redis stays in rotation"
            assert ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["redis"].startswith("unreachable")
            wait_for("the Redis alert", lambda: system_events(hooks) == ["redis_unreachable"])
            redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
            client = Redis(port=port)
            deadline = time.monotonic() + 10
            while True:  # back, and the gateway's one-second back-off is over
                try:
                    client.ping()
                    break
                except RedisError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            time.sleep(1.5)
            other = "back-" + uuid.uuid4().hex[:8]
            after = [r.status_code for r in _fire([gateway.url], other, 6)]
            assert after.count(200) == 5, after
            assert client.keys("solaris:*:rl:*"), "the limits live in Redis again"
            client.close()
            assert "redis_unavailable" in gateway.log.read_text()
            wait_for("the recovery", lambda: len(system_events(hooks)) == 2)
            assert system_events(hooks) == ["redis_unreachable", "redis_recovered"]
    finally:
        closing.close()
        redis.kill()
        redis.wait()


def test_two_deployments_sharing_one_redis_keep_their_users_apart(
    redis_url: str, provider: str, tmp_path: Path
) -> None:
    """User ids are per database; the Redis keys carry each deployment's id."""
    user = "same-id-" + uuid.uuid4().hex[:8]
    gateways: list[Iterator[Gateway]] = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        env = gateway_env(folder, provider, Database(f"sqlite:///{folder}/{name}.db", redis_url))
        gateways.append(start_gateway(env, folder))
    first, second = (next(running) for running in gateways)
    second.fund("someone-else", 10)  # shifts the ids so the same user gets different ones
    for gateway in (first, second):
        gateway.fund(user, 1_000)
        with gateway.client(user) as http:
            assert http.post("/v1/chat/completions", json=chat()).status_code == 200
        assert len(gateway.usage_rows(user)) == 1
    for running in gateways:
        next(running, None)
