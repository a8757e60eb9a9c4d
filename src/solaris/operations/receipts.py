"""The receipt of a paid order: one e-mail to its buyer, written to the alert outbox in the
transaction that credits the order, so it exists exactly when the credit does and is sent
once (its dedupe key is the order's) however many times the payment is reported.

The row carries the numbers, not the words: `solaris.alerts.mail` renders it in the order's
language (the buyer's when they ordered) when it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import as_utc
from solaris.config import Settings
from solaris.store.outbox import KIND_RECEIPT, Alert, enqueue
from solaris.store.schema import users
from solaris.texts import Language, language_of

__all__ = ["Receipts", "receipt_key", "receipts_of"]


def receipt_key(public_id: str) -> str:
    return f"receipt:{public_id}"


@dataclass(frozen=True, slots=True)
class Receipts:
    """Where receipts link to and the language of orders that did not say theirs."""

    public_base_url: str
    language: Language
    timezone: str  # SOLARIS_TIMEZONE, for the times the e-mail states

    async def enqueue(
        self,
        conn: AsyncConnection,
        dialect: str,
        order: Row[Any],
        paid_at: datetime,
        credits_expire_at: datetime | None,
    ) -> bool:
        """The receipt of `order`, in the caller's transaction; False when its buyer has no
        e-mail address (LibreChat sent none) or it was written already."""
        buyer = (
            await conn.execute(
                select(users.c.external_id, users.c.email).where(users.c.id == order.user_id)
            )
        ).one()
        if not buyer.email:
            return False
        alert = Alert(
            KIND_RECEIPT, receipt_key(order.public_id), "email", buyer.email,
            self.payload(order, buyer, paid_at, credits_expire_at), paid_at,
        )  # fmt: skip
        return await enqueue(conn, dialect, alert)

    def payload(
        self, order: Row[Any], buyer: Any, paid_at: datetime, expires: datetime | None
    ) -> Mapping[str, Any]:
        language = language_of(order.language) if order.language else self.language
        return {
            "severity": "info",
            "language": language,
            "user": {
                "id": order.user_id, "external_id": buyer.external_id, "email": buyer.email,
                "name": None,
            },
            "data": {
                "order": order.public_id, "pack": order.pack_name, "tokens": order.tokens,
                "amount_cents": order.amount_cents, "currency": order.currency,
                "provider": order.provider, "paid_at": as_utc(paid_at).isoformat(),
                "credits_expire_at": None if expires is None else as_utc(expires).isoformat(),
                "order_url": f"{self.public_base_url.rstrip('/')}/portal/orders/{order.public_id}",
                "timezone": self.timezone,
            },
        }  # fmt: skip


def receipts_of(settings: Settings) -> Receipts | None:
    """Receipts when wanted and e-mail can be sent (an SMTP host): else none are written, as a row
    for a channel nobody configured would wait in the outbox forever."""
    if settings.smtp_host is None or not settings.receipt_emails:
        return None
    return Receipts(settings.public_base_url, settings.language, settings.timezone)
