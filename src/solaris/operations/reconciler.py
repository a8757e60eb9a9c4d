"""The reconciliation of orders, every few minutes in the background, so that a payment whose
webhook never came is credited anyway (and a lost refund is taken back).

On PostgreSQL one replica at a time runs it (a session advisory lock, tried, never waited for);
the others skip that round. Running it twice would change nothing (converging is idempotent):
the lock only spares the providers' APIs the repeated questions.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

import structlog
from sqlalchemy import text

from solaris.operations.purchases import Purchases

__all__ = ["RECONCILE_INTERVAL_S", "reconcile_forever", "reconcile_once"]

log = structlog.get_logger(__name__)
RECONCILE_INTERVAL_S = 300.0
RECONCILE_LOCK = 0x501A816  # any constant of its own (MIGRATION_LOCK is 0x501A815)


async def reconcile_once(purchases: Purchases) -> int | None:
    """One round; None when another replica holds the round."""
    database = purchases.database
    if database.dialect != "postgresql":
        return await purchases.reconcile()
    async with database.engine.connect() as conn:
        taken = await conn.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": RECONCILE_LOCK}
        )
        if not taken:
            return None
        try:
            return await purchases.reconcile()
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": RECONCILE_LOCK})


async def reconcile_forever(
    purchases: Purchases, stop: asyncio.Event, interval_s: float = RECONCILE_INTERVAL_S
) -> None:
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            return
        try:
            looked_at = await reconcile_once(purchases)
            if looked_at:
                log.info("orders_reconciled", orders=looked_at)
        except Exception:
            log.exception("orders_reconcile_failed")
