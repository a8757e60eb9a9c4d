"""Usage windows, per-model caps and a user's own cap, checked in the reservation that holds the
balance: nothing over any limit, on either database, across gateways; and a refusal that says
which limit and when it reopens."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from solaris.ledger.ledger import UsageRecord
from solaris.ledger.users import Users
from solaris.metering.estimate import chat_prompt_tokens
from solaris.store.audit import AuditEntry, audit_entries
from solaris.store.schema import alert_outbox
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway
from tests.servers import free_port
from tests.test_web import Inbox, Visitor, portal_link

MESSAGES = [{"role": "user", "content": "Conte uma história."}]
COST = chat_prompt_tokens({"model": "gpt-4o-mini", "messages": MESSAGES}) + 16  # max_tokens 16

CAPS_YAML = """
plans:
  free:
    allowance_tokens: 0
    default: true
  daily:
    allowance_tokens: 0
    windows: [{every: day, tokens: 300}]
  hourly:
    allowance_tokens: 0
    windows: [{hours: 1, tokens: 200}]
  mini:
    allowance_tokens: 0
    model_caps: {"gpt-4o-mini": 250}
"""


def chat(stream: bool, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, "stream": stream, "max_tokens": 16}


def capped_env(tmp: Path, provider: str, backend: Database) -> dict[str, str]:
    config = tmp / "solaris.yaml"
    config.write_text(CAPS_YAML)
    return gateway_env(tmp, provider, backend, SOLARIS_CONFIG=str(config))


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.port = port  # type: ignore[attr-defined]
    yield handler
    controller.stop()


@pytest.fixture(scope="module")
def capped(
    own_backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory, inbox: Inbox
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("capped")
    env = capped_env(tmp, provider, own_backend)
    env.update(
        SOLARIS_SMTP_HOST="127.0.0.1",
        SOLARIS_SMTP_PORT=str(inbox.port),  # type: ignore[attr-defined]
        SOLARIS_SMTP_SECURITY="none",
        SOLARIS_ALERT_POLL_INTERVAL_S="0.2",
    )
    yield from start_gateway(env, tmp)


def on_plan(gateway: Gateway, plan: str, tokens: int = 100_000) -> str:
    """A funded user on `plan`, whom no gateway has seen yet (so none caches their plan)."""
    user = f"{plan}-{uuid.uuid4().hex[:8]}"

    async def subscribe(users: Users) -> None:  # the library `solaris users plan` calls
        found = await users.ensure(user)
        async with users.database.transaction() as conn:
            await users.change_plan(conn, found.id, plan, by="test")

    gateway._with_users(subscribe)
    gateway.fund(user, tokens)
    return user


def spend_until_refused(gateway: Gateway, user: str) -> httpx.Response:
    with gateway.client(user) as http:
        for _ in range(100):
            response = http.post("/v1/chat/completions", json=chat(False))
            if response.status_code != 200:
                return response
    raise AssertionError("never refused")


def test_a_day_window_refuses_with_its_limit_and_local_reopening(capped: Gateway) -> None:
    user = on_plan(capped, "daily")
    refused = spend_until_refused(capped, user)
    assert refused.status_code == 402
    assert refused.headers["x-solaris-blocked"] == "cap_day"
    error = refused.json()["error"]
    assert error["code"] == "usage_cap_reached"
    assert "limite diário do seu plano (daily: 300 tokens por dia)" in error["message"]
    assert "reabre em" in error["message"] and "às 00:00 (UTC-03:00)" in error["message"]
    charged = sum(row["billable"] for row in capped.usage_rows(user))
    assert 300 - COST < charged <= 300, "filled to the window, never past it"
    assert capped.user_row(user)["balance"] == 100_000 - charged  # the balance was not the limit
    with capped.client(user) as http:  # LibreChat's streamed chat: an assistant message
        streamed = http.post("/v1/chat/completions", json=chat(True))
    assert streamed.status_code == 200 and streamed.headers["x-solaris-blocked"] == "cap_day"
    assert "⏳ Você atingiu o limite diário" in streamed.text and "[DONE]" in streamed.text
    # The statement says why: one line for both refusals of that minute, nothing charged.
    statement = json.loads(capped.cli("statement", user, "--json"))
    [refused] = [line for line in statement["lines"] if line["kind"] == "refusal"]
    assert refused["amount"] == 0 and refused["model"] == "gpt-4o-mini"
    assert refused["note"].startswith("cap_day: Você atingiu o limite diário do seu plano")
    assert statement["closing"] == capped.user_row(user)["balance"]


def test_a_refusal_for_want_of_balance_is_a_line_of_the_csv(
    capped: Gateway, tmp_path: Path
) -> None:
    user = on_plan(capped, "free", tokens=1)
    with capped.client(user) as http:
        assert http.post("/v1/chat/completions", json=chat(False)).status_code == 402
    capped.cli("statement", user, "--csv", str(tmp_path / "extrato.csv"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "extrato.csv").read_text("utf-8-sig"))))
    assert [(row["kind"], row["debit"], row["credit"], row["balance"]) for row in rows] == [
        ("grant", "", "1", "1"),
        ("refusal", "", "", "1"),  # nothing charged, the balance as it was
    ]
    assert rows[1]["note"].startswith("insufficient_balance: Saldo de tokens insuficiente")


def test_a_rolling_window_about_to_reopen_says_retry_after(capped: Gateway) -> None:
    user = on_plan(capped, "hourly")
    # 190 tokens charged 59 min 40 s ago: the window is full for 20 more seconds.
    finished = datetime.now(UTC) - timedelta(minutes=59, seconds=40)

    async def old_usage(users: Users) -> None:
        found = await users.find(user)
        assert found is not None
        record = UsageRecord(
            "req_" + uuid.uuid4().hex, found.id, "chat", "gpt-4o-mini", 150, 40, 0, 0, 190,
            False, "ok", 5, finished_at=finished,
        )  # fmt: skip
        await users.ledger.settle(record)

    capped._with_users(old_usage)
    with capped.client(user) as http:
        refused = http.post("/v1/chat/completions", json=chat(False))
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 25
    assert refused.json()["error"]["code"] == "usage_cap_reached"
    assert "a cada 1 h" in refused.json()["error"]["message"]


def test_a_model_cap_counts_its_models_only(capped: Gateway) -> None:
    user = on_plan(capped, "mini")
    refused = spend_until_refused(capped, user)
    assert refused.status_code == 402 and refused.headers["x-solaris-blocked"] == "cap_model"
    assert "para gpt-4o-mini" in refused.json()["error"]["message"]
    rows = capped.usage_rows(user)
    assert sum(row["billable"] for row in rows) <= 250
    with capped.client(user) as http:  # another model of the plan is not capped
        other = http.post("/v1/chat/completions", json=chat(False, model="gpt-4o"))
    assert other.status_code == 200, other.text


def test_a_users_own_cap_is_enforced_and_can_be_lifted(capped: Gateway) -> None:
    user = on_plan(capped, "free")
    capped.cli("users", "limit", user, "--day", "120")
    refused = spend_until_refused(capped, user)
    assert refused.headers["x-solaris-blocked"] == "cap_own_day"
    assert "limite diário que definiu para si (120 tokens por dia)" in refused.text
    assert sum(row["billable"] for row in capped.usage_rows(user)) <= 120
    user_id = int(capped.user_row(user)["id"])
    with Visitor(capped) as member:  # lifted in the portal, which runs in the gateway's process
        member.portal_sign_in(portal_link(capped, user_id))
        token = member.csrf("/portal/limit")
        member.post("/portal/limit", data={"csrf": token, "action": "remove"})
    with capped.client(user) as http:
        assert http.post("/v1/chat/completions", json=chat(False)).status_code == 200


@pytest.fixture
def two_capped(
    postgres_url: str, redis_url: str, provider: str, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    from tests.conftest import new_postgres_database

    with new_postgres_database() as url:
        env = capped_env(tmp_path, provider, Database(url, redis_url))
        first, second = start_gateway(env, tmp_path), start_gateway(env, tmp_path)
        yield next(first), next(second)
        for gateway in (first, second):
            next(gateway, None)


async def _fire(urls: list[str], user: str, total: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}

    async def one(index: int, http: httpx.AsyncClient) -> None:
        url = urls[index % len(urls)] + "/v1/chat/completions"
        response = await http.post(url, json=chat(False), headers=headers)
        blocked = response.headers.get("x-solaris-blocked")
        outcomes[blocked or str(response.status_code)] += 1

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as http:
        await asyncio.gather(*(one(i, http) for i in range(total)))
    return outcomes


def test_two_gateways_in_parallel_never_pass_a_window(
    two_capped: tuple[Gateway, Gateway],
) -> None:
    first, second = two_capped
    for plan, header, limit in (
        ("daily", "cap_day", 300),
        ("mini", "cap_model", 250),
        ("free", "cap_own_day", 280),  # the user's own cap
    ):
        user = on_plan(first, plan)
        if plan == "free":
            first.cli("users", "limit", user, "--day", str(limit))
        outcomes = asyncio.run(_fire([first.url, second.url], user, total=60))
        rows = first.usage_rows(user)
        assert outcomes["200"] == len(rows) >= limit // COST - 2, outcomes
        assert outcomes["200"] + outcomes[header] + outcomes["balance_held"] == 60, outcomes
        assert sum(row["billable"] for row in rows) <= limit
        assert first.user_row(user)["held"] == 0
    assert "ledger verified" in first.cli("ledger", "verify")


def test_the_portal_shows_the_windows_and_sets_the_users_own_cap(capped: Gateway) -> None:
    user = on_plan(capped, "daily")
    spend_until_refused(capped, user)
    user_id = int(capped.user_row(user)["id"])
    with Visitor(capped) as member:
        member.portal_sign_in(portal_link(capped, user_id))
        page = member.get("/portal/limit")
        assert page.status_code == 200
        used = sum(row["billable"] for row in capped.usage_rows(user))
        assert 'data-kind="day"' in page.text and "Por dia (plano)" in page.text
        assert f"{used}<progress" in page.text and "Recomeça" in page.text
        token = member.csrf("/portal/limit")
        assert member.post("/portal/limit", data={"action": "set", "period": "month",
                                                  "tokens": "5000"}).status_code == 403  # fmt: skip
        saved = member.post(
            "/portal/limit",
            data={"csrf": token, "action": "set", "period": "month", "tokens": "5.000"},
        )
        assert saved.status_code == 303 and saved.headers["location"] == "/portal/limit?done=1"
        shown = member.get("/portal/limit?done=1").text
        assert "Limite salvo." in shown and 'data-kind="own_month"' in shown
        bad = {"csrf": token, "action": "set", "period": "year", "tokens": "10"}
        assert member.post("/portal/limit", data=bad).status_code == 400
        assert (
            member.post("/portal/limit", data={"csrf": token, "action": "remove"}).status_code
            == 303
        )
        assert 'data-kind="own_month"' not in member.get("/portal/limit").text

    async def entries(users: Users) -> list[AuditEntry]:
        async with users.database.transaction() as conn:
            return await audit_entries(conn, 10, 0, "user", str(user_id))

    changes = [entry for entry in capped._with_users(entries) if entry.action == "user.own_cap"]
    assert [entry.actor for entry in changes] == [f"user:{user_id}"] * 2


def test_a_window_at_80_percent_says_so_in_the_chat_and_by_email_once(
    capped: Gateway, inbox: Inbox
) -> None:
    user = on_plan(capped, "daily")
    email = f"{user}@example.com"
    replies = []
    with capped.client(user, **{"X-LibreChat-User-Email": email}) as http:
        for _ in range(20):
            response = http.post("/v1/chat/completions", json=chat(True))
            if response.headers.get("x-solaris-blocked"):
                break
            replies.append(response.text)
    noticed = [i for i, text in enumerate(replies) if "do seu limite diário" in text]
    used_before = [COST * (i + 1) for i in noticed]
    assert len(noticed) == 1 and used_before[0] >= 240, (noticed, len(replies))
    assert "⚠️ Você já usou 80% do seu limite diário" in replies[noticed[0]]
    message = inbox.wait_for(email)
    assert message["Subject"] == "Você usou 80% do seu limite diário"
    assert "/portal/limit" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    user_id = int(capped.user_row(user)["id"])

    async def cap_alerts(users: Users) -> list[str]:
        async with users.database.transaction() as conn:
            rows = await conn.scalars(
                select(alert_outbox.c.dedupe_key).where(alert_outbox.c.kind == "cap_threshold")
            )
            return [key for key in rows if key.startswith(f"cap:{user_id}:")]

    [key] = capped._with_users(cap_alerts)  # one alert, though later replies stayed past 80%
    assert key.endswith(":80:email")
