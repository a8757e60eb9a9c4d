"""Credit purchases: an order from a pack, its payment at a provider, and what the provider says
of it turned into ledger entries exactly once.

- An order is made for the signed-in user only, as a copy of the pack; the provider is then
  asked to start the payment with an idempotency key of the order's own.
- Whatever arrives (a webhook, a reconciliation, an event twice or out of order), the product
  asks the provider for the payment's state and `converge`s the order to it, in one transaction
  under the order's row lock: the purchase entry (idempotency key `order:<id>`) credits once;
  a refund, total or partial, takes back the same share of the tokens (one entry per amount
  reached, keyed by it); a dispute takes back all of it. A paid amount or currency other than
  the order's credits nothing and raises a system alert.
- The success page only shows the order: it never credits by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import Clock
from solaris.config import CreditPack
from solaris.errors import BadRequest, NotFound
from solaris.ledger.ledger import Ledger
from solaris.operations.receipts import Receipts
from solaris.payments.base import (
    Event,
    OrderToPay,
    PaymentState,
    Provider,
    ProviderUnavailable,
)
from solaris.store.audit import Actor, record
from solaris.store.database import Database, insert
from solaris.store.schema import orders, payment_events, users

if TYPE_CHECKING:  # the CLI starts faster without Prometheus' client
    from solaris.observability.metrics import Metrics

__all__ = ["Alarm", "OrderView", "Purchases"]

ORDER_PREFIX = "ord_"
ORDERS_LISTED_MAX = 100
RECONCILE_BATCH = 200  # orders asked about per run
RECONCILE_OPEN_FOR = timedelta(days=35)  # orders older than this are left as they are
RECONCILE_PAID_FOR = timedelta(days=30)  # paid orders are swept for refunds this long
Alarm = Callable[[str, Mapping[str, Any]], Awaitable[None]]  # a system alert: event, data


@dataclass(frozen=True, slots=True)
class OrderView:
    public_id: str
    pack_name: str
    tokens: int
    amount_cents: int
    currency: str
    provider: str
    status: str
    refunded_cents: int
    pay_url: str | None
    pix_code: str | None
    pix_qr_png: str | None
    created_at: datetime
    paid_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> OrderView:
        return cls(**{name: getattr(row, name) for name in cls.__slots__})


class Purchases:
    def __init__(
        self,
        database: Database,
        ledger: Ledger,
        packs: Sequence[CreditPack],
        providers: Mapping[str, Provider],
        clock: Clock,
        alarm: Alarm | None = None,
        receipts: Receipts | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.database = database
        self.ledger = ledger
        self.packs = {pack.name: pack for pack in packs}
        self.providers = providers
        self.clock = clock
        self.alarm = alarm
        self.receipts = receipts  # None: no e-mail channel, no receipts
        self.metrics = metrics

    async def start(
        self,
        user_id: int,
        pack_name: str,
        provider_name: str,
        language: str,
        return_url: Callable[[str], tuple[str, str]],
    ) -> OrderView:
        """Order `pack_name` for the user and start its payment; `return_url(order id)` gives
        the pages the provider sends the user back to (success, cancel)."""
        pack = self.packs.get(pack_name)
        if pack is None:
            raise BadRequest(f"No credit pack named {pack_name!r}.", param="pack")
        provider = self.providers.get(provider_name)
        if provider is None:
            raise BadRequest(f"Payment by {provider_name!r} is not offered.", param="provider")
        public_id = ORDER_PREFIX + uuid.uuid4().hex
        now = self.clock()
        async with self.database.transaction() as conn:
            email = await conn.scalar(select(users.c.email).where(users.c.id == user_id))
            await conn.execute(
                orders.insert().values(
                    public_id=public_id, user_id=user_id, pack_name=pack.name,
                    tokens=pack.tokens, credit_days=pack.expires_in_days,
                    amount_cents=pack.price_cents, currency=pack.currency,
                    provider=provider.name, status="open", refunded_cents=0,
                    created_at=now, updated_at=now, language=language,
                )
            )  # fmt: skip
        success_url, cancel_url = return_url(public_id)
        to_pay = OrderToPay(
            public_id, pack.name, pack.price_cents, pack.currency, email, language,
            success_url, cancel_url,
        )  # fmt: skip
        self._count(provider.name, "open")
        try:
            checkout = await provider.start(to_pay, key=f"solaris-{public_id}")
        except ProviderUnavailable:
            await self._set(public_id, status="failed")
            self._count(provider.name, "failed")
            raise
        self._count(provider.name, "pending")
        return await self._set(
            public_id,
            status="pending",
            provider_ref=checkout.ref,
            pay_url=checkout.pay_url,
            pix_code=checkout.pix_code,
            pix_qr_png=checkout.pix_qr_png,
            expires_at=checkout.expires_at,
        )

    async def order_of(self, user_id: int, public_id: str) -> OrderView:
        """One of the user's orders (another user's is not found, as a missing one is)."""
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(orders).where(
                        orders.c.public_id == public_id, orders.c.user_id == user_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound("No such order.")
        return OrderView.of(row)

    async def orders_of(self, user_id: int) -> list[OrderView]:
        query = (
            select(orders)
            .where(orders.c.user_id == user_id)
            .order_by(orders.c.created_at.desc(), orders.c.id.desc())
            .limit(ORDERS_LISTED_MAX)
        )
        async with self.database.transaction() as conn:
            return [OrderView.of(row) for row in await conn.execute(query)]

    async def reconcile(self) -> int:
        """Ask the providers again about the orders an event may have missed: those still
        pending, and those paid lately (a refund or dispute whose event was lost); returns how
        many were looked at. Converging is idempotent, so two runs at once change nothing."""
        now = self.clock()
        settled_since = now - RECONCILE_PAID_FOR
        query = (
            select(orders.c.provider, orders.c.provider_ref)
            .where(
                orders.c.provider_ref.is_not(None),
                orders.c.provider.in_(list(self.providers)),
                (orders.c.status == "pending")
                | ((orders.c.status == "paid") & (orders.c.paid_at >= settled_since)),
                orders.c.created_at >= now - RECONCILE_OPEN_FOR,
            )
            .order_by(orders.c.updated_at)
            .limit(RECONCILE_BATCH)
        )
        async with self.database.transaction() as conn:
            due = [(row.provider, row.provider_ref) for row in await conn.execute(query)]
        for provider, ref in due:
            try:
                await self.converge(await self.providers[provider].state(ref))
            except ProviderUnavailable:
                continue  # the next run asks again
        return len(due)

    async def take_event(
        self, provider_name: str, body: bytes, headers: dict[str, str], query: dict[str, str]
    ) -> OrderView | None:
        """A provider's webhook: verified, then the payment fetched and converged to."""
        provider = self.providers.get(provider_name)
        if provider is None:
            raise NotFound(f"No payment provider {provider_name!r} is configured.")
        event = provider.verify(body, headers, query)
        ref = event.ref or await self._ref_by_payment(provider.name, event.payment_ref)
        if ref is None:  # not about a payment of ours: noted, nothing to do
            await self._note(provider.name, event, None)
            return None
        return await self.converge(await provider.state(ref), event)

    async def converge(self, state: PaymentState, event: Event | None = None) -> OrderView | None:
        """Bring the order of `state` to what the provider reports, once (see the module)."""
        now = self.clock()
        async with self.database.transaction() as conn:
            order = await self._locked(conn, state)
            await self._note(state.provider, event, order, conn)
            if order is None:  # another deployment's payment, or none of ours
                return None
            mismatch = (state.amount_cents, state.currency) != (order.amount_cents, order.currency)
            if not mismatch:
                await self._apply(conn, order, state, now)
            after = (await conn.execute(select(orders).where(orders.c.id == order.id))).one()
        self._count_change(order, after)
        if mismatch and self.alarm is not None:
            await self.alarm(
                "payment_mismatch",
                {
                    "order": order.public_id, "provider": state.provider,
                    "paid": f"{state.amount_cents} {state.currency}",
                    "expected": f"{order.amount_cents} {order.currency}",
                },
            )  # fmt: skip
        return OrderView.of(after)

    async def _apply(
        self, conn: AsyncConnection, order: Row[Any], state: PaymentState, now: datetime
    ) -> None:
        actor = Actor(f"payments:{state.provider}")
        public_id = order.public_id
        paid_at = order.paid_at
        if state.status == "paid" and paid_at is None:
            paid_at = now
            expires = None if order.credit_days is None else now + timedelta(order.credit_days)
            await self.ledger.credit(
                conn, order.user_id, "purchase", order.tokens, f"order:{public_id}",
                actor.label, f"{order.pack_name} ({public_id})", expires,
            )  # fmt: skip
            if self.receipts is not None:  # in this transaction: sent iff credited, once
                await self.receipts.enqueue(conn, self.database.dialect, order, now, expires)
        refunded = max(order.refunded_cents, min(state.refunded_cents, order.amount_cents))
        disputed = state.disputed or order.status == "disputed"
        if paid_at is not None:  # what the order's tokens owe back: before, and now
            taken = _owed_back(order.tokens, order.amount_cents, order.refunded_cents,
                               order.status == "disputed")  # fmt: skip
            owed = _owed_back(order.tokens, order.amount_cents, refunded, disputed)
            if owed > taken:
                why = "dispute" if disputed else f"refund of {refunded}"
                await self.ledger.deduct(
                    conn, order.user_id, owed - taken, f"order:{public_id}:back:{owed}",
                    actor.label, f"{why} ({public_id})",
                )  # fmt: skip
        status = _status(order.status, state, paid_at is not None, refunded, disputed)
        if (status, refunded, paid_at) == (order.status, order.refunded_cents, order.paid_at):
            return
        await conn.execute(
            update(orders)
            .where(orders.c.id == order.id)
            .values(
                status=status, refunded_cents=refunded, paid_at=paid_at, updated_at=now,
                provider_payment=state.payment_ref or order.provider_payment,
            )
        )  # fmt: skip
        await record(
            conn, actor, f"order.{status}", "order", public_id,
            {"status": order.status, "refunded_cents": order.refunded_cents},
            {"status": status, "refunded_cents": refunded}, now,
        )  # fmt: skip

    def _count(self, provider: str, status: str) -> None:
        if self.metrics is not None:
            self.metrics.child(self.metrics.orders, provider, status).inc()

    def _count_change(self, before: Row[Any], after: Row[Any]) -> None:
        """Count what this transaction changed (committed: it happened once, here)."""
        if self.metrics is None:
            return
        labels = (after.provider, after.currency)
        if after.status != before.status:
            self._count(after.provider, after.status)
        if after.paid_at is not None and before.paid_at is None:
            self.metrics.child(self.metrics.revenue, *labels).inc(after.amount_cents)
        if after.refunded_cents > before.refunded_cents:
            refunded = after.refunded_cents - before.refunded_cents
            self.metrics.child(self.metrics.refunded, *labels).inc(refunded)

    async def _locked(self, conn: AsyncConnection, state: PaymentState) -> Row[Any] | None:
        query = select(orders).where(
            orders.c.provider == state.provider, orders.c.provider_ref == state.ref
        )
        row = (await conn.execute(query.with_for_update())).first()
        if row is None or row.public_id != (state.order_public_id or row.public_id):
            return None
        return row

    async def _note(
        self,
        provider: str,
        event: Event | None,
        order: Row[Any] | None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Keep the event by its id (once: a second delivery is recognised, and ignored)."""
        if event is None:
            return
        statement = (
            insert(self.database.dialect, payment_events)
            .values(
                provider=provider, event_id=event.id[:255], kind=event.kind[:64],
                order_id=None if order is None else order.id, received_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        )  # fmt: skip
        if conn is not None:
            await conn.execute(statement)
            return
        async with self.database.transaction() as own:
            await own.execute(statement)

    async def _ref_by_payment(self, provider: str, payment_ref: str | None) -> str | None:
        if payment_ref is None:
            return None
        query = select(orders.c.provider_ref).where(
            orders.c.provider == provider, orders.c.provider_payment == payment_ref
        )
        async with self.database.transaction() as conn:
            found: str | None = await conn.scalar(query)
        return found

    async def _set(self, public_id: str, **values: Any) -> OrderView:
        async with self.database.transaction() as conn:
            await conn.execute(
                update(orders)
                .where(orders.c.public_id == public_id)
                .values(updated_at=self.clock(), **values)
            )
            row = (await conn.execute(select(orders).where(orders.c.public_id == public_id))).one()
        return OrderView.of(row)


def _owed_back(tokens: int, amount_cents: int, refunded_cents: int, disputed: bool) -> int:
    """The tokens a refund of `refunded_cents` takes back (the same share, rounded down), or
    all of them once the payment is disputed."""
    return tokens if disputed else tokens * refunded_cents // amount_cents


def _status(current: str, state: PaymentState, paid: bool, refunded: int, disputed: bool) -> str:
    if disputed:
        return "disputed"
    if paid:
        return "refunded" if refunded >= state.amount_cents else "paid"
    if current in ("paid", "refunded", "disputed"):
        return current  # a late "pending" or "expired" never undoes a payment
    return state.status
