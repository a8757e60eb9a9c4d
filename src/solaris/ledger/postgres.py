"""Pending transfers on PostgreSQL: one round trip each, on a raw asyncpg pool.

Reserve, settle and release are PL/pgSQL functions (their living copies are in `store/sql/`,
checked against a migrated database; each migration that changed one pins its own copy), the same rules that `pending.StatementPending`
runs statement by statement. Everything else of the ledger (credits, balances) stays on the
SQLAlchemy engine: it is not on the request path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from solaris.clock import Clock
from solaris.ledger.pending import tool_calls_json, tool_entries
from solaris.ledger.records import Hold, SettleOutcome, UsageRecord
from solaris.ledger.thresholds import Thresholds
from solaris.store.database import is_outage, unavailable

__all__ = ["PostgresPending"]

RESERVE = "SELECT o_amount, o_balance FROM solaris_reserve($1, $2, $3, $4, $5, $6)"
SETTLE = (
    "SELECT o_balance, o_crossed FROM solaris_settle("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
    "$17, $18, $19, $20, $21, $22)"
)
RELEASE = "SELECT solaris_release($1, $2, $3)"
# A pooled connection can be dead after a database restart; such a call never reached the
# database's commit, so it is tried once more on a fresh connection.
CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
CALL_ATTEMPTS = 2


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip: these calls never change session state."""


class PostgresPending:
    """`pending.Pending` as calls of the PL/pgSQL functions."""

    def __init__(self, dsn: str, pool_size: int, clock: Clock, thresholds: Thresholds) -> None:
        self.clock = clock
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
    ) -> Hold:
        assert 0 < minimum <= wanted, (minimum, wanted)
        now = self.clock()
        expires = now + timedelta(seconds=ttl_s)
        row = await self._fetchrow(RESERVE, user_id, request_id, wanted, minimum, now, expires)
        amount, balance = int(row["o_amount"]), int(row["o_balance"])
        assert 0 <= amount <= wanted, (amount, wanted)
        assert amount == 0 or amount >= minimum, (amount, minimum)
        return Hold(amount, balance)

    async def settle(self, record: UsageRecord) -> SettleOutcome:
        tools = tool_entries(record)
        row = await self._fetchrow(
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
            record.finished_at or self.clock(),
            self._percents,
            self._channels,
            record.cache_write_tokens,
            record.weights,
            tool_calls_json(record),
            [charge.tool for charge, _, _ in tools],
            [charge.amount for charge, _, _ in tools],
            [note for _, _, note in tools],
        )
        crossed: list[int] | None = row["o_crossed"]
        if crossed is None:
            return SettleOutcome(charged=0, already_settled=True)
        if crossed:
            return SettleOutcome(record.billable, False, tuple(crossed), int(row["o_balance"]))
        return SettleOutcome(charged=record.billable, already_settled=False)

    async def release(self, user_id: int, request_id: str) -> None:
        await self._fetchrow(RELEASE, user_id, request_id, self.clock())

    async def _fetchrow(self, query: str, *args: object) -> Any:
        """One call; an outage comes out as `StoreUnavailable` (see store/database.py), after
        one more try on a fresh connection when the first one had died."""
        assert self._pool is not None, "PostgresPending.start() was not awaited"
        for attempt in range(1, CALL_ATTEMPTS + 1):
            try:
                return await self._call(self._pool, query, args)
            except CONNECTION_ERRORS as error:
                if attempt == CALL_ATTEMPTS:
                    raise unavailable(error) from error
            except Exception as error:
                if is_outage(error):
                    raise unavailable(error) from error
                raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _call(pool: asyncpg.Pool, query: str, args: tuple[object, ...]) -> Any:
        async with pool.acquire() as connection:
            try:
                return await connection.fetchrow(query, *args)
            except BaseException as error:
                # A server error leaves the connection clean; anything else (a dropped socket,
                # a cancelled call, "another operation is in progress") may not: never hand it
                # to the next request.
                if not isinstance(error, asyncpg.PostgresError):
                    connection.terminate()
                raise
