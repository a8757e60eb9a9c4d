"""`solaris dev-payments` driven as the gateway will drive the real providers: Stripe through the
official SDK with only its base address changed, Mercado Pago through plain HTTP; webhooks
checked the way a receiver checks them (`stripe.Webhook.construct_event`, and Mercado Pago's
documented x-signature manifest recomputed here)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe
import zxingcpp

from solaris.devpayments.pix import QR_BORDER, QR_SCALE, crc16
from tests.servers import Hooks, free_port, spawn, wait_for, webhook_server

STRIPE_SECRET = "whsec_test_devpayments"
MP_SECRET = "mp-test-secret"
AUTH = {"Authorization": "Bearer TEST-access-token"}


@pytest.fixture(scope="module")
def stripe_hooks() -> Iterator[Hooks]:
    with webhook_server() as hooks:
        yield hooks


@pytest.fixture(scope="module")
def mp_hooks() -> Iterator[Hooks]:
    with webhook_server() as hooks:
        yield hooks


@pytest.fixture(scope="module")
def fake(
    stripe_hooks: Hooks, mp_hooks: Hooks, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("devpayments") / "devpayments.log"
    argv = [
        "dev-payments",
        "--port",
        str(port),
        "--stripe-webhook-url",
        stripe_hooks.url,
        "--stripe-webhook-secret",
        STRIPE_SECRET,
        "--mercadopago-webhook-url",
        mp_hooks.url,
        "--mercadopago-webhook-secret",
        MP_SECRET,
    ]
    with spawn(argv, f"http://127.0.0.1:{port}/health", log_path=log):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture()
def client(fake: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_devpayments", base_addresses={"api": fake})


@pytest.fixture()
def control(fake: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake, timeout=20.0) as http:
        yield http
        http.post("/_control/webhooks/release")  # a test that held leaves nothing held


def session_params(reference: str, **extra: Any) -> Any:
    """Checkout Session parameters as the gateway will send them (typed Any: tests spoil them)."""
    return {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "brl",
                    "unit_amount": 1990,
                    "product_data": {"name": "1M tokens"},
                },
                "quantity": 2,
            }
        ],
        "client_reference_id": reference,
        "metadata": {"order_id": reference},
        "success_url": "https://chat.example.com/portal/paid?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://chat.example.com/portal/buy",
        "locale": "pt-BR",
        "customer_email": "alice@example.com",
        **extra,
    }


def stripe_events(hooks: Hooks, object_id: str, kind: str, count: int = 1) -> list[Any]:
    """The `kind` events about `object_id` the receiver got, verified with the right secret."""

    def received() -> list[Any]:
        return [
            event
            for event in verified(hooks)
            if event.type == kind and event.data.object.id == object_id
        ]

    wait_for(f"{count} {kind} for {object_id}", lambda: len(received()) >= count)
    return received()


def verified(hooks: Hooks) -> list[Any]:
    """Every event the receiver got that verifies (other tests send some that must not)."""
    events = []
    for headers, body in list(hooks.bodies):
        try:
            signature = _header(headers, "stripe-signature")
            events.append(stripe.Webhook.construct_event(body.decode(), signature, STRIPE_SECRET))
        except stripe.SignatureVerificationError:
            pass
    return events


def raw_stripe_delivery(hooks: Hooks, event_id: str) -> list[tuple[str, str]]:
    """(body, Stripe-Signature) of every delivery of `event_id`, in the order received."""
    return [
        (body.decode(), _header(headers, "stripe-signature"))
        for headers, body in list(hooks.bodies)
        if f'"id": "{event_id}"' in body.decode() or f'"id":"{event_id}"' in body.decode()
    ]


def _header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name), "")


# ── Stripe ──────────────────────────────────────────────────────────────────────────────────


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
    signature = _header(first_headers, "stripe-signature")
    assert signature == _header(second_headers, "stripe-signature")
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


# ── Mercado Pago ────────────────────────────────────────────────────────────────────────────


def pix_body(reference: str, **extra: Any) -> dict[str, Any]:
    return {
        "payment_method_id": "pix",
        "transaction_amount": 39.8,
        "description": "2 x 1M tokens",
        "payer": {"email": "alice@example.com"},
        "external_reference": reference,
        **extra,
    }


def create_pix(control: httpx.Client, reference: str, key: str, **extra: Any) -> dict[str, Any]:
    headers = {**AUTH, "X-Idempotency-Key": key}
    answer = control.post("/v1/payments", json=pix_body(reference, **extra), headers=headers)
    assert answer.status_code == 201, answer.text
    payment: dict[str, Any] = answer.json()
    return payment


def signature_ok(path: str, headers: dict[str, str], secret: str) -> bool:
    """Mercado Pago's documented check: HMAC-SHA256 of `id:[data.id];request-id:[x-request-id];
    ts:[ts];` (data.id from the query, lowercased) against x-signature's v1."""
    data_id = parse_qs(urlsplit(path).query)["data.id"][0]
    parts = dict(part.split("=", 1) for part in _header(headers, "x-signature").split(","))
    request_id = _header(headers, "x-request-id")
    manifest = f"id:{data_id.lower()};request-id:{request_id};ts:{parts['ts']};"
    expected = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def notifications(
    hooks: Hooks, payment_id: int, count: int = 1
) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(path, headers, body) of each notification about `payment_id`, in the order received."""

    def received() -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        found = []
        for path, headers, raw in list(hooks.requests):
            body = json.loads(raw)
            if body["data"]["id"] == str(payment_id):
                found.append((path, headers, body))
        return found

    wait_for(f"{count} notifications of {payment_id}", lambda: len(received()) >= count)
    return received()


def test_one_idempotency_key_makes_one_pix_payment(control: httpx.Client) -> None:
    brasilia = datetime.now(timezone(timedelta(hours=-3))).replace(microsecond=0)
    expiry = (brasilia + timedelta(days=2)).replace(hour=12, minute=0, second=0)
    first = create_pix(control, "ord-pix-idem", "pix-key-1")
    again = create_pix(control, "ord-pix-idem", "pix-key-1")
    assert again["id"] == first["id"]
    other = create_pix(control, "ord-pix-idem", "pix-key-2")
    assert other["id"] != first["id"]
    assert isinstance(first["id"], int)
    assert (first["status"], first["status_detail"]) == ("pending", "pending_waiting_transfer")
    assert (first["transaction_amount"], first["currency_id"]) == (39.8, "BRL")
    assert first["external_reference"] == "ord-pix-idem"
    data = first["point_of_interaction"]["transaction_data"]
    code = data["qr_code"]
    assert code.startswith("000201") and "br.gov.bcb.pix" in code and "540539.80" in code
    assert crc16(code[:-4]) == code[-4:]
    assert data["ticket_url"].endswith(f"/mp/payments/{first['id']}/ticket")
    ticket = httpx.get(data["ticket_url"])
    assert ticket.status_code == 200 and code in ticket.text

    given = expiry.isoformat(timespec="milliseconds")
    late = create_pix(control, "ord-pix-expiry", "pix-key-3", date_of_expiration=given)
    assert late["date_of_expiration"] == (
        f"{(expiry - timedelta(hours=1)).replace(tzinfo=None).isoformat()}.000-04:00"
    )

    got = control.get(f"/v1/payments/{first['id']}", headers=AUTH).json()
    assert got == first
    found = control.get(
        "/v1/payments/search", params={"external_reference": "ord-pix-idem"}, headers=AUTH
    ).json()
    assert found["paging"]["total"] == 2
    assert [payment["id"] for payment in found["results"]] == [other["id"], first["id"]]


def test_the_qr_code_is_a_png_of_the_copy_paste_code(control: httpx.Client) -> None:
    payment = create_pix(control, "ord-pix-qr", "pix-key-qr")
    data = payment["point_of_interaction"]["transaction_data"]
    width, height, pixels = png_greyscale(base64.b64decode(data["qr_code_base64"]))
    assert width == height
    modules = width // QR_SCALE - 2 * QR_BORDER
    assert width % QR_SCALE == 0 and (modules - 21) % 4 == 0  # a QR version's size
    image = memoryview(pixels).cast("B", (height, width))
    (barcode,) = zxingcpp.read_barcodes(image)
    assert barcode.format == zxingcpp.BarcodeFormat.QRCode
    assert barcode.text == data["qr_code"]


def test_a_pix_notification_verifies_with_the_documented_manifest(
    control: httpx.Client, mp_hooks: Hooks
) -> None:
    payment = create_pix(control, "ord-pix-paid", "pix-key-paid")
    (created,) = notifications(mp_hooks, payment["id"])
    path, headers, body = created
    assert parse_qs(urlsplit(path).query) == {"data.id": [str(payment["id"])], "type": ["payment"]}
    assert (body["action"], body["type"], body["live_mode"]) == (
        "payment.created",
        "payment",
        False,
    )
    assert signature_ok(path, headers, MP_SECRET)
    assert not signature_ok(path, headers, "another-secret")
    ts = int(dict(p.split("=", 1) for p in _header(headers, "x-signature").split(","))["ts"])
    assert abs(ts / 1000 - time.time()) < 60  # milliseconds, as real deliveries carry

    approved = control.post(f"/_control/mercadopago/payments/{payment['id']}/approve").json()
    assert approved["object"]["status"] == "approved"
    assert approved["events"][0]["deliveries"][0]["status"] == 200
    _, updated = notifications(mp_hooks, payment["id"], count=2)
    assert updated[2]["action"] == "payment.updated" and signature_ok(*updated[:2], MP_SECRET)
    fetched = control.get(f"/v1/payments/{payment['id']}", headers=AUTH).json()
    assert (fetched["status"], fetched["status_detail"]) == ("approved", "accredited")
    assert fetched["date_approved"] is not None

    seq = approved["events"][0]["seq"]
    for tamper in ({"secret": "wrong"}, {"body": True}):
        control.post(f"/_control/events/{seq}/send", json={"tamper": tamper}).raise_for_status()
    control.post(f"/_control/events/{seq}/send", json={"times": 2}).raise_for_status()
    wrong_secret, other_id, twice, thrice = [
        (path, headers)
        for path, headers, raw in list(mp_hooks.requests)
        if json.loads(raw)["id"] == updated[2]["id"]
    ][1:]
    assert not signature_ok(*wrong_secret, MP_SECRET)
    assert not signature_ok(*other_id, MP_SECRET)
    assert signature_ok(*twice, MP_SECRET) and signature_ok(*thrice, MP_SECRET)
    assert _header(twice[1], "x-request-id") != _header(thrice[1], "x-request-id")

    stale = control.post(
        f"/_control/events/{seq}/send", json={"tamper": {"timestamp": 1_700_000_000}}
    )
    (sent,) = stale.json()["sent"]
    assert sent["status"] == 200 and sent["headers"]["x-signature"].startswith("ts=1700000000000,")


def test_pix_refunds_partial_then_full(control: httpx.Client, mp_hooks: Hooks) -> None:
    payment = create_pix(control, "ord-pix-refund", "pix-key-refund")
    early = control.post(f"/v1/payments/{payment['id']}/refunds", json={}, headers=AUTH)
    assert early.status_code == 400  # nothing paid yet
    control.post(f"/_control/mercadopago/payments/{payment['id']}/approve").raise_for_status()
    refunds = f"/v1/payments/{payment['id']}/refunds"
    keyed = {**AUTH, "X-Idempotency-Key": "refund-1"}
    partial = control.post(refunds, json={"amount": 10.0}, headers=keyed)
    assert partial.status_code == 201 and partial.json()["amount"] == 10.0
    assert control.post(refunds, json={"amount": 10.0}, headers=keyed).json() == partial.json()
    fetched = control.get(f"/v1/payments/{payment['id']}", headers=AUTH).json()
    assert (fetched["status"], fetched["status_detail"]) == ("approved", "partially_refunded")
    assert fetched["transaction_amount_refunded"] == 10.0
    assert control.post(refunds, json={"amount": 30.0}, headers=AUTH).status_code == 400
    rest = control.post(refunds, json={}, headers=AUTH)
    assert rest.status_code == 201 and rest.json()["amount"] == 29.8
    fetched = control.get(f"/v1/payments/{payment['id']}", headers=AUTH).json()
    assert (fetched["status"], fetched["status_detail"]) == ("refunded", "refunded")
    assert [refund["amount"] for refund in fetched["refunds"]] == [10.0, 29.8]
    assert len(control.get(refunds, headers=AUTH).json()) == 2
    received = notifications(mp_hooks, payment["id"], count=4)
    assert [body["action"] for _, _, body in received] == [
        "payment.created",
        "payment.updated",
        "payment.updated",
        "payment.updated",
    ]


def test_rejected_and_expired_pix_and_a_payments_own_notification_url(
    control: httpx.Client, mp_hooks: Hooks
) -> None:
    with webhook_server() as own:
        rejected = create_pix(control, "ord-pix-no", "pix-key-no", notification_url=own.url)
        control.post(f"/_control/mercadopago/payments/{rejected['id']}/reject").raise_for_status()
        _, (path, headers, _body) = notifications(own, rejected["id"], count=2)
        query = parse_qs(urlsplit(path).query)
        assert query["source_news"] == ["webhooks"] and signature_ok(path, headers, MP_SECRET)
    assert control.get(f"/v1/payments/{rejected['id']}", headers=AUTH).json()["status"] == (
        "rejected"
    )
    expired = create_pix(control, "ord-pix-late", "pix-key-late")
    answer = control.post(f"/_control/mercadopago/payments/{expired['id']}/expire").json()
    assert (answer["object"]["status"], answer["object"]["status_detail"]) == (
        "cancelled",
        "expired",
    )
    again = control.post(f"/_control/mercadopago/payments/{expired['id']}/approve")
    assert again.status_code == 400


def test_mercadopago_refuses_what_it_refuses(control: httpx.Client) -> None:
    assert control.post("/v1/payments", json=pix_body("ord-x")).status_code == 401
    card = control.post("/v1/payments", json=pix_body("x", payment_method_id="visa"), headers=AUTH)
    assert card.status_code == 400
    nobody = control.post("/v1/payments", json=pix_body("x", payer={}), headers=AUTH)
    assert nobody.status_code == 400 and nobody.json()["cause"][0]["code"] == 4050
    cents = control.post("/v1/payments", json=pix_body("x", transaction_amount=1.001), headers=AUTH)
    assert cents.status_code == 400
    missing = control.get("/v1/payments/1", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["message"] == "Payment not found"


def png_greyscale(png: bytes) -> tuple[int, int, bytes]:
    """A 1-bit greyscale PNG's pixels, one byte each (0 black, 255 white), its chunks' CRCs
    checked: enough of PNG to read what segno writes."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        data = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + data) == crc, kind
        header = data if kind == b"IHDR" else header
        idat += data if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) == (1, 0, 0)
    raw, stride = zlib.decompress(idat), (width + 7) // 8
    previous, pixels = bytearray(stride), bytearray()
    for row in range(height):
        start = row * (stride + 1)
        line = unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous)
        pixels += bytes(255 * ((line[x >> 3] >> (7 - (x & 7))) & 1) for x in range(width))
        previous = line
    return width, height, bytes(pixels)


def unfilter(kind: int, line: bytearray, above: bytearray) -> bytearray:
    for i in range(len(line)):
        left, up, corner = (line[i - 1] if i else 0), above[i], (above[i - 1] if i else 0)
        predictor = {
            0: 0,
            1: left,
            2: up,
            3: (left + up) // 2,
            4: min((left, up, corner), key=lambda p: abs(left + up - corner - p)),
        }[kind]
        line[i] = (line[i] + predictor) & 0xFF
    return line
