"""The receipt e-mail a buyer gets when an order is paid, in pt-BR and English.

Built from the numbers the paying transaction stored in the outbox (nothing is looked up when
it is sent), every value escaped in the HTML part (how values read: `formats`).
"""

from __future__ import annotations

from datetime import datetime

from solaris.texts import Language
from solaris.texts.alerts import FOOTER, GREETING, EmailText, email_html
from solaris.texts.formats import format_money, format_tokens, moment_in_words

__all__ = ["receipt_email"]

RECEIPT: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "subject": "Recibo: {tokens} tokens ({amount})",
        "paid": "Recebemos o pagamento do seu pedido {order}: {pack}, {amount}, pago em "
        "{paid_at} ({provider}).",
        "credited": "{tokens} tokens foram somados ao seu saldo; você já pode voltar ao chat.",
        "expires": "Estes créditos valem até {expires_at}.",
        "button": "Ver o pedido",
        "keep": "Guarde este e-mail como comprovante.",
    },
    "en": {
        "subject": "Receipt: {tokens} tokens ({amount})",
        "paid": "We received the payment of your order {order}: {pack}, {amount}, paid on "
        "{paid_at} ({provider}).",
        "credited": "{tokens} tokens were added to your balance; you can go back to the chat.",
        "expires": "These credits are valid until {expires_at}.",
        "button": "See the order",
        "keep": "Keep this e-mail as your receipt.",
    },
}
PROVIDERS: dict[str, dict[Language, str]] = {
    "stripe": {"pt-BR": "cartão", "en": "card"},
    "mercadopago": {"pt-BR": "Pix", "en": "Pix"},
}


def receipt_email(
    language: Language,
    *,
    name: str | None,
    order: str,
    pack: str,
    tokens: int,
    amount_cents: int,
    currency: str,
    provider: str,
    paid_at: datetime,
    credits_expire_at: datetime | None,
    order_url: str,
    timezone: str | None = None,
) -> EmailText:
    words = RECEIPT[language]
    values = {
        "order": order,
        "pack": pack,
        "tokens": format_tokens(language, tokens),
        "amount": format_money(language, amount_cents, currency),
        "paid_at": moment_in_words(language, paid_at, timezone),
        "provider": PROVIDERS.get(provider, {}).get(language, provider),
        "expires_at": (
            moment_in_words(language, credits_expire_at, timezone) if credits_expire_at else ""
        ),
    }
    greeting = GREETING[language][0].format(name=name) if name else GREETING[language][1]
    parts = ["paid", "credited", *(["expires"] if credits_expire_at else []), "keep"]
    lines = [words[part].format(**values) for part in parts]
    text = "\n\n".join([greeting, *lines, f"{words['button']}:\n{order_url}", FOOTER[language]])
    html = email_html([greeting, *lines], order_url, words["button"], FOOTER[language])
    return EmailText(words["subject"].format(**values), text + "\n", html)
