"""Turns the numbers a settle wrote into an alert a person can read, at delivery time.

The settle (in SQL on PostgreSQL) knows the user id and the numbers; the words need the user's
e-mail and name, the period's end (from the plan) and a portal link. The link is signed here,
when the e-mail leaves, so it is fresh however long the alert waited for SMTP to come back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from solaris.alerts.channels import Delivery, DeliveryError
from solaris.alerts.model import AlertUser, ThresholdAlert, ThresholdCrossing
from solaris.ledger.periods import period_bounds
from solaris.ledger.plans import Plans
from solaris.ledger.thresholds import ThresholdRecord
from solaris.links import buy_url, sign_link
from solaris.store.database import Database
from solaris.store.outbox import KIND_USER_THRESHOLD
from solaris.store.schema import users
from solaris.texts import Language

__all__ = ["EMAIL_LINK_TTL_S", "ThresholdRenderer"]

# A link in an e-mail is read later than one in a chat: it works for a week (and once).
EMAIL_LINK_TTL_S = 7 * 24 * 3600


class ThresholdRenderer:
    """The deliverer's `prepare` step: completes `user_threshold` rows written by a settle."""

    def __init__(
        self,
        database: Database,
        signing_key: bytes,
        public_base_url: str,
        language: Language,
        zone: ZoneInfo,
    ) -> None:
        self.database = database
        self.zone = zone
        self.plans = Plans(database)
        self.signing_key = signing_key
        self.public_base_url = public_base_url
        self.language = language

    async def __call__(self, delivery: Delivery) -> Delivery:
        if delivery.kind != KIND_USER_THRESHOLD or "user" in delivery.payload:
            return delivery  # already in words (or not a threshold alert)
        try:
            record = ThresholdRecord.from_payload(delivery.payload)
        except (KeyError, TypeError, ValueError) as error:
            raise DeliveryError(f"unreadable payload: {error!r}", permanent=True) from error
        alert = await self._alert(record, delivery.now)
        return replace(delivery, payload=alert.to_payload())

    async def _alert(self, record: ThresholdRecord, now: datetime) -> ThresholdAlert:
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(users.c.external_id, users.c.email).where(users.c.id == record.user_id)
                )
            ).first()
        if row is None:
            raise DeliveryError(f"user {record.user_id} does not exist", permanent=True)
        subscription = await self.plans.of_user(record.user_id)
        plan = subscription.plan
        start = datetime.fromtimestamp(record.period_start or now.timestamp(), UTC)
        _start, end = period_bounds(
            plan.period, plan.anchor, subscription.anchored_at, start, self.zone
        )
        token = sign_link(self.signing_key, record.user_id, EMAIL_LINK_TTL_S, now)
        crossing = ThresholdCrossing(
            percent=record.percent,
            used=record.used,
            total=record.total,
            balance=record.balance,
            period_start=start,
            period_end=end,
            portal_url=buy_url(self.public_base_url, token),
        )
        user = AlertUser(record.user_id, str(row.external_id), row.email)
        return ThresholdAlert(user, crossing, self.language, self.zone.key)
