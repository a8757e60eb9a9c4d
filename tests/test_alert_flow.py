"""Alerts through running gateways: a settle crossing 80% and 100% mails the user (a real SMTP
server) and calls the operator's webhook (a real HTTP receiver, signature checked); exactly one
alert when two gateways race; SMTP down costs the request path nothing and the mail still goes
out after a restart; a half-failing upstream raises one error-rate alert and one recovery."""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import httpx
import openai
import pytest

from solaris.alerts.webhook import verify_signature
from solaris.store.database import open_database
from solaris.store.outbox import OutboxRow, list_alerts
from solaris.texts.formats import format_tokens
from tests.conftest import (
    SERVICE_KEY,
    Database,
    Gateway,
    gateway_env,
    new_postgres_database,
    start_gateway,
)
from tests.servers import Hooks, free_port, system_events, wait_for, webhook_server
from tests.test_alerts import Inbox, smtp_server
from tests.test_scale_out import pair_behind_nginx

SECRET = "webhook-secret-for-tests"
MODEL = "gpt-4o-mini"


def alert_env(smtp_port: int, hooks: Hooks | None = None, **extra: str) -> dict[str, str]:
    env = {
        "SOLARIS_SMTP_HOST": "127.0.0.1",
        "SOLARIS_SMTP_PORT": str(smtp_port),
        "SOLARIS_SMTP_SECURITY": "none",
        "SOLARIS_SMTP_SENDER": "SOLARIS <alerts@example.com>",
        "SOLARIS_ALERT_POLL_INTERVAL_S": "0.2",
        "SOLARIS_ALERT_RETRY_FIRST_S": "0.2",
        "SOLARIS_ALERT_USER_CHANNELS": "email,webhook" if hooks else "email",
        **extra,
    }
    if hooks is not None:
        env["SOLARIS_ALERT_WEBHOOK_URL"] = hooks.url
        env["SOLARIS_ALERT_WEBHOOK_SECRET"] = SECRET
    return env


def ask(gateway: Gateway | str, user: str, email: str, reply_tokens: int = 40) -> int:
    """One chat as LibreChat sends it, to a gateway or any URL in front of gateways."""
    url = gateway if isinstance(gateway, str) else gateway.url
    headers = {
        "Authorization": f"Bearer {SERVICE_KEY}",
        "X-LibreChat-User-Id": user,
        "X-LibreChat-User-Email": email,
    }
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "Conte uma história."}],
                "max_tokens": reply_tokens,  # holds no more than the reply needs
                "dev_provider": {"reply_tokens": reply_tokens},
            },
        )
    return response.status_code


def mails_to(inbox: Inbox, address: str) -> list[EmailMessage]:
    return [message for message in inbox.messages if message["To"] == address]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def outbox(url: str) -> list[OutboxRow]:
    """The outbox, newest first, read straight from the database (no process to spawn)."""

    async def read() -> list[OutboxRow]:
        database = open_database(url, pool_size=1)
        try:
            async with database.transaction() as conn:
                return await list_alerts(conn, limit=1000)
        finally:
            await database.close()

    return asyncio.run(read())


@pytest.fixture
def inbox_port() -> int:
    return free_port()


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Database:
    """For what does not depend on the database (delivery, system checks): one run suffices."""
    return Database(f"sqlite:///{tmp_path}/alerts.db", None)


def test_crossing_80_and_100_mails_the_user_and_signs_the_webhook(
    fresh_backend: Database, provider: str, tmp_path: Path, user: str, inbox_port: int
) -> None:
    email = f"{user}@example.com"
    with smtp_server(inbox_port) as inbox, webhook_server() as hooks:
        env = gateway_env(tmp_path, provider, fresh_backend, **alert_env(inbox_port, hooks))
        for gateway in start_gateway(env, tmp_path):
            assert ask(gateway, user, email) == 402  # a new user, with nothing yet
            gateway.fund(user, 1000)
            while ask(gateway, user, email, reply_tokens=120) == 200:
                pass  # until the balance is spent (the last one capped to what is left)
            wait_for("two e-mails", lambda: len(mails_to(inbox, email)) >= 2)
            wait_for("two webhooks", lambda: len(hooks.bodies) >= 2)
            rows = gateway.usage_rows(user)

    total = 1000  # the period offered nothing at its start, then 1,000 were credited
    crossings = {}
    used = 0
    for row in rows:
        before, used = used, used + row["billable"]
        for percent in (80, 100):
            if before * 100 < percent * total <= used * 100:
                crossings[percent] = total - used  # the balance the e-mail shows
    assert set(crossings) == {80, 100}, crossings

    mails = mails_to(inbox, email)
    near, out = sorted(mails, key=lambda message: "80%" not in text_of(message))
    used_at_80 = format_tokens("pt-BR", total - crossings[80])
    assert f"Você já usou 80% dos tokens deste período ({used_at_80} de 1.000)" in text_of(near)
    assert "Você usou todos os tokens deste período (1.000 de 1.000)" in text_of(out)
    for message, percent in ((near, 80), (out, 100)):
        text = text_of(message)
        assert format_tokens("pt-BR", total) in text
        assert f"{format_tokens('pt-BR', crossings[percent])} tokens" in text
        assert "https://chat.example.com/portal/buy?t=" in text
        assert message.get_body(("html",)) is not None
    assert len(mails_to(inbox, email)) == 2, "each threshold once"

    for headers, body in hooks.bodies:
        assert verify_signature(SECRET, body, headers["X-Solaris-Signature"])
    events = hooks.events()
    assert sorted(event["data"]["threshold"] for event in events) == [80, 100]
    assert all(isinstance(event["text"], str) and event["text"] for event in events)


def test_the_stream_that_crosses_80_percent_ends_with_a_notice(
    fresh_backend: Database, provider: str, tmp_path: Path, user: str, inbox_port: int
) -> None:
    env = gateway_env(tmp_path, provider, fresh_backend, **alert_env(inbox_port))
    with smtp_server(inbox_port):
        for gateway in start_gateway(env, tmp_path):
            assert _streams_until_spent(gateway, user) == 1


def _streams_until_spent(gateway: Gateway, user: str) -> int:
    """Streams replies until the balance is spent; returns how many carried the 80% notice."""
    assert ask(gateway, user, f"{user}@example.com") == 402
    gateway.fund(user, 1000)
    client = openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=SERVICE_KEY,
        default_headers={"X-LibreChat-User-Id": user},
    )
    replies = []
    for _ in range(12):
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Oi"}],
            stream=True,
            extra_body={"dev_provider": {"reply_tokens": 100}},
        )
        replies.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    noticed = [reply for reply in replies if "⚠️ Você já usou 80%" in reply]
    notice = r"\n\n⚠️ Você já usou 80% dos seus tokens deste período \(restam [\d.]+\)\.$"
    assert all(re.search(notice, reply) for reply in noticed), noticed
    return len(noticed)


@pytest.mark.postgres
def test_two_gateways_behind_nginx_racing_across_80_percent_raise_one_alert(
    provider: str, redis_url: str, tmp_path: Path, user: str, inbox_port: int
) -> None:
    email = f"{user}@example.com"
    with new_postgres_database() as url, smtp_server(inbox_port) as inbox:
        backend = Database(url, redis_url)
        env = gateway_env(tmp_path, provider, backend, **alert_env(inbox_port))
        with pair_behind_nginx(env, tmp_path) as pair:
            assert ask(pair.url, user, email) == 402
            pair.gateways[0].fund(user, 4000)
            with ThreadPoolExecutor(32) as pool:
                codes = list(pool.map(lambda _: ask(pair.url, user, email, 60), range(64)))
            assert codes.count(200) >= 40
            wait_for("the 80% e-mail", lambda: len(mails_to(inbox, email)) >= 1)
            time.sleep(1.5)  # time for a duplicate to arrive, were there one
            logs = [gateway.log.read_text() for gateway in pair.gateways]
        assert all('"outcome":"served"' in log for log in logs), "both gateways served"
        keys = [row.dedupe_key for row in outbox(url)]
        assert len([key for key in keys if key.endswith(":80:email")]) == 1, keys
        subjects = [str(message["Subject"]) for message in mails_to(inbox, email)]
        assert sum("80%" in subject for subject in subjects) == 1, subjects


def test_smtp_down_costs_requests_nothing_and_the_mail_goes_out_after_a_restart(
    sqlite_backend: Database, provider: str, tmp_path: Path, user: str, inbox_port: int
) -> None:
    email = f"{user}@example.com"
    env = gateway_env(tmp_path, provider, sqlite_backend, **alert_env(inbox_port))
    for gateway in start_gateway(env, tmp_path):  # no SMTP server listens yet
        assert ask(gateway, user, email) == 402
        gateway.fund(user, 1000)
        durations = []
        for _ in range(8):
            started = time.monotonic()
            assert ask(gateway, user, email, reply_tokens=100) == 200
            durations.append(time.monotonic() - started)
        assert max(durations) < 2.0, durations  # nobody waits for SMTP
        ours = [row for row in outbox(env["SOLARIS_DATABASE_URL"]) if row.recipient == email]
        assert [row.state for row in ours] == ["pending"]
        wait_for("a failed attempt", lambda: _attempted(env["SOLARIS_DATABASE_URL"], email))
    with smtp_server(inbox_port) as inbox:
        for gateway in start_gateway(env, tmp_path):  # a restart: the outbox is still there
            wait_for("the mail after the restart", lambda: len(mails_to(inbox, email)) == 1)
            assert "80%" in str(mails_to(inbox, email)[0]["Subject"])
            sent = json.loads(gateway.cli("alerts", "list", "--state", "sent", "--json"))
            assert any(row["recipient"] == email for row in sent)


def _attempted(database_url: str, email: str) -> bool:
    return any(row.recipient == email and row.last_error for row in outbox(database_url))


def test_a_failing_then_slow_upstream_raises_one_alert_and_one_recovery_each(
    sqlite_backend: Database, provider: str, tmp_path: Path, user: str, inbox_port: int
) -> None:
    with smtp_server(inbox_port), webhook_server() as hooks:
        extra = alert_env(
            inbox_port,
            hooks,
            SOLARIS_ALERT_SYSTEM_CHANNELS="webhook",
            SOLARIS_ALERT_WINDOW_S="60",
            SOLARIS_ALERT_WINDOW_REQUESTS_MIN="10",
            SOLARIS_ALERT_ERROR_RATE_MAX="0.25",
            SOLARIS_ALERT_LATENCY_P95_MAX_S="0.25",
            SOLARIS_ALERT_CHECK_INTERVAL_S="0.3",
        )
        env = gateway_env(tmp_path, provider, sqlite_backend, **extra)
        for gateway in start_gateway(env, tmp_path):
            gateway.fund(user, 1_000_000)
            with gateway.client(user) as client:

                def call(fail_rate: float = 0.0, stall_s: float = 0.0) -> int:
                    behaviour = {"fail_rate": fail_rate, "stall_s": stall_s, "reply_tokens": 4}
                    body = {
                        "model": MODEL,
                        "messages": [{"role": "user", "content": "Oi"}],
                        "dev_provider": behaviour,
                    }
                    return client.post("/v1/chat/completions", json=body).status_code

                codes = [call(0.5) for _ in range(20)]
                assert codes.count(500) == 10
                wait_for(
                    "the error-rate alert", lambda: system_events(hooks) == ["upstream_error_rate"]
                )
                for _ in range(60):
                    assert call() == 200
                wait_for("the recovery", lambda: len(system_events(hooks)) == 2)
                for _ in range(12):  # now slow: p95 of the first byte over 0.25 s
                    assert call(stall_s=0.4) == 200
                wait_for("the latency alert", lambda: len(system_events(hooks)) == 3)
                for _ in range(300):  # 12 slow calls of 392 are under 5%: p95 is fast again
                    assert call() == 200
                wait_for("the latency recovery", lambda: len(system_events(hooks)) == 4)
                time.sleep(1)  # a flapping monitor would have said more by now
    assert system_events(hooks) == [
        "upstream_error_rate",
        "upstream_error_rate_recovered",
        "upstream_latency",
        "upstream_latency_recovered",
    ]
    first = next(event for event in hooks.events() if event.get("kind") == "system")
    assert first["data"]["provider"] == "openai"
    assert 25 < first["data"]["error_rate_percent"] <= 60
    assert re.match(r"Provedor openai: \d+(,\d)?% das requisições falharam", first["text"])


def test_a_user_blocked_with_a_few_tokens_left_still_gets_the_100_percent_mail(
    sqlite_backend: Database, provider: str, tmp_path: Path, user: str, inbox_port: int
) -> None:
    """What is left can be too little for any request: the block itself says 100%."""
    email = f"{user}@example.com"
    with smtp_server(inbox_port) as inbox:
        env = gateway_env(tmp_path, provider, sqlite_backend, **alert_env(inbox_port))
        for gateway in start_gateway(env, tmp_path):
            assert ask(gateway, user, email) == 402
            gateway.fund(user, 1000)
            while ask(gateway, user, email, reply_tokens=100) == 200:
                pass
            assert ask(gateway, user, email) == 402  # blocked again: still one e-mail
            left = gateway.user_row(user)["balance"]
            assert 0 < left < 100
            wait_for("two e-mails", lambda: len(mails_to(inbox, email)) == 2)
            time.sleep(0.5)
    out = next(message for message in mails_to(inbox, email) if "80%" not in text_of(message))
    used = format_tokens("pt-BR", 1000 - left)
    assert f"Você usou todos os tokens deste período ({used} de 1.000)" in text_of(out)
    assert len(mails_to(inbox, email)) == 2
