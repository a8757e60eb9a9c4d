"""Credit purchase by card, as a user and the provider see it: the portal's order, Stripe's
checkout page (the local fake, reached through the real `stripe` SDK), its signed webhooks, and
the balance — credited exactly once whatever the provider sends, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import stripe

from tests.conftest import Database, Gateway, gateway_env, start_gateway
from tests.devpayments import MP_SECRET, STRIPE_SECRET, fake_server, session_params
from tests.pgcluster import BIN, PrivateCluster
from tests.servers import free_port
from tests.test_web import Visitor, portal_link

PACKS = [
    {"name": "Básico", "tokens": 500_000, "price_cents": 2500},
    {"name": "Pro", "tokens": 2_000_000, "price_cents": 9000, "expires_in_days": 30},
]
ORDER_LINK = re.compile(r"/portal/orders/(ord_[0-9a-f]{32})")


@pytest.fixture(scope="module")
def shop(
    own_backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    """A gateway selling packs by card, and the Stripe fake it pays through (its address)."""
    tmp = tmp_path_factory.mktemp("shop")
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/payments/stripe/webhook"
    notices = f"http://127.0.0.1:{port}/payments/mercadopago/webhook"
    with fake_server(webhook, notices, tmp / "payments.log") as fake:
        for gateway in start_gateway(shop_env(tmp, provider, own_backend, port, fake), tmp):
            yield gateway, fake


def shop_env(tmp: Path, provider: str, backend: Database, port: int, fake: str) -> dict[str, str]:
    return gateway_env(
        tmp,
        provider,
        backend,
        SOLARIS_PORT=str(port),
        SOLARIS_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        SOLARIS_CREDIT_PACKS=orjson.dumps(PACKS).decode(),
        SOLARIS_STRIPE_API_KEY="sk_test_solaris",
        SOLARIS_STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
        SOLARIS_STRIPE_API_BASE=fake,
        SOLARIS_MERCADOPAGO_ACCESS_TOKEN="TEST-solaris",
        SOLARIS_MERCADOPAGO_WEBHOOK_SECRET=MP_SECRET,
        SOLARIS_MERCADOPAGO_API_BASE=fake,
    )


def control(fake: str, path: str, body: dict[str, Any] | None = None) -> Any:
    answer = httpx.post(f"{fake}/_control{path}", json=body or {}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def balance(gateway: Gateway, user: str) -> int:
    return int(gateway.user_row(user)["balance"])


def order_status(visitor: Visitor, public_id: str) -> str:
    page = visitor.get(f"/portal/orders/{public_id}")
    assert page.status_code == 200, page.text
    found = re.search(r'data-status="([a-z]+)"', page.text)
    assert found, page.text
    return found.group(1)


def buy(
    gateway: Gateway, visitor: Visitor, pack: str, provider: str = "stripe"
) -> tuple[str, httpx.Response]:
    """Order `pack` from the purchase page; the order id and the answer (to the checkout, or
    to the order's own page for Pix)."""
    csrf = visitor.csrf("/portal/buy")
    started = visitor.post("/portal/buy", data={"csrf": csrf, "pack": pack, "provider": provider})
    assert started.status_code == 303, started.text
    checkout = started.headers["location"]
    wanted = "/c/pay/" if provider == "stripe" else "/portal/orders/ord_"
    assert wanted in checkout, checkout
    orders = visitor.get("/portal/orders").text
    found = ORDER_LINK.search(orders)
    assert found, orders
    return found.group(1), started


def pay(checkout: str, fake: str) -> None:
    """The user pays on Stripe's (fake) hosted page; its webhook is delivered before return."""
    page = httpx.get(checkout, timeout=30)
    assert page.status_code == 200
    paid = httpx.post(checkout, data={"method": "card"}, timeout=30)
    assert paid.status_code in (200, 303), paid.text
    control(fake, "/webhooks/settle")


def signed_in(gateway: Gateway, user: str) -> Visitor:
    gateway.fund(user, 1)  # the user exists, as after a first chat
    visitor = Visitor(gateway)
    visitor.portal_sign_in(portal_link(gateway, int(gateway.user_row(user)["id"])))
    return visitor


def test_a_paid_card_order_credits_its_tokens_once(shop: tuple[Gateway, str]) -> None:
    gateway, fake = shop
    user = "buyer-" + uuid.uuid4().hex[:8]
    with signed_in(gateway, user) as visitor:
        before = balance(gateway, user)
        public_id, started = buy(gateway, visitor, "Básico")
        assert order_status(visitor, public_id) == "pending"
        assert balance(gateway, user) == before, "starting an order credits nothing"
        pay(started.headers["location"], fake)
        assert order_status(visitor, public_id) == "paid"
        assert balance(gateway, user) == before + 500_000
        control(fake, "/events/last/send", {"times": 3})  # the provider delivers it again
        assert balance(gateway, user) == before + 500_000, "a repeated event credits once"
        page = visitor.get(f"/portal/orders/{public_id}").text
        assert "500.000 tokens foram somados" in page
    with gateway.client(user) as client:  # and the next chat is served at once
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "oi"}]}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_refunds_take_back_their_share_and_a_dispute_all_of_it(shop: tuple[Gateway, str]) -> None:
    gateway, fake = shop
    user = "refund-" + uuid.uuid4().hex[:8]
    with signed_in(gateway, user) as visitor:
        before = balance(gateway, user)
        public_id, started = buy(gateway, visitor, "Pro")
        pay(started.headers["location"], fake)
        session = started.headers["location"].rsplit("/", 1)[1]
        control(fake, f"/stripe/sessions/{session}/refund", {"amount": 2250})  # a quarter
        assert balance(gateway, user) == before + 2_000_000 - 500_000
        control(fake, "/events/last/send", {"times": 2})
        assert balance(gateway, user) == before + 1_500_000, "a repeated refund takes back once"
        control(fake, f"/stripe/sessions/{session}/dispute", {"amount": 6750})
        assert balance(gateway, user) == before, "a dispute takes back the rest"
        assert order_status(visitor, public_id) == "disputed"
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_forged_stale_or_mismatched_payments_credit_nothing(shop: tuple[Gateway, str]) -> None:
    gateway, fake = shop
    user = "forged-" + uuid.uuid4().hex[:8]
    with signed_in(gateway, user) as visitor:
        before = balance(gateway, user)
        public_id, started = buy(gateway, visitor, "Básico")
        session = started.headers["location"].rsplit("/", 1)[1]
        control(fake, "/webhooks/hold")
        control(fake, f"/stripe/sessions/{session}/pay", {"amount_total": 250})  # R$ 2,50
        stale = int(time.time()) - 3600
        spoiled = (
            {"secret": "whsec_wrong"},
            {"timestamp": stale},
            {"unsigned": True},
            {"body": True},
        )
        for tamper in spoiled:
            sent = control(fake, "/events/last/send", {"tamper": tamper})
            assert [d["status"] for d in sent["sent"]] == [400], (tamper, sent)
        control(fake, "/webhooks/release")
        control(fake, "/webhooks/settle")
        assert balance(gateway, user) == before, "a payment of another amount credits nothing"
        assert order_status(visitor, public_id) == "pending"
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_no_form_buys_for_another_user_or_without_its_token(shop: tuple[Gateway, str]) -> None:
    gateway, _fake = shop
    owner, other = ("own-" + uuid.uuid4().hex[:8], "other-" + uuid.uuid4().hex[:8])
    with signed_in(gateway, owner) as visitor:
        public_id, _started = buy(gateway, visitor, "Básico")
        refused = visitor.post("/portal/buy", data={"pack": "Básico", "provider": "stripe"})
        assert refused.status_code == 403
        unknown = visitor.post(
            "/portal/buy",
            data={"csrf": visitor.csrf("/portal/buy"), "pack": "Gigante", "provider": "stripe"},
        )
        assert unknown.status_code == 400
    with signed_in(gateway, other) as intruder:
        assert intruder.get(f"/portal/orders/{public_id}").status_code == 404
    with httpx.Client(base_url=gateway.url) as anonymous:
        assert anonymous.post("/portal/buy", data={"pack": "Básico"}).status_code == 303
        hook = anonymous.post("/payments/stripe/webhook", content=b"{}")
        assert hook.status_code == 400 and hook.json()["error"]["code"] == "invalid_event"


def test_events_out_of_order_and_payments_not_ours(shop: tuple[Gateway, str]) -> None:
    """The refund's event before the payment's; a signed event about another deployment's
    payment; a signed notification of a payment the provider does not know."""
    gateway, fake = shop
    user = "reorder-" + uuid.uuid4().hex[:8]
    with signed_in(gateway, user) as visitor:
        before = balance(gateway, user)
        public_id, started = buy(gateway, visitor, "Pro")
        session = started.headers["location"].rsplit("/", 1)[1]
        control(fake, "/webhooks/hold")
        try:
            control(fake, f"/stripe/sessions/{session}/pay")
            control(fake, f"/stripe/sessions/{session}/refund", {"amount": 2250})  # a quarter
            released = control(fake, "/webhooks/release", {"reverse": True})  # refund first
        finally:
            control(fake, "/webhooks/release")
        control(fake, "/webhooks/settle")
        statuses = [d["status"] for e in released["events"] for d in e["deliveries"]]
        assert statuses and set(statuses) == {200}, released
        assert balance(gateway, user) == before + 1_500_000, "paid, then a quarter taken back"
        assert order_status(visitor, public_id) == "paid"
    orders_before = gateway.cli("orders", "list", "--json")

    other = stripe.StripeClient("sk_test_elsewhere", base_addresses={"api": fake})
    elsewhere = other.v1.checkout.sessions.create(params=session_params("ord_" + "0" * 32))
    paid = control(fake, f"/stripe/sessions/{elsewhere.id}/pay")
    assert [d["status"] for d in paid["events"][0]["deliveries"]] == [200], "acknowledged"

    ts, request_id, unknown = str(int(time.time() * 1000)), uuid.uuid4().hex, "987654321"
    manifest = f"id:{unknown};request-id:{request_id};ts:{ts};".encode()
    v1 = hmac.new(MP_SECRET.encode(), manifest, hashlib.sha256).hexdigest()
    notice = httpx.post(
        f"{gateway.url}/payments/mercadopago/webhook",
        params={"data.id": unknown, "type": "payment"},
        headers={"x-signature": f"ts={ts},v1={v1}", "x-request-id": request_id},
        json={"id": 1, "type": "payment", "data": {"id": unknown}},
    )
    assert notice.status_code == 400 and notice.json()["error"]["code"] == "invalid_event"
    assert gateway.cli("orders", "list", "--json") == orders_before, "no order changed"
    assert "ledger verified" in gateway.cli("ledger", "verify")


@pytest.mark.skipif(BIN is None, reason="PostgreSQL server binaries are not installed")
def test_a_webhook_while_the_database_is_away_is_refused_then_credited_once(
    provider: str, redis_url: str, tmp_path: Path
) -> None:
    cluster = PrivateCluster()
    cluster.create()
    port = free_port()
    try:
        webhook = f"http://127.0.0.1:{port}/payments/stripe/webhook"
        with fake_server(webhook, None, tmp_path / "payments.log") as fake:
            env = shop_env(tmp_path, provider, Database(cluster.url, redis_url), port, fake)
            for gateway in start_gateway(env, tmp_path):
                user = "outage-" + uuid.uuid4().hex[:8]
                with signed_in(gateway, user) as visitor:
                    before = balance(gateway, user)
                    _public_id, started = buy(gateway, visitor, "Básico")
                    session = started.headers["location"].rsplit("/", 1)[1]
                    cluster.stop()
                    paid = control(fake, f"/stripe/sessions/{session}/pay")
                    deliveries = [d for event in paid["events"] for d in event["deliveries"]]
                    assert [d["status"] for d in deliveries] == [503], deliveries
                    cluster.start()
                    for _ in range(2):  # Stripe delivers it again, maybe more than once
                        resent = control(fake, "/events/last/send")
                        assert [d["status"] for d in resent["sent"]] == [200], resent
                    assert balance(gateway, user) == before + 500_000
                assert "ledger verified" in gateway.cli("ledger", "verify")
    finally:
        cluster.destroy()


PIX_CODE = re.compile(r'data-testid="pix-code">([^<]+)<')


def test_a_pix_order_shows_its_code_and_credits_once_when_approved(
    shop: tuple[Gateway, str],
) -> None:
    gateway, fake = shop
    user = "pix-" + uuid.uuid4().hex[:8]
    with signed_in(gateway, user) as visitor:
        before = balance(gateway, user)
        public_id, _started = buy(gateway, visitor, "Básico", "mercadopago")
        page = visitor.get(f"/portal/orders/{public_id}").text
        code = PIX_CODE.search(page)
        assert code and code.group(1).startswith("000201"), page  # a Pix BR Code
        assert 'data-testid="pix-qr"' in page and 'http-equiv="refresh"' in page
        payment = pix_payment(fake, public_id)
        control(fake, f"/mercadopago/payments/{payment}/approve")
        assert order_status(visitor, public_id) == "paid"
        assert balance(gateway, user) == before + 500_000
        control(fake, "/events/last/send", {"times": 2})
        for tamper in ({"secret": "wrong"}, {"body": True}, {"unsigned": True}):
            sent = control(fake, "/events/last/send", {"tamper": tamper})
            assert [d["status"] for d in sent["sent"]] == [400], (tamper, sent)
        assert balance(gateway, user) == before + 500_000, "credited once"
        control(fake, f"/mercadopago/payments/{payment}/refund", {"amount": 12.5})
        assert balance(gateway, user) == before + 250_000, "half refunded, half taken back"
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_a_pix_paid_with_another_amount_credits_nothing(shop: tuple[Gateway, str]) -> None:
    gateway, fake = shop
    user = "pixless-" + uuid.uuid4().hex[:8]
    with signed_in(gateway, user) as visitor:
        before = balance(gateway, user)
        public_id, _started = buy(gateway, visitor, "Básico", "mercadopago")
        payment = pix_payment(fake, public_id)
        control(fake, f"/mercadopago/payments/{payment}/approve", {"transaction_amount": 2.5})
        assert balance(gateway, user) == before
        assert order_status(visitor, public_id) == "pending"


def pix_payment(fake: str, public_id: str) -> int:
    found = httpx.get(
        f"{fake}/v1/payments/search",
        params={"external_reference": public_id},
        headers={"Authorization": "Bearer TEST-solaris"},
    ).json()["results"]
    assert len(found) == 1, found
    return int(found[0]["id"])


def test_a_payment_whose_webhook_is_lost_is_credited_by_reconciliation(
    shop: tuple[Gateway, str],
) -> None:
    gateway, fake = shop
    user = "lost-" + uuid.uuid4().hex[:8]
    with signed_in(gateway, user) as visitor:
        before = balance(gateway, user)
        public_id, started = buy(gateway, visitor, "Básico")
        session = started.headers["location"].rsplit("/", 1)[1]
        control(fake, "/webhooks/hold")  # the webhook never arrives
        try:
            control(fake, f"/stripe/sessions/{session}/pay")
            assert balance(gateway, user) == before
            assert "orders asked about" in gateway.cli("orders", "reconcile")
            assert balance(gateway, user) == before + 500_000
            assert order_status(visitor, public_id) == "paid"
        finally:
            control(fake, "/webhooks/release")  # late after all
            control(fake, "/webhooks/settle")
        assert balance(gateway, user) == before + 500_000, "the late webhook credits nothing"
    listed = orjson.loads(gateway.cli("orders", "list", "--user", user, "--json"))
    assert [(row["public_id"], row["status"]) for row in listed] == [(public_id, "paid")]
