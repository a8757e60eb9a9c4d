"""The payment providers the settings turn on, built once (the gateway's and the CLI's)."""

from __future__ import annotations

from solaris.config import Settings
from solaris.payments.base import Provider

__all__ = ["configured_providers"]


def configured_providers(settings: Settings) -> dict[str, Provider]:
    """The payment providers whose keys are set (none: the purchase page says whom to ask)."""
    providers: dict[str, Provider] = {}
    if settings.stripe_api_key is not None and settings.stripe_webhook_secret is not None:
        from solaris.payments.stripe import StripeCheckout

        providers["stripe"] = StripeCheckout(
            settings.stripe_api_key.get_secret_value(),
            settings.stripe_webhook_secret.get_secret_value(),
            settings.stripe_api_base,
        )
    if settings.mercadopago_access_token and settings.mercadopago_webhook_secret:
        from solaris.payments.mercadopago import MercadoPagoPix

        providers["mercadopago"] = MercadoPagoPix(
            settings.mercadopago_access_token.get_secret_value(),
            settings.mercadopago_webhook_secret.get_secret_value(),
            settings.public_base_url.rstrip("/") + "/payments/mercadopago/webhook",
            settings.mercadopago_api_base,
        )
    return providers
