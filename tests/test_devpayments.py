"""`solaris dev-payments`'s Stripe, driven through the official SDK with only its base address
changed, as the gateway will drive Stripe; its webhooks checked with `construct_event`. The
Mercado Pago side is in test_devpayments_pix.py."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from solaris.payments.base import OrderToPay
from solaris.payments.stripe import StripeCheckout
from tests.devpayments import (
    STRIPE_SECRET,
    fake_server,
    header,
    raw_stripe_delivery,
    session_params,
    stripe_events,
    verified,
)
from tests.servers import Hooks, free_port, wait_for, webhook_server


@pytest.fixture(scope="module")
def stripe_hooks() -> Iterator[Hooks]:
    with webhook_server() as hooks:
        yield hooks


@pytest.fixture(scope="module")
def fake(stripe_hooks: Hooks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("devpayments") / "devpayments.log"
    with fake_server(stripe_hooks.url, None, log) as url:
        yield url


@pytest.fixture()
def client(fake: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_devpayments", base_addresses={"api": fake})


@pytest.fixture()
def control(fake: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake, timeout=20.0) as http:
        yield http
        http.post("/_control/webhooks/release")  # a test that held leaves nothing held


def test_one_idempotency_key_makes_one_session(client: stripe.StripeClient) -> None:
    params = session_params("ord-idem")
    first = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k-1"})
    again = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k-1"})
    assert again.id == first.id
    assert first.id.startswith("cs_test_")
    assert (first.object, first.status, first.payment_status) == (
        "checkout.session",
        "open",
        "unpaid",
    )
    assert (first.amount_total, first.currency, first.livemode) == (3980, "brl", False)
    assert first.client_reference_id == "ord-idem"
    assert first.metadata is not None and first.metadata.to_dict() == {"order_id": "ord-idem"}
    assert (first.locale, first.customer_email) == ("pt-BR", "alice@example.com")
    other = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k-2"})
    assert other.id != first.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(
            params=session_params("ord-other"), options={"idempotency_key": "k-1"}
        )
    assert client.v1.checkout.sessions.retrieve(first.id).id == first.id


def test_the_modules_own_configuration_reaches_the_fake_too(fake: str) -> None:
    """`stripe.api_base`, the SDK's other way to point elsewhere, reaches the same fake."""
    saved = stripe.api_key, stripe.api_base
    stripe.api_key, stripe.api_base = "sk_test_module", fake
    try:
        session = stripe.checkout.Session.create(**session_params("ord-module"))
        assert stripe.checkout.Session.retrieve(session.id).client_reference_id == "ord-module"
    finally:
        stripe.api_key, stripe.api_base = saved


def test_paying_on_the_hosted_page_fires_a_signed_completed_event(
    client: stripe.StripeClient, stripe_hooks: Hooks
) -> None:
    session = client.v1.checkout.sessions.create(params=session_params("ord-page"))
    assert session.url is not None
    with httpx.Client(timeout=20.0) as browser:
        page = browser.get(session.url)
        assert page.status_code == 200
        assert "1M tokens" in page.text and "BRL 39.80" in page.text
        cancel = re.search(r'<a id="cancel" href="([^"]+)"', page.text)
        assert cancel is not None and cancel[1] == "https://chat.example.com/portal/buy"
        form = re.search(r'<form method="post" action="([^"]+)">', page.text)
        button = re.search(r'<button id="pay" name="(\w+)" value="(\w+)"', page.text)
        assert form is not None and button is not None
        paid = browser.post(str(page.url.join(form[1])), data={button[1]: button[2]})
    assert paid.status_code == 303
    assert paid.headers["location"] == (
        f"https://chat.example.com/portal/paid?session={session.id}"
    )

    (event,) = stripe_events(stripe_hooks, session.id, "checkout.session.completed")
    assert event.id.startswith("evt_") and event.livemode is False and event.api_version
    assert isinstance(event.created, int)
    completed = event.data.object
    assert (completed.status, completed.payment_status) == ("complete", "paid")
    assert completed.client_reference_id == "ord-page"
    assert completed.metadata["order_id"] == "ord-page"
    assert (completed.amount_total, completed.currency) == (3980, "brl")
    assert completed.payment_intent.startswith("pi_")

    body, signature = raw_stripe_delivery(stripe_hooks, event.id)[0]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", signature)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, signature, "whsec_another_endpoint")
    stripe.WebhookSignature.verify_header(body, signature, STRIPE_SECRET, tolerance=300)

    retrieved = client.v1.checkout.sessions.retrieve(session.id)
    assert retrieved.payment_status == "paid"
    intent = client.v1.payment_intents.retrieve(completed.payment_intent)
    assert intent.status == "succeeded"
    assert isinstance(intent.latest_charge, str) and intent.latest_charge.startswith("ch_")
    # A paid session's page no longer takes a payment.
    assert "is complete" in httpx.get(session.url).text


def test_refunds_fire_charge_refunded_partial_then_full(
    client: stripe.StripeClient, control: httpx.Client, stripe_hooks: Hooks
) -> None:
    session = client.v1.checkout.sessions.create(params=session_params("ord-refund"))
    control.post(f"/_control/stripe/sessions/{session.id}/pay").raise_for_status()
    intent_id = client.v1.checkout.sessions.retrieve(session.id).payment_intent
    assert isinstance(intent_id, str)
    partial = client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 1000})
    assert partial.id.startswith("re_") and (partial.amount, partial.status) == (1000, "succeeded")
    charge_id = partial.charge
    assert isinstance(charge_id, str)
    rest = client.v1.refunds.create(params={"charge": charge_id})
    assert rest.amount == 2980
    with pytest.raises(stripe.InvalidRequestError, match="already been refunded"):
        client.v1.refunds.create(params={"charge": charge_id, "amount": 1})

    events = stripe_events(stripe_hooks, charge_id, "charge.refunded", count=2)
    refunded = [(e.data.object.amount_refunded, e.data.object.refunded) for e in events]
    assert refunded == [(1000, False), (3980, True)]
    assert events[0].data.previous_attributes.amount_refunded == 0


def test_a_delayed_method_completes_unpaid_then_settles(
    client: stripe.StripeClient, control: httpx.Client, stripe_hooks: Hooks
) -> None:
    ok = client.v1.checkout.sessions.create(params=session_params("ord-delayed-ok"))
    failed = client.v1.checkout.sessions.create(params=session_params("ord-delayed-failed"))
    for session in (ok, failed):
        paid = control.post(
            f"/_control/stripe/sessions/{session.id}/pay", json={"payment_status": "unpaid"}
        )
        assert paid.json()["object"]["payment_status"] == "unpaid"
        assert paid.json()["events"][0]["deliveries"][0]["status"] == 200
    control.post(f"/_control/stripe/sessions/{ok.id}/async_payment_succeeded").raise_for_status()
    control.post(f"/_control/stripe/sessions/{failed.id}/async_payment_failed").raise_for_status()

    (unpaid,) = stripe_events(stripe_hooks, ok.id, "checkout.session.completed")
    assert (unpaid.data.object.status, unpaid.data.object.payment_status) == ("complete", "unpaid")
    (succeeded,) = stripe_events(stripe_hooks, ok.id, "checkout.session.async_payment_succeeded")
    assert succeeded.data.object.payment_status == "paid"
    (gone,) = stripe_events(stripe_hooks, failed.id, "checkout.session.async_payment_failed")
    assert gone.data.object.payment_status == "unpaid"
    again = control.post(f"/_control/stripe/sessions/{ok.id}/async_payment_failed")
    assert again.status_code == 400


def test_expiry_and_disputes_fire_their_events(
    client: stripe.StripeClient, control: httpx.Client, stripe_hooks: Hooks
) -> None:
    open_session = client.v1.checkout.sessions.create(params=session_params("ord-expire"))
    expired = client.v1.checkout.sessions.expire(open_session.id)
    assert (expired.status, expired.url) == ("expired", None)
    stripe_events(stripe_hooks, open_session.id, "checkout.session.expired")
    with pytest.raises(stripe.InvalidRequestError, match="can be expired"):
        client.v1.checkout.sessions.expire(open_session.id)

    session = client.v1.checkout.sessions.create(params=session_params("ord-dispute"))
    control.post(f"/_control/stripe/sessions/{session.id}/pay").raise_for_status()
    answer = control.post(f"/_control/stripe/sessions/{session.id}/dispute").json()
    dispute = answer["object"]
    assert dispute["id"].startswith("dp_") and dispute["amount"] == 3980
    (event,) = stripe_events(stripe_hooks, dispute["id"], "charge.dispute.created")
    assert event.data.object.charge.startswith("ch_")
    assert event.data.object.reason == "fraudulent"
    with pytest.raises(stripe.InvalidRequestError, match="charged back"):
        client.v1.refunds.create(params={"charge": dispute["charge"]})
    closing = f"/_control/stripe/sessions/{session.id}/dispute/close"
    assert control.post(closing, json={"status": "won"}).json()["object"]["status"] == "won"
    (closed,) = stripe_events(stripe_hooks, dispute["id"], "charge.dispute.closed")
    assert closed.data.object.status == "won"
    assert control.post(closing).status_code == 400  # decided already


def test_events_can_be_sent_again_and_tampered(
    client: stripe.StripeClient, control: httpx.Client, stripe_hooks: Hooks
) -> None:
    session = client.v1.checkout.sessions.create(params=session_params("ord-replay"))
    paid = control.post(f"/_control/stripe/sessions/{session.id}/pay").json()
    (emitted,) = paid["events"]
    listed = control.get("/_control/events", params={"object_id": session.id}).json()
    assert [event["seq"] for event in listed] == [emitted["seq"]]
    assert listed[0]["body"]["type"] == "checkout.session.completed"

    def send(**body: Any) -> None:
        answer = control.post(f"/_control/events/{emitted['seq']}/send", json=body)
        assert answer.status_code == 200, answer.text

    send(times=2)
    send(tamper={"secret": "whsec_wrong"})
    send(tamper={"timestamp": int(time.time()) - 3600})
    send(tamper={"body": True})
    send(tamper={"unsigned": True})

    def deliveries() -> list[tuple[str, str]]:
        return raw_stripe_delivery(stripe_hooks, emitted["id"])

    wait_for("seven deliveries", lambda: len(deliveries()) == 7)
    first, duplicate, again, wrong_secret, stale, tampered, unsigned = deliveries()
    for body, signature in (first, duplicate, again):
        assert stripe.Webhook.construct_event(body, signature, STRIPE_SECRET).id == emitted["id"]
    for body, signature in (wrong_secret, stale, tampered):
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, signature, STRIPE_SECRET)
    assert unsigned[1] == ""
    # A stale signature is the right one, only too old for the tolerance.
    stripe.WebhookSignature.verify_header(stale[0], stale[1], STRIPE_SECRET, tolerance=None)
    assert control.post("/_control/events/999999/send").status_code == 404


def test_one_delivery_can_reach_two_receivers_at_once(
    client: stripe.StripeClient, control: httpx.Client
) -> None:
    """What "the same webhook at two gateway replicas at the same instant" needs."""
    session = client.v1.checkout.sessions.create(params=session_params("ord-twice"))
    control.post(f"/_control/stripe/sessions/{session.id}/pay").raise_for_status()
    with webhook_server() as one, webhook_server() as other:
        answer = control.post("/_control/events/last/send", json={"urls": [one.url, other.url]})
        sent = answer.json()["sent"]
        assert [delivery["status"] for delivery in sent] == [200, 200]
        (first_headers, body), (second_headers, same_body) = one.bodies[0], other.bodies[0]
    assert body == same_body
    signature = header(first_headers, "stripe-signature")
    assert signature == header(second_headers, "stripe-signature")
    event = stripe.Webhook.construct_event(body.decode(), signature, STRIPE_SECRET)
    assert (event.type, event.data.object.id) == ("checkout.session.completed", session.id)


def test_held_events_are_released_in_reverse(
    client: stripe.StripeClient, control: httpx.Client, stripe_hooks: Hooks
) -> None:
    session = client.v1.checkout.sessions.create(params=session_params("ord-held"))
    control.post("/_control/webhooks/hold").raise_for_status()
    held = control.post(
        f"/_control/stripe/sessions/{session.id}/pay", json={"payment_status": "unpaid"}
    ).json()
    assert held["events"][0]["deliveries"] == []
    control.post(f"/_control/stripe/sessions/{session.id}/async_payment_succeeded")
    time.sleep(0.3)
    assert raw_stripe_delivery(stripe_hooks, held["events"][0]["id"]) == []
    released = control.post("/_control/webhooks/release", json={"reverse": True}).json()
    assert [event["type"] for event in released["events"]] == [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ]
    kinds = [e.type for e in verified(stripe_hooks) if e.data.object.id == session.id]
    assert kinds == [
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
    ]


def test_an_unreachable_receiver_is_recorded_and_the_urls_can_change(
    client: stripe.StripeClient, control: httpx.Client, stripe_hooks: Hooks
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    changed = control.put("/_control/config", json={"stripe_url": nobody})
    assert changed.json()["stripe_url"] == nobody
    try:
        session = client.v1.checkout.sessions.create(params=session_params("ord-nobody"))
        paid = control.post(f"/_control/stripe/sessions/{session.id}/pay").json()
        (delivery,) = paid["events"][0]["deliveries"]
        assert delivery["status"] is None and delivery["url"] == nobody
        assert "Connect" in delivery["error"]
    finally:
        control.put("/_control/config", json={"stripe_url": stripe_hooks.url})
    again = control.post(f"/_control/events/{paid['events'][0]['seq']}/send").json()
    assert again["sent"][0]["status"] == 200  # the receiver is back: the provider's retry
    assert control.put("/_control/config", json={"stripe_secret": ""}).status_code == 400


def test_the_api_refuses_what_stripe_refuses(client: stripe.StripeClient, fake: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve("cs_test_nothing")
    assert missing.value.code == "resource_missing"
    bad = session_params("ord-bad")
    bad["line_items"][0]["price_data"]["unit_amount"] = "12.5"
    with pytest.raises(stripe.InvalidRequestError) as invalid:
        client.v1.checkout.sessions.create(params=bad)
    assert invalid.value.param == "line_items[0][price_data][unit_amount]"
    assert httpx.post(f"{fake}/v1/checkout/sessions").status_code == 401


def test_expand_names_the_objects_behind_a_session(
    client: stripe.StripeClient, control: httpx.Client
) -> None:
    params = session_params("ord-expand")
    params["payment_intent_data"] = {"metadata": {"order": "ord-expand"}}
    session = client.v1.checkout.sessions.create(params=params)
    control.post(f"/_control/stripe/sessions/{session.id}/pay").raise_for_status()
    got = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent.latest_charge"]}
    )
    intent: Any = got.payment_intent
    assert intent.object == "payment_intent" and intent.metadata["order"] == "ord-expand"
    assert intent.latest_charge.object == "charge" and intent.latest_charge.amount == 3980
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["locale"]})


def test_the_gateways_stripe_provider_works_against_the_fake(
    fake: str, control: httpx.Client, stripe_hooks: Hooks
) -> None:
    """solaris.payments.stripe as the gateway runs it (async SDK on aiohttp), end to end."""
    order = OrderToPay(
        public_id="ord-provider",
        description="1M tokens",
        amount_cents=1990,
        currency="BRL",
        email="alice@example.com",
        language="pt-BR",
        success_url="https://chat.example.com/portal/paid",
        cancel_url="https://chat.example.com/portal/buy",
    )

    def delivered(kind: str, object_id: str) -> tuple[bytes, dict[str, str]]:
        (event,) = stripe_events(stripe_hooks, object_id, kind)
        for headers, body in stripe_hooks.bodies:
            if event.id in body.decode():
                return body, {key.lower(): value for key, value in headers.items()}
        raise AssertionError(event.id)

    async def scenario() -> None:
        provider = StripeCheckout("sk_test_gateway", STRIPE_SECRET, api_base=fake)
        try:
            checkout = await provider.start(order, key="order-1-start")
            assert (await provider.start(order, key="order-1-start")).ref == checkout.ref
            assert checkout.pay_url and checkout.expires_at
            assert (await provider.state(checkout.ref)).status == "pending"
            pay = f"/_control/stripe/sessions/{checkout.ref}/pay"
            (await asyncio.to_thread(control.post, pay)).raise_for_status()
            body, headers = delivered("checkout.session.completed", checkout.ref)
            event = provider.verify(body, headers, {})
            assert (event.kind, event.ref) == ("checkout.session.completed", checkout.ref)
            paid = await provider.state(checkout.ref)
            assert (paid.status, paid.amount_cents, paid.currency) == ("paid", 1990, "BRL")
            assert paid.order_public_id == "ord-provider"
            await provider.refund(paid, 500, key="order-1-refund-1")
            await provider.refund(paid, 500, key="order-1-refund-1")  # a retry: refunded once
            assert (await provider.state(checkout.ref)).refunded_cents == 500
            disputing = f"/_control/stripe/sessions/{checkout.ref}/dispute"
            dispute = (await asyncio.to_thread(control.post, disputing)).json()
            body, headers = delivered("charge.dispute.created", dispute["object"]["id"])
            assert provider.verify(body, headers, {}).payment_ref == paid.payment_ref
            assert (await provider.state(checkout.ref)).disputed
        finally:
            await provider.close()

    asyncio.run(scenario())
