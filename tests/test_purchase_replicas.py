"""One provider event reaching two gateway replicas (PostgreSQL + Redis) at the same instant, as a
load balancer's retry or a provider's duplicate delivery may: the order is credited once.

The fakes post the same signed bytes to both replicas at once (`/_control/events/{seq}/send`
with `urls`); each replica verifies the event, fetches the payment and converges the order, and
the order's row lock and its purchase entry's idempotency key leave one credit between them.
Each event goes to each replica twice at once, so the deliveries do overlap: with neither the
lock nor the key, this test sees the order credited several times over.
(The webhook that never comes, credited by reconciliation, is in tests/test_purchases.py.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from sqlalchemy import func, select

from solaris.store.database import open_database
from solaris.store.schema import ledger_entries, payment_events
from tests.conftest import Database, Gateway, new_postgres_database, start_gateway
from tests.devpayments import fake_server
from tests.servers import free_port
from tests.test_purchases import balance, buy, control, pix_payment, shop_env, signed_in

ROUNDS = 3  # orders per provider, each of whose events both replicas take at once, twice
TOKENS = 500_000  # tests/test_purchases.py's "Básico"


@pytest.fixture(scope="module")
def replicas(
    provider: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway, str]]:
    """Two gateways on one PostgreSQL database and Redis, and the fakes (webhooks to the first)."""
    tmp = tmp_path_factory.mktemp("replicas")
    first, second = free_port(), free_port()
    webhook = f"http://127.0.0.1:{first}/payments/stripe/webhook"
    notices = f"http://127.0.0.1:{first}/payments/mercadopago/webhook"
    with (
        new_postgres_database() as url,
        fake_server(webhook, notices, tmp / "payments.log") as fake,
        ExitStack() as stack,
    ):
        env = shop_env(tmp, provider, Database(url, redis_url), first, fake)
        one = stack.enter_context(contextmanager(start_gateway)(env, tmp))
        two = stack.enter_context(
            contextmanager(start_gateway)({**env, "SOLARIS_PORT": str(second)}, tmp)
        )
        yield one, two, fake


def hooks(gateway: Gateway, provider: str) -> str:
    return f"{gateway.url}/payments/{provider}/webhook"


def counts(gateway: Gateway, user_id: int, event_ids: list[str]) -> tuple[int, int]:
    """The user's purchase entries, and how many times these provider events were kept."""

    async def job() -> tuple[int, int]:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            async with database.transaction() as conn:
                purchases = await conn.scalar(
                    select(func.count()).where(
                        ledger_entries.c.user_id == user_id, ledger_entries.c.kind == "purchase"
                    )
                )
                events = await conn.scalar(
                    select(func.count()).where(payment_events.c.event_id.in_(event_ids))
                )
                return int(purchases or 0), int(events or 0)
        finally:
            await database.close()

    return asyncio.run(job())


@pytest.mark.parametrize("method", ["stripe", "mercadopago"])
def test_one_webhook_at_two_replicas_at_once_credits_once(
    replicas: tuple[Gateway, Gateway, str], method: str
) -> None:
    one, two, fake = replicas
    user = f"twice-{method}-" + uuid.uuid4().hex[:8]
    with signed_in(one, user) as visitor:
        user_id = int(one.user_row(user)["id"])
        before = balance(one, user)
        sent_ids: list[str] = []
        bought: list[str] = []
        for _round in range(ROUNDS):
            public_id, started = buy(one, visitor, "Básico", method)
            bought.append(public_id)
            control(fake, "/webhooks/hold")  # the provider's own delivery comes late
            try:
                if method == "stripe":
                    session = started.headers["location"].rsplit("/", 1)[1]
                    changed = control(fake, f"/stripe/sessions/{session}/pay")
                else:
                    payment = pix_payment(fake, public_id)
                    changed = control(fake, f"/mercadopago/payments/{payment}/approve")
                assert changed["events"], changed
                for event in changed["events"]:
                    urls = [hooks(one, method), hooks(two, method)] * 2
                    sent = control(fake, f"/events/{event['seq']}/send", {"urls": urls})
                    assert sorted(d["url"].split("?")[0] for d in sent["sent"]) == sorted(urls)
                    assert [d["status"] for d in sent["sent"]] == [200] * len(urls), sent
                    sent_ids.append(str(event["body"]["id"]))  # what the receivers read
            finally:
                control(fake, "/webhooks/release")  # and then the late one, once more
                control(fake, "/webhooks/settle")
        assert balance(one, user) == before + ROUNDS * TOKENS
        assert balance(two, user) == before + ROUNDS * TOKENS
        purchases, kept = counts(one, user_id, sent_ids)
        assert purchases == ROUNDS, "one purchase entry per order"
        assert len(set(sent_ids)) == len(sent_ids) >= ROUNDS
        assert kept == len(sent_ids), "each event kept once, by its provider's id"
        for public_id in bought:
            assert 'data-status="paid"' in visitor.get(f"/portal/orders/{public_id}").text
    assert "ledger verified" in one.cli("ledger", "verify")  # one database under both
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "oi"}]}
    for gateway in (one, two):  # and the next chat is served at once on either replica
        with gateway.client(user) as client:
            served = client.post("/v1/chat/completions", json=chat)
        assert served.status_code == 200, served.text
