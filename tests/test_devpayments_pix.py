"""`solaris dev-payments`'s Mercado Pago, driven over plain HTTP as the gateway will drive the
Payments API for Pix; its notifications checked against the documented x-signature manifest,
its QR code decoded."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import zxingcpp

from solaris.devpayments.pix import QR_BORDER, QR_SCALE, crc16
from tests.devpayments import (
    AUTH,
    MP_SECRET,
    create_pix,
    fake_server,
    header,
    notifications,
    pix_body,
    png_greyscale,
    signature_ok,
)
from tests.servers import Hooks, webhook_server


@pytest.fixture(scope="module")
def mp_hooks() -> Iterator[Hooks]:
    with webhook_server() as hooks:
        yield hooks


@pytest.fixture(scope="module")
def fake(mp_hooks: Hooks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("devpayments") / "devpayments.log"
    with fake_server(None, mp_hooks.url, log) as url:
        yield url


@pytest.fixture()
def control(fake: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake, timeout=20.0) as http:
        yield http


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
    ts = int(dict(p.split("=", 1) for p in header(headers, "x-signature").split(","))["ts"])
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
    assert header(twice[1], "x-request-id") != header(thrice[1], "x-request-id")

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
