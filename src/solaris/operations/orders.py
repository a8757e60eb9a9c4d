"""Orders as the operator sees them, for every face (admin API, dashboard, CLI): lists with
filters, one order in full (its provider events and audit lines), revenue per day and per pack,
and refunds.

A refund is asked of the provider, never written to the ledger here: the provider's event (or
the next reconciliation) brings the order to its refunded amount through `Purchases.converge`,
which takes back the same share of the tokens. The request is audited before the provider is
asked (and its refusal after), with an idempotency key of the order, the refunded amount the
order knows and the amount asked: a repeat before the provider confirms the previous refund is
the same refund, never a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, case, func, select
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from solaris.clock import recent_days
from solaris.errors import BadRequest, NotFound
from solaris.operations.order_views import (
    OrderDetail,
    OrderLine,
    PaymentEventView,
    RefundRequested,
    RevenueRow,
)
from solaris.operations.purchases import Purchases
from solaris.payments.base import ProviderUnavailable
from solaris.store.audit import Actor, audit_entries, record
from solaris.store.columns import local_day
from solaris.store.schema import ORDER_STATES, PAYMENT_PROVIDERS, orders, payment_events, users

__all__ = ["NotRefundable", "OrderFilter", "OrderNotFound", "Orders"]

LISTED_MAX = 500  # one page of orders
EVENTS_SHOWN_MAX = 200
AUDIT_SHOWN_MAX = 200
REVENUE_DAYS_MAX = 366
REVENUE_ROWS_MAX = 5000


class OrderNotFound(NotFound):
    code = "order_not_found"


class NotRefundable(BadRequest):
    """The order cannot be refunded (unpaid, refunded, disputed), or not by this amount."""

    code = "order_not_refundable"


@dataclass(frozen=True, slots=True)
class OrderFilter:
    status: str | None = None
    provider: str | None = None
    user: str | None = None  # LibreChat's user id
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in ORDER_STATES:
            raise BadRequest(f"status must be one of {', '.join(ORDER_STATES)}", param="status")
        if self.provider is not None and self.provider not in PAYMENT_PROVIDERS:
            names = ", ".join(PAYMENT_PROVIDERS)
            raise BadRequest(f"provider must be one of {names}", param="provider")
        if not 0 < self.limit <= LISTED_MAX:
            raise BadRequest(f"limit must be between 1 and {LISTED_MAX}", param="limit")
        if self.offset < 0:
            raise BadRequest("offset must not be negative", param="offset")
        if self.since and self.until and self.since >= self.until:
            raise BadRequest("since must be before until", param="since")


class Orders:
    def __init__(self, purchases: Purchases) -> None:
        self.purchases = purchases
        self.database = purchases.database
        self.clock = purchases.clock
        self.zone = purchases.ledger.zone

    async def find(self, wanted: OrderFilter) -> list[OrderLine]:
        """Orders matching `wanted`, newest first."""
        query = _lines().order_by(orders.c.created_at.desc(), orders.c.id.desc())
        for condition in _conditions(wanted):
            query = query.where(condition)
        async with self.database.transaction() as conn:
            rows = await conn.execute(query.limit(wanted.limit).offset(wanted.offset))
            return [OrderLine.model_validate(dict(row._mapping)) for row in rows]

    async def detail(self, public_id: str) -> OrderDetail:
        """One order with its provider events and its audit lines; OrderNotFound."""
        async with self.database.transaction() as conn:
            query = _lines().add_columns(
                orders.c.id, orders.c.provider_ref, orders.c.provider_payment,
                orders.c.language, orders.c.expires_at,
            )  # fmt: skip
            row = (await conn.execute(query.where(orders.c.public_id == public_id))).first()
            if row is None:
                raise OrderNotFound(f"No order {public_id!r}.")
            events = await conn.execute(
                select(payment_events)
                .where(payment_events.c.order_id == row.id)
                .order_by(payment_events.c.id.desc())
                .limit(EVENTS_SHOWN_MAX)
            )
            audit = await audit_entries(conn, AUDIT_SHOWN_MAX, 0, "order", public_id)
        values = {key: value for key, value in row._mapping.items() if key != "id"}
        return OrderDetail(
            **values,
            refundable_cents=_refundable(row),
            events=[
                PaymentEventView(event_id=e.event_id, kind=e.kind, received_at=e.received_at)
                for e in events
            ],
            audit=audit,
        )

    async def revenue(
        self, by: Literal["day", "pack"], since: datetime, until: datetime
    ) -> list[RevenueRow]:
        """Orders paid from `since` to `until`, grouped by local day or pack, per currency."""
        if since >= until:
            raise BadRequest("since must be before until", param="since")
        if until - since > timedelta(days=REVENUE_DAYS_MAX):
            raise BadRequest(f"at most {REVENUE_DAYS_MAX} days at once", param="since")
        key = (
            local_day(self.database.dialect, orders.c.paid_at, self.zone)
            if by == "day"
            else orders.c.pack_name
        )
        disputed = case(
            (orders.c.status == "disputed", orders.c.amount_cents - orders.c.refunded_cents),
            else_=0,
        )
        query = (
            select(
                key.label("key"), orders.c.currency, func.count().label("orders"),
                func.sum(orders.c.amount_cents).label("paid"),
                func.sum(orders.c.refunded_cents).label("refunded"),
                func.sum(disputed).label("disputed"),
            )
            .where(orders.c.paid_at >= since, orders.c.paid_at < until)
            .group_by(key, orders.c.currency)
            .order_by(key, orders.c.currency)
            .limit(REVENUE_ROWS_MAX)
        )  # fmt: skip
        async with self.database.transaction() as conn:
            return [_revenue_row(row) for row in await conn.execute(query)]

    async def daily_revenue(self, days: int) -> dict[str, list[RevenueRow]]:
        """Per currency, one row per local day of the last `days` (days without sales as zeros):
        what a chart draws."""
        if not 0 < days <= REVENUE_DAYS_MAX:
            raise BadRequest(f"days must be between 1 and {REVENUE_DAYS_MAX}", param="days")
        keys, since, until = recent_days(self.clock(), self.zone, days)
        found = await self.revenue("day", since, until)
        by_currency: dict[str, dict[str, RevenueRow]] = {}
        for row in found:
            by_currency.setdefault(row.currency, {})[row.key] = row
        return {
            currency: [rows.get(key) or _no_revenue(key, currency) for key in keys]
            for currency, rows in sorted(by_currency.items())
        }

    async def refund(
        self, public_id: str, amount_cents: int | None, actor: Actor
    ) -> RefundRequested:
        """Ask the order's provider to refund `amount_cents` (None: all that is left)."""
        async with self.database.transaction() as conn:
            order = (
                await conn.execute(select(orders).where(orders.c.public_id == public_id))
            ).first()
        if order is None:
            raise OrderNotFound(f"No order {public_id!r}.")
        if order.status != "paid":
            raise NotRefundable(_why_not(order.status), param="order")
        provider = self.purchases.providers.get(order.provider)
        if provider is None or order.provider_ref is None:
            raise NotRefundable(f"Payments by {order.provider} are not configured here.")
        state = await provider.state(order.provider_ref)
        if state.status != "paid" or state.disputed:
            raise NotRefundable(f"{order.provider} does not report this order as paid.")
        left = state.amount_cents - max(state.refunded_cents, order.refunded_cents)
        amount = left if amount_cents is None else amount_cents
        if left <= 0:
            raise NotRefundable("Nothing is left to refund on this order.")
        if not 0 < amount <= left:
            raise NotRefundable(
                f"amount_cents must be between 1 and {left} (what is left to refund).",
                param="amount_cents",
            )
        key = f"solaris-{public_id}-refund-{order.refunded_cents}-{amount}"
        await self._audit(actor, "order.refund_requested", order, {"amount_cents": amount})
        try:
            await provider.refund(state, amount, key)
        except ProviderUnavailable as error:
            await self._audit(actor, "order.refund_refused", order, {"error": error.message})
            raise
        return RefundRequested(order=public_id, amount_cents=amount, currency=order.currency)

    async def _audit(
        self, actor: Actor, action: str, order: Row[Any], after: Mapping[str, Any]
    ) -> None:
        before = {"status": order.status, "refunded_cents": order.refunded_cents}
        async with self.database.transaction() as conn:
            await record(conn, actor, action, "order", order.public_id, before, after, self.clock())


def _lines() -> Select[Any]:
    return select(
        orders.c.public_id, orders.c.user_id, users.c.external_id.label("user"), users.c.email,
        orders.c.pack_name, orders.c.tokens, orders.c.amount_cents, orders.c.currency,
        orders.c.provider, orders.c.status, orders.c.refunded_cents, orders.c.created_at,
        orders.c.updated_at, orders.c.paid_at,
    ).join(users, users.c.id == orders.c.user_id)  # fmt: skip


def _conditions(wanted: OrderFilter) -> list[ColumnElement[bool]]:
    conditions = []
    if wanted.status is not None:
        conditions.append(orders.c.status == wanted.status)
    if wanted.provider is not None:
        conditions.append(orders.c.provider == wanted.provider)
    if wanted.user is not None:
        conditions.append(users.c.external_id == wanted.user)
    if wanted.since is not None:
        conditions.append(orders.c.created_at >= wanted.since)
    if wanted.until is not None:
        conditions.append(orders.c.created_at < wanted.until)
    return conditions


def _refundable(row: Row[Any]) -> int:
    return row.amount_cents - row.refunded_cents if row.status == "paid" else 0


def _why_not(status: str) -> str:
    if status == "refunded":
        return "The order is refunded in full already."
    if status == "disputed":
        return "The order's payment is disputed: the provider settles it."
    return f"The order is {status}, not paid: there is nothing to refund."


def _revenue_row(row: Row[Any]) -> RevenueRow:
    paid, refunded, disputed = int(row.paid or 0), int(row.refunded or 0), int(row.disputed or 0)
    return RevenueRow(
        key=str(row.key), currency=row.currency, orders=int(row.orders), paid_cents=paid,
        refunded_cents=refunded, disputed_cents=disputed, net_cents=paid - refunded - disputed,
    )  # fmt: skip


def _no_revenue(key: str, currency: str) -> RevenueRow:
    return RevenueRow(
        key=key, currency=currency, orders=0, paid_cents=0, refunded_cents=0, disputed_cents=0,
        net_cents=0,
    )  # fmt: skip
