"""Orders as the operator sees them, through a real gateway and the payment fakes: refunds from
the admin API, the CLI and the dashboard (the ledger moves only when the provider's event says
so), the filters, who may reach them, the receipt e-mail (once, whatever arrives twice) and the
Prometheus counters — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from solaris.ledger.ledger import Ledger
from solaris.ledger.users import Users
from solaris.store.database import open_database
from solaris.store.schema import alert_outbox
from tests.conftest import Database, Gateway, start_gateway
from tests.devpayments import fake_server
from tests.servers import free_port, wait_for
from tests.test_admin_api import client_address
from tests.test_purchases import balance, buy, control, order_status, pay, pix_payment, shop_env
from tests.test_web import PASSWORD, Inbox, Visitor, create_admin, in_thread, portal_link

Shop = tuple[Gateway, str, Inbox]


@pytest.fixture(scope="module")
def shop(
    own_backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """A gateway selling packs by card and Pix, e-mailing through a local SMTP server."""
    from aiosmtpd.controller import Controller

    tmp = tmp_path_factory.mktemp("orders")
    port, smtp_port = free_port(), free_port()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    webhook = f"http://127.0.0.1:{port}/payments/stripe/webhook"
    notices = f"http://127.0.0.1:{port}/payments/mercadopago/webhook"
    try:
        with fake_server(webhook, notices, tmp / "payments.log") as fake:
            env = shop_env(tmp, provider, own_backend, port, fake)
            env.update(
                SOLARIS_SMTP_HOST="127.0.0.1",
                SOLARIS_SMTP_PORT=str(smtp_port),
                SOLARIS_SMTP_SECURITY="none",
                SOLARIS_SMTP_SENDER="SOLARIS <billing@example.com>",
                SOLARIS_ALERT_POLL_INTERVAL_S="0.2",
            )
            for gateway in start_gateway(env, tmp):
                yield gateway, fake, inbox
    finally:
        smtp.stop()


def buyer(gateway: Gateway, email: str | None = None) -> tuple[str, Visitor]:
    """A new user (with this e-mail, as LibreChat sends it) signed in to the portal."""
    user = "ops-" + uuid.uuid4().hex[:8]

    async def job() -> int:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            users = Users(Ledger(database))
            found = await users.ensure(user, email)
            async with database.transaction() as conn:
                await users.ledger.credit(conn, found.id, "grant", 1, f"t:{user}", "test")
            return found.id
        finally:
            await database.close()

    user_id = asyncio.run(job())
    visitor = Visitor(gateway)
    visitor.portal_sign_in(portal_link(gateway, user_id))
    return user, visitor


def admin_api(gateway: Gateway) -> httpx.Client:
    email = create_admin(gateway)
    signed = httpx.post(
        gateway.url + "/api/admin/login",
        json={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": client_address()},
        timeout=30,
    )
    assert signed.status_code == 200, signed.text
    token = signed.json()["access_token"]
    return httpx.Client(
        base_url=gateway.url + "/api/admin",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def paid_order(gateway: Gateway, fake: str, visitor: Visitor, pack: str) -> tuple[str, str]:
    """A card order of `pack`, paid; its id and its Checkout Session's."""
    public_id, started = buy(gateway, visitor, pack)
    pay(started.headers["location"], fake)
    assert order_status(visitor, public_id) == "paid"
    return public_id, started.headers["location"].rsplit("/", 1)[1]


def cli(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "solaris", *args],
        env={**os.environ, **gateway.env},
        capture_output=True,
        text=True,
    )


def test_an_api_refund_moves_the_ledger_only_when_the_provider_confirms(shop: Shop) -> None:
    gateway, fake, _inbox = shop
    user, visitor = buyer(gateway)
    with visitor, admin_api(gateway) as api:
        before = balance(gateway, user)
        public_id, _session = paid_order(gateway, fake, visitor, "Pro")  # R$ 90,00, 2M tokens
        control(fake, "/webhooks/hold")
        try:
            asked = api.post(f"/orders/{public_id}/refund", json={"amount_cents": 2250})
            assert asked.status_code == 202, asked.text
            assert asked.json() == {
                "order": public_id, "amount_cents": 2250, "currency": "BRL", "status": "requested"
            }  # fmt: skip
            again = api.post(f"/orders/{public_id}/refund", json={"amount_cents": 2250})
            assert again.status_code == 202, "a repeat before the event is the same refund"
            assert balance(gateway, user) == before + 2_000_000, "asked, not yet confirmed"
            order = api.get(f"/orders/{public_id}").json()
            assert (order["status"], order["refunded_cents"]) == ("paid", 0)
            actions = [(line["action"], line["actor"]) for line in order["audit"]]
            assert actions[0][0] == "order.refund_requested"
            assert actions[0][1].startswith("admin:")
        finally:
            control(fake, "/webhooks/release")
            control(fake, "/webhooks/settle")
        assert balance(gateway, user) == before + 1_500_000, "a quarter refunded, once"
        order = api.get(f"/orders/{public_id}").json()
        assert (order["status"], order["refunded_cents"]) == ("paid", 2250)
        assert "charge.refunded" in [event["kind"] for event in order["events"]]
        rest = api.post(f"/orders/{public_id}/refund")  # no body: all that is left
        assert rest.status_code == 202 and rest.json()["amount_cents"] == 6750, rest.text
        control(fake, "/webhooks/settle")
        assert balance(gateway, user) == before
        assert api.get(f"/orders/{public_id}").json()["status"] == "refunded"
        refused = api.post(f"/orders/{public_id}/refund")
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "order_not_refundable"
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_a_cli_refund_of_a_pix_order_waits_for_mercado_pago(shop: Shop) -> None:
    gateway, fake, _inbox = shop
    user, visitor = buyer(gateway)
    with visitor:
        before = balance(gateway, user)
        public_id, _started = buy(gateway, visitor, "Básico", "mercadopago")  # R$ 25,00
        control(fake, f"/mercadopago/payments/{pix_payment(fake, public_id)}/approve")
        assert balance(gateway, user) == before + 500_000
        control(fake, "/webhooks/hold")
        try:
            done = gateway.cli("orders", "refund", public_id, "--amount", "1250")
            assert f"refund of 1250 BRL requested for {public_id}" in done
            assert balance(gateway, user) == before + 500_000, "asked, not yet confirmed"
        finally:
            control(fake, "/webhooks/release")
            control(fake, "/webhooks/settle")
        assert balance(gateway, user) == before + 250_000, "half refunded, half taken back"
        shown = json.loads(gateway.cli("orders", "show", public_id))
        assert (shown["status"], shown["refunded_cents"], shown["refundable_cents"]) == (
            "paid", 1250, 1250,
        )  # fmt: skip
        assert ("order.refund_requested", "cli") in [
            (line["action"], line["actor"]) for line in shown["audit"]
        ]
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_unpaid_orders_and_amounts_beyond_what_is_left_are_refused(shop: Shop) -> None:
    gateway, fake, _inbox = shop
    _user, visitor = buyer(gateway)
    with visitor, admin_api(gateway) as api:
        pending, _started = buy(gateway, visitor, "Básico")
        refused = api.post(f"/orders/{pending}/refund")
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "order_not_refundable"
        assert "not paid" in refused.json()["error"]["message"]
        failed = cli(gateway, "orders", "refund", pending)
        assert failed.returncode == 2 and "not paid" in failed.stderr, failed.stderr
        paid, _session = paid_order(gateway, fake, visitor, "Básico")
        for body, param in (({"amount_cents": 2501}, "amount_cents"), ({"amount_cents": 0}, None)):
            answer = api.post(f"/orders/{paid}/refund", json=body)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["param"] in (param, "amount_cents")
        assert api.post(f"/orders/ord_{'0' * 32}/refund").status_code == 404
        assert api.post("/orders/not-an-order/refund").status_code == 400
        assert api.get(f"/orders/{paid}").json()["refunded_cents"] == 0, "nothing was asked"
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_orders_are_listed_by_status_provider_user_and_date(shop: Shop) -> None:
    gateway, fake, _inbox = shop
    user, visitor = buyer(gateway)
    with visitor, admin_api(gateway) as api:
        paid, _session = paid_order(gateway, fake, visitor, "Básico")
        pix, _started = buy(gateway, visitor, "Pro", "mercadopago")

        def listed(**query: str) -> list[str]:
            answer = api.get("/orders", params={"user": user, **query})
            assert answer.status_code == 200, answer.text
            return [order["public_id"] for order in answer.json()]

        assert listed() == [pix, paid]
        assert listed(status="paid") == [paid]
        assert listed(provider="mercadopago") == [pix]
        assert listed(since="2999-01-01T00:00:00Z") == []
        assert listed(until="2000-01-01T00:00:00Z") == []
        assert listed(since="2000-01-01T00:00:00Z", limit="1") == [pix]
        for bad in ({"status": "lost"}, {"provider": "paypal"}, {"limit": "0"}):
            assert api.get("/orders", params=bad).status_code == 400, bad
        cli_listed = orjson.loads(
            gateway.cli("orders", "list", "--user", user, "--provider", "stripe", "--json")
        )
        assert [row["public_id"] for row in cli_listed] == [paid]
        revenue = api.get(
            "/revenue",
            params={"by": "pack", "since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"},
        )
        assert revenue.status_code == 400, "at most a year at once"
        today = api.get(
            "/revenue", params={"by": "pack", "since": _days(-1), "until": _days(1)}
        ).json()
        basic = next(row for row in today if row["key"] == "Básico" and row["currency"] == "BRL")
        assert basic["paid_cents"] >= 2500 and isinstance(basic["net_cents"], int)


def test_only_admins_reach_the_order_routes(shop: Shop) -> None:
    gateway, fake, _inbox = shop
    _user, visitor = buyer(gateway)
    with visitor:
        public_id, _session = paid_order(gateway, fake, visitor, "Básico")
        routes = [
            ("GET", "/api/admin/orders"),
            ("GET", f"/api/admin/orders/{public_id}"),
            ("POST", f"/api/admin/orders/{public_id}/refund"),
            ("GET", f"/api/admin/revenue?since={_days(-1)}&until={_days(1)}"),
        ]
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer sk-librechat-test-service-key"}):
                answer = httpx.request(method, gateway.url + path, headers=headers, timeout=30)
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.json()["error"]["type"] == "invalid_request_error"
            if "revenue" in path:
                continue  # the dashboard shows revenue on its orders page
            # A portal user's session is no admin's.
            page = visitor.request(method, path.replace("/api/admin", "/admin"))
            assert page.status_code in (303, 403), (method, path, page.status_code)
            if page.status_code == 303:
                assert page.headers["location"].startswith("/admin/login")
    with Visitor(gateway) as admin:
        assert admin.admin_sign_in(create_admin(gateway)).status_code == 303
        no_token = admin.post(f"/admin/orders/{public_id}/refund", data={"amount_cents": "1"})
        assert no_token.status_code == 403


def test_the_dashboard_lists_orders_and_asks_for_a_refund(shop: Shop) -> None:
    gateway, fake, _inbox = shop
    user, visitor = buyer(gateway)
    with visitor, Visitor(gateway) as admin:
        before = balance(gateway, user)
        public_id, _session = paid_order(gateway, fake, visitor, "Pro")
        assert admin.admin_sign_in(create_admin(gateway)).status_code == 303
        listing = admin.get(f"/admin/orders?user={user}&status=paid&since=2000-01-01")
        assert listing.status_code == 200 and public_id in listing.text
        assert 'id="revenue-days-1-data"' in listing.text and '"type": "doughnut"' in listing.text
        assert public_id not in admin.get(f"/admin/orders?user={user}&status=pending").text
        assert "AAAA-MM-DD" in admin.get("/admin/orders?since=yesterday").text
        page = admin.get(f"/admin/orders/{public_id}")
        assert page.status_code == 200 and 'data-testid="refund-form"' in page.text
        csrf = admin.csrf(f"/admin/orders/{public_id}")
        too_much = admin.post(
            f"/admin/orders/{public_id}/refund", data={"csrf": csrf, "amount_cents": "9001"}
        )
        assert too_much.status_code == 400 and 'data-testid="problem"' in too_much.text
        asked = admin.post(
            f"/admin/orders/{public_id}/refund", data={"csrf": csrf, "amount_cents": "4500"}
        )
        assert asked.status_code == 303, asked.text
        assert asked.headers["location"] == f"/admin/orders/{public_id}?done=refund"
        control(fake, "/webhooks/settle")
        assert balance(gateway, user) == before + 1_000_000
        shown = admin.get(f"/admin/orders/{public_id}").text
        assert "order.refund_requested" in shown and "admin:" in shown
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_a_receipt_is_mailed_once_in_the_buyers_language(shop: Shop) -> None:
    gateway, fake, inbox = shop
    email = f"receipt-{uuid.uuid4().hex[:8]}@example.com"
    _user, visitor = buyer(gateway, email)
    with visitor:
        public_id, _session = paid_order(gateway, fake, visitor, "Básico")
        control(fake, "/events/last/send", {"times": 3})  # the paid event, three times more
        control(fake, "/webhooks/settle")
        assert "orders asked about" in gateway.cli("orders", "reconcile")
        message = in_thread(lambda: inbox.wait_for(email))
        assert message["Subject"].startswith("Recibo: 500.000 tokens (R$")
        body = message.get_body(("plain",))
        assert body is not None and f"/portal/orders/{public_id}" in body.get_content()
    english = f"receipt-en-{uuid.uuid4().hex[:8]}@example.com"
    _user, visitor = buyer(gateway, english)
    with visitor:
        visitor.get("/portal/lang/en?next=/portal")
        paid_order(gateway, fake, visitor, "Básico")
        assert in_thread(lambda: inbox.wait_for(english))["Subject"].startswith("Receipt: ")
    rows = _outbox_rows(gateway, f"receipt:{public_id}")
    assert len(rows) == 1 and rows[0]["recipient"] == email
    wait_for(
        "the receipt sent",
        lambda: _outbox_rows(gateway, rows[0]["dedupe_key"])[0]["state"] == "sent",
    )
    assert len([m for m in inbox.messages if m["To"] == email]) == 1


def test_order_and_revenue_counters_are_on_metrics(shop: Shop) -> None:
    gateway, fake, _inbox = shop
    user, visitor = buyer(gateway)
    with visitor:
        _public_id, session = paid_order(gateway, fake, visitor, "Básico")
        control(fake, f"/stripe/sessions/{session}/refund", {"amount": 500})
    metrics = httpx.get(gateway.url + "/metrics", timeout=30).text
    for line in (
        'solaris_orders_total{provider="stripe",status="pending"}',
        'solaris_orders_total{provider="stripe",status="paid"}',
        'solaris_revenue_minor_units_total{currency="BRL",provider="stripe"}',
        'solaris_refunded_minor_units_total{currency="BRL",provider="stripe"}',
    ):
        assert line in metrics, line
    revenue = _sample(
        metrics, 'solaris_revenue_minor_units_total{currency="BRL",provider="stripe"}'
    )
    assert revenue >= 2500 and revenue == int(revenue)
    assert balance(gateway, user) > 0


def _sample(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


def _days(offset: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _outbox_rows(gateway: Gateway, key: str) -> list[dict[str, Any]]:
    async def job() -> list[dict[str, Any]]:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            query = select(alert_outbox).where(alert_outbox.c.dedupe_key == key)
            async with database.transaction() as conn:
                return [dict(row._mapping) for row in await conn.execute(query)]
        finally:
            await database.close()

    return asyncio.run(job())
