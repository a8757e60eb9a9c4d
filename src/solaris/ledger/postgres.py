"""The request-path ledger calls on PostgreSQL: one round trip each, on a raw asyncpg pool.

Reserve, settle and release are the PL/pgSQL functions of migrations 0002, 0004 and 0008, the same steps that
`Ledger` runs statement by statement on SQLite. Everything else (credits, balances) stays on the
SQLAlchemy engine: it is not on the request path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from solaris.ledger.ledger import Clock, Ledger, SettleOutcome, UsageRecord, utcnow
from solaris.ledger.thresholds import NO_THRESHOLDS, Thresholds
from solaris.store.database import Database

__all__ = ["PostgresLedger"]

RESERVE = "SELECT solaris_reserve($1, $2, $3, $4, $5, $6)"
SETTLE = (
    "SELECT solaris_settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
)
RELEASE = "SELECT solaris_release($1, $2, $3)"
# A pooled connection can be dead after a database restart; such a call never reached the
# database's commit, so it is tried once more on a fresh connection.
CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip: these calls never change session state."""


class PostgresLedger(Ledger):
    def __init__(
        self,
        database: Database,
        dsn: str,
        pool_size: int,
        clock: Clock = utcnow,
        thresholds: Thresholds = NO_THRESHOLDS,
    ) -> None:
        super().__init__(database, clock, thresholds)
        self._percents = list(thresholds.percents)
        self._channels = list(thresholds.channels)
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            reset=_keep_session,
            command_timeout=30,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def reserve(
        self, user_id: int, request_id: str, wanted: int, minimum: int, ttl_s: float
    ) -> int:
        assert 0 < minimum <= wanted, (minimum, wanted)
        now = self.clock()
        expires = now + timedelta(seconds=ttl_s)
        amount: int = await self._fetchval(
            RESERVE, user_id, request_id, wanted, minimum, now, expires
        )
        assert 0 <= amount <= wanted
        return amount

    async def settle(self, record: UsageRecord) -> SettleOutcome:
        crossed: list[int] | None = await self._fetchval(
            SETTLE,
            record.request_id,
            record.user_id,
            record.endpoint,
            record.model,
            record.prompt_tokens,
            record.completion_tokens,
            record.cached_tokens,
            record.reasoning_tokens,
            record.billable,
            record.estimated,
            record.status,
            record.latency_ms,
            record.conversation_id,
            self.clock(),
            self._percents,
            self._channels,
        )
        if crossed is None:
            return SettleOutcome(charged=0, already_settled=True)
        if crossed:  # rare: read the balance the notice shows
            balance, _held = await self.balance(record.user_id)
            return SettleOutcome(record.billable, False, tuple(crossed), balance)
        return SettleOutcome(charged=record.billable, already_settled=False)

    async def release(self, user_id: int, request_id: str) -> None:
        await self._fetchval(RELEASE, user_id, request_id, self.clock())

    async def _fetchval(self, query: str, *args: object) -> Any:
        assert self._pool is not None, "PostgresLedger.start() was not awaited"
        try:
            return await self._pool.fetchval(query, *args)
        except CONNECTION_ERRORS:
            return await self._pool.fetchval(query, *args)
