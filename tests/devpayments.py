"""What the dev-payments tests share: the fake as a process, and checks made the way a
receiver makes them (`stripe.Webhook.construct_event`; Mercado Pago's documented x-signature
manifest, recomputed here), with a reader of the PNG that the Pix QR code is."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import stripe

from tests.servers import Hooks, free_port, spawn, wait_for

STRIPE_SECRET = "whsec_test_devpayments"
MP_SECRET = "mp-test-secret"
AUTH = {"Authorization": "Bearer TEST-access-token"}


@contextmanager
def fake_server(stripe_url: str | None, mercadopago_url: str | None, log: Path) -> Iterator[str]:
    """`solaris dev-payments` on a free port, sending to these receivers; yields its address."""
    port = free_port()
    argv = ["dev-payments", "--port", str(port)]
    argv += ["--stripe-webhook-secret", STRIPE_SECRET, "--mercadopago-webhook-secret", MP_SECRET]
    if stripe_url:
        argv += ["--stripe-webhook-url", stripe_url]
    if mercadopago_url:
        argv += ["--mercadopago-webhook-url", mercadopago_url]
    with spawn(argv, f"http://127.0.0.1:{port}/health", log_path=log):
        yield f"http://127.0.0.1:{port}"


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
            signature = header(headers, "stripe-signature")
            events.append(stripe.Webhook.construct_event(body.decode(), signature, STRIPE_SECRET))
        except stripe.SignatureVerificationError:
            pass
    return events


def raw_stripe_delivery(hooks: Hooks, event_id: str) -> list[tuple[str, str]]:
    """(body, Stripe-Signature) of every delivery of `event_id`, in the order received."""
    return [
        (body.decode(), header(headers, "stripe-signature"))
        for headers, body in list(hooks.bodies)
        if f'"id": "{event_id}"' in body.decode() or f'"id":"{event_id}"' in body.decode()
    ]


def header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name), "")


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
    parts = dict(part.split("=", 1) for part in header(headers, "x-signature").split(","))
    request_id = header(headers, "x-request-id")
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
