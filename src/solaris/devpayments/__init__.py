"""`solaris dev-payments`: local fakes of Stripe Checkout and Mercado Pago's Pix payments, with a
test-only control API that drives a payment and fires correctly signed webhooks."""

from solaris.devpayments.server import DevPayments, build_app, run
from solaris.devpayments.webhooks import (
    Endpoints,
    Tamper,
    mercadopago_manifest,
    mercadopago_signature,
    stripe_signature,
)

__all__ = [
    "DevPayments",
    "Endpoints",
    "Tamper",
    "build_app",
    "mercadopago_manifest",
    "mercadopago_signature",
    "run",
    "stripe_signature",
]
