"""Operating the gateway: metrics, logs, readiness, graceful shutdown."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway, start_process
from tests.pgcluster import BIN, PrivateCluster
from tests.servers import system_events, wait_for, webhook_server

SECRET_PROMPT = "A senha do cofre é girassol-azul-42"


def chat(stream: bool = False, **behaviour: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": SECRET_PROMPT}],
        "stream": stream,
        "dev_provider": behaviour,
    }


@pytest.fixture
def fresh(provider: str, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway of its own (SQLite), so its counters start at zero."""
    backend = Database(f"sqlite:///{tmp_path}/ops.db", None)
    env = gateway_env(tmp_path, provider, backend, SOLARIS_LOG_FORMAT="json")
    yield from start_process(env, tmp_path)


def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(gateway.url + "/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_exactly_the_traffic_sent(fresh: Gateway) -> None:
    fresh.fund("m-user", 10_000)
    fresh.fund("m-poor", 1)
    with fresh.client("m-user") as http:
        for _ in range(2):
            assert http.post("/v1/chat/completions", json=chat()).status_code == 200
        assert http.post("/v1/chat/completions", json=chat(stream=True)).status_code == 200
        assert http.post("/v1/chat/completions", json=chat(fail_status=500)).status_code == 500
        assert http.post("/v1/chat/completions", content=b"{").status_code == 400
    with fresh.client("m-poor") as http:
        assert http.post("/v1/chat/completions", json=chat()).status_code == 402
    rows = fresh.usage_rows("m-user")
    samples = scrape(fresh)
    route = {"route": "chat", "model": "gpt-4o-mini"}
    assert value(samples, "solaris_requests_total", **route, status="200", outcome="served") == 3
    assert (
        value(samples, "solaris_requests_total", **route, status="500", outcome="upstream_error")
        == 1
    )
    assert value(samples, "solaris_requests_total", **route, status="402", outcome="blocked") == 1
    assert (
        value(
            samples,
            "solaris_requests_total",
            route="chat",
            model="none",
            status="400",
            outcome="rejected",
        )
        == 1
    )
    assert value(samples, "solaris_upstream_errors_total", provider="openai", kind="500") == 1
    for kind, column in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
        expected = sum(row[column] for row in rows)
        assert value(samples, "solaris_tokens_total", model="gpt-4o-mini", kind=kind) == expected
    billable = sum(row["billable"] for row in rows)
    assert value(samples, "solaris_billable_tokens_total", model="gpt-4o-mini") == billable
    assert value(samples, "solaris_gateway_seconds_count", route="chat") == 6
    assert (
        value(samples, "solaris_upstream_first_byte_seconds_count", route="chat", provider="openai")
        == 4
    )
    assert value(samples, "solaris_reservations_open") == 0
    assert not any(
        name.endswith("_total") and ("user", "m-user") in labels for name, labels in samples
    )


def test_metrics_can_require_a_token(provider: str, tmp_path: Path) -> None:
    backend = Database(f"sqlite:///{tmp_path}/token.db", None)
    env = gateway_env(tmp_path, provider, backend, SOLARIS_METRICS_TOKEN="scrape-me")
    for gateway in start_gateway(env, tmp_path):
        assert httpx.get(gateway.url + "/metrics").status_code == 401
        scraped = httpx.get(gateway.url + "/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200 and "solaris_requests" in scraped.text


def test_logs_have_one_json_line_per_request_and_no_message_content(fresh: Gateway) -> None:
    fresh.fund("log-user", 10_000)
    with fresh.client("log-user") as http:
        served = http.post("/v1/chat/completions", json=chat())
        http.post("/v1/chat/completions", json=chat(stream=True))
    time.sleep(0.3)
    text = fresh.log.read_text()
    assert SECRET_PROMPT not in text and "girassol" not in text
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 2
    first = next(r for r in requests if r["request_id"] == served.headers["x-request-id"])
    assert first["status"] == 200 and first["outcome"] == "served"
    assert first["librechat_user"] == "log-user" and isinstance(first["user_id"], int)
    assert first["billable"] > 0 and first["estimated"] is False
    assert first["gateway_ms"] >= 0 and first["upstream_ms"] > 0
    started = next(line for line in lines if line.get("event") == "started")
    assert started["librechat_keys"] == ["***"] and started["secret_key"] == "***"


@pytest.fixture
def graceful(provider: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    backend = Database(f"sqlite:///{tmp_path}/grace.db", None)
    env = gateway_env(tmp_path, provider, backend, SOLARIS_SHUTDOWN_GRACE_S=str(request.param))
    yield from start_process(env, tmp_path)


def _stream_through_sigterm(gateway: Gateway, user: str) -> tuple[str, int]:
    gateway.fund(user, 10_000)
    body = chat(stream=True, reply_tokens=40, chunk_delay_s=0.05)  # about 2 s of stream
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    received = []
    assert gateway.process is not None
    try:
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as response:
            for line in response.iter_lines():
                received.append(line)
                if len(received) == 3:
                    gateway.process.send_signal(signal.SIGTERM)
    except httpx.RemoteProtocolError:
        pass  # the stream was cut at the end of the grace period
    return "\n".join(received), gateway.process.wait(timeout=30)


@pytest.mark.parametrize("graceful", [10], indirect=True)
def test_sigterm_lets_a_stream_finish_and_charges_it_once(graceful: Gateway) -> None:
    text, exit_code = _stream_through_sigterm(graceful, "grace-user")
    assert exit_code == 0
    assert "data: [DONE]" in text
    [row] = graceful.usage_rows("grace-user")
    assert row["status"] == "ok" and row["completion_tokens"] == 40 and not row["estimated"]


@pytest.mark.parametrize("graceful", [1], indirect=True)
def test_sigterm_with_a_short_grace_still_leaves_one_usage_row(graceful: Gateway) -> None:
    text, exit_code = _stream_through_sigterm(graceful, "rushed-user")
    assert exit_code == 0
    assert "data: [DONE]" not in text
    [row] = graceful.usage_rows("rushed-user")
    assert row["status"] == "interrupted" and row["estimated"] is True
    assert 0 < row["completion_tokens"] < 40
    assert graceful.user_row("rushed-user")["held"] == 0


@pytest.mark.skipif(BIN is None, reason="PostgreSQL server binaries are not installed")
def test_readyz_follows_postgresql_going_down_and_coming_back(
    provider: str, redis_url: str, tmp_path: Path
) -> None:
    """Readiness, requests (fail closed) and the operator's alerts while the database is away."""
    cluster = PrivateCluster()
    cluster.create()
    try:
        with webhook_server() as hooks:
            env = gateway_env(
                tmp_path,
                provider,
                Database(cluster.url, redis_url),
                SOLARIS_ALERT_WEBHOOK_URL=hooks.url,
                SOLARIS_ALERT_WEBHOOK_SECRET="operator-secret",
                SOLARIS_ALERT_SYSTEM_CHANNELS="webhook",
                SOLARIS_ALERT_CHECK_INTERVAL_S="0.3",
                SOLARIS_ALERT_POLL_INTERVAL_S="0.2",
            )
            for gateway in start_gateway(env, tmp_path):
                assert httpx.get(gateway.url + "/readyz").status_code == 200
                cluster.stop()
                down = httpx.get(gateway.url + "/readyz", timeout=30)
                assert down.status_code == 503
                assert down.json()["checks"]["database"].startswith("unreachable")
                with gateway.client("pg-user") as http:
                    refused = http.post("/v1/chat/completions", json=chat())
                    listed = http.get("/v1/models")
                assert refused.status_code == 503  # fail closed
                assert listed.status_code == 503
                assert listed.json()["error"]["code"] == "service_unavailable"
                wait_for(
                    "the outage alert", lambda: system_events(hooks) == ["database_unreachable"]
                )
                cluster.start()
                deadline = time.monotonic() + 20
                while httpx.get(gateway.url + "/readyz", timeout=30).status_code != 200:
                    assert time.monotonic() < deadline, "never ready again"
                    time.sleep(0.2)
                gateway.fund("pg-user", 1_000)
                with gateway.client("pg-user") as http:
                    assert http.post("/v1/chat/completions", json=chat()).status_code == 200
                wait_for("the recovery", lambda: len(system_events(hooks)) == 2)
        assert system_events(hooks) == ["database_unreachable", "database_recovered"]
    finally:
        cluster.destroy()


def _keep_asking(gateway: Gateway, stop: threading.Event, statuses: list[int]) -> None:
    with gateway.client("outage-user") as http:
        while not stop.is_set():
            try:
                statuses.append(http.post("/v1/chat/completions", json=chat()).status_code)
            except httpx.TransportError:
                statuses.append(0)


def _through_an_outage(gateway: Gateway, cluster: PrivateCluster) -> list[int]:
    """Four clients asking while PostgreSQL stops for a few seconds; their answers' statuses."""
    statuses: list[int] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_keep_asking, args=(gateway, stop, statuses)) for _ in range(4)
    ]
    for client in clients:
        client.start()
    try:
        wait_for("requests served", lambda: 200 in statuses)
        cluster.stop()
        wait_for("requests refused", lambda: 503 in statuses)
        time.sleep(3)  # the pool tries, and fails, to reconnect meanwhile
        cluster.start()
        served = statuses.count(200)
        wait_for("requests served again", lambda: statuses.count(200) > served + 5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    return statuses


@pytest.mark.skipif(BIN is None, reason="PostgreSQL server binaries are not installed")
def test_every_log_line_is_one_json_object_while_postgresql_goes_away(
    provider: str, tmp_path: Path
) -> None:
    """asyncpg's reconnection tracebacks, uvicorn's and asyncio's errors: JSON like ours."""
    cluster = PrivateCluster()
    cluster.create()
    try:
        env = gateway_env(
            tmp_path, provider, Database(cluster.url, None), SOLARIS_LOG_FORMAT="json"
        )
        for gateway in start_process(env, tmp_path):
            gateway.fund("outage-user", 1_000_000)
            statuses = _through_an_outage(gateway, cluster)
        lines = gateway.log.read_text().splitlines()
    finally:
        cluster.destroy()
    assert 503 in statuses
    records = []
    for line in lines:
        record = orjson.loads(line)  # fails on a raw traceback line
        assert isinstance(record, dict), line
        records.append(record)
    assert any(record.get("event") == "database_unavailable" for record in records)
    floor = [record for record in records if record.get("logger") == "asyncpg.pool"]
    assert floor, "asyncpg's reconnection warnings, as JSON objects"
    assert all(record["level"] == "warning" and "exception" in record for record in floor)


def test_console_logs_render_the_gateways_and_uvicorns_lines_alike(
    provider: str, tmp_path: Path
) -> None:
    backend = Database(f"sqlite:///{tmp_path}/console.db", None)
    env = gateway_env(tmp_path, provider, backend, SOLARIS_LOG_FORMAT="console")
    for gateway in start_process(env, tmp_path):
        host, port = gateway.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: \x01\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 400")
        time.sleep(0.3)
        text = re.sub(r"\x1b\[[0-9;]*m", "", gateway.log.read_text())
    lines = text.splitlines()
    assert not any(line.startswith("{") for line in lines)
    assert any(" started " in line for line in lines)
    [refused] = [line for line in lines if "Invalid HTTP request received." in line]
    assert "warning" in refused and "uvicorn.error" in refused


def test_the_grafana_dashboard_queries_only_metrics_the_gateway_exports(fresh: Gateway) -> None:
    dashboard = Path(__file__).parents[1] / "deploy" / "grafana" / "dashboards" / "solaris.json"
    queried = set(re.findall(r"solaris_[a-z_]+", dashboard.read_text()))
    exported = {name for name, _labels in scrape(fresh)} | {
        line.split()[2]
        for line in httpx.get(fresh.url + "/metrics").text.splitlines()
        if line.startswith("# TYPE")
    }
    exported |= {name + suffix for name in exported for suffix in ("_bucket", "_count", "_total")}
    assert queried and queried <= exported, queried - exported
