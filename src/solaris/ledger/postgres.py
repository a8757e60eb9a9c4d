"""Pending transfers on PostgreSQL: group-committed calls of PL/pgSQL functions on a raw
asyncpg pool.

Reserve, settle and release are PL/pgSQL functions (their living copies are in `store/sql/`,
checked against a migrated database; each migration that changed one pins its own copy), the
same rules that `pending.StatementPending` runs statement by statement. The calls that arrive
while one round trip is in flight go together in the next (`batches.GroupCommit`), as one call
of `solaris_batch`: one transaction, one commit. Everything else of the ledger (credits,
balances) stays on the SQLAlchemy engine: it is not on the request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from solaris.clock import Clock
from solaris.ledger.batches import GroupCommit
from solaris.ledger.caps import Cap
from solaris.ledger.pending import tool_calls_json, tool_entries
from solaris.ledger.records import Hold, SettleOutcome, UsageRecord
from solaris.ledger.thresholds import Thresholds
from solaris.store.database import is_outage, unavailable

__all__ = ["BATCH_CALLS_MAX", "PostgresPending"]

BATCH = (
    "SELECT b_index, b_amount, b_balance, b_crossed, b_refused"
    " FROM solaris_batch($1::jsonb, $2, $3)"
)
BATCH_CALLS_MAX = 128  # calls per transaction: bounds a batch's statement and its locks
# A pooled connection can be dead after a database restart; such a call never reached the
# database's commit, so it is tried once more on a fresh connection.
CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
CALL_ATTEMPTS = 2

Call = dict[str, Any]  # one call of `solaris_batch`, as its JSON element


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip: these calls never change session state."""


class PostgresPending:
    """`pending.Pending` as group-committed calls of the PL/pgSQL functions."""

    def __init__(self, dsn: str, pool_size: int, clock: Clock, thresholds: Thresholds) -> None:
        self.clock = clock
        self._percents = list(thresholds.percents)
        self._channels = list(thresholds.channels)
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._calls: GroupCommit[Call, Any] = GroupCommit(self._run, BATCH_CALLS_MAX)
        self._abandoned: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            reset=_keep_session,
            command_timeout=30,
        )

    async def close(self) -> None:
        await self._calls.drain()
        if self._abandoned:
            await asyncio.gather(*self._abandoned, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()

    async def reserve(
        self,
        user_id: int,
        request_id: str,
        wanted: int,
        minimum: int,
        ttl_s: float,
        caps: Sequence[Cap] = (),
    ) -> Hold:
        assert 0 < minimum <= wanted, (minimum, wanted)
        now = self.clock()
        call = {"call": "reserve", "user": user_id, "request": request_id, "wanted": wanted}
        call |= {"minimum": minimum, "now": now, "expires": now + timedelta(seconds=ttl_s)}
        if caps:
            call["caps"] = [cap.to_call() for cap in caps]
        try:
            row = await self._calls.submit(call)
        except asyncio.CancelledError:
            # Nobody will forward this request: free its hold now rather than at its expiry
            # (the release queues behind the reserve, so it finds the hold if one was made).
            task = asyncio.create_task(self._release_quietly(user_id, request_id))
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            raise
        amount, balance, refused = int(row["b_amount"]), int(row["b_balance"]), row["b_refused"]
        assert 0 <= amount <= wanted, (amount, wanted)
        assert amount == 0 or amount >= minimum, (amount, minimum)
        assert refused is None or (amount == 0 and 0 <= refused < len(caps)), (refused, amount)
        return Hold(amount, balance, refused)

    async def settle(self, record: UsageRecord) -> SettleOutcome:
        tools = tool_entries(record)
        row = await self._calls.submit(
            {
                "call": "settle",
                "request": record.request_id,
                "user": record.user_id,
                "endpoint": record.endpoint,
                "model": record.model,
                "prompt": record.prompt_tokens,
                "completion": record.completion_tokens,
                "cached": record.cached_tokens,
                "reasoning": record.reasoning_tokens,
                "billable": record.billable,
                "estimated": record.estimated,
                "status": record.status,
                "latency": record.latency_ms,
                "conversation": record.conversation_id,
                "now": record.finished_at or self.clock(),
                "cache_write": record.cache_write_tokens,
                "weights": record.weights,
                "tool_calls": tool_calls_json(record),
                "tool_names": [charge.tool for charge, _, _ in tools],
                "tool_amounts": [charge.amount for charge, _, _ in tools],
                "tool_notes": [note for _, _, note in tools],
            }
        )
        crossed: list[int] | None = row["b_crossed"]
        if crossed is None:
            return SettleOutcome(charged=0, already_settled=True)
        if crossed:
            return SettleOutcome(record.billable, False, tuple(crossed), int(row["b_balance"]))
        return SettleOutcome(charged=record.billable, already_settled=False)

    async def release(self, user_id: int, request_id: str) -> None:
        call = {"call": "release", "user": user_id, "request": request_id, "now": self.clock()}
        await self._calls.submit(call)

    async def _release_quietly(self, user_id: int, request_id: str) -> None:
        with suppress(Exception):  # else the hold expires as a crashed process's would
            await self.release(user_id, request_id)

    async def _run(self, calls: Sequence[Call]) -> list[Any]:
        """One transaction for all of `calls`; when the database refuses it (one bad call
        rolls back them all), each goes again alone, so only that call gets the error."""
        try:
            return await self._batch(calls)
        except asyncpg.PostgresError:
            if len(calls) == 1:
                raise
        return [await self._alone(call) for call in calls]

    async def _alone(self, call: Call) -> Any:
        try:
            return (await self._batch([call]))[0]
        except Exception as error:
            return error

    async def _batch(self, calls: Sequence[Call]) -> list[Any]:
        rows = await self._fetch(
            BATCH,
            orjson.dumps(calls, option=orjson.OPT_NAIVE_UTC).decode(),
            self._percents,
            self._channels,
        )
        answers: list[Any] = [None] * len(calls)
        for row in rows:
            answers[row["b_index"] - 1] = row
        assert None not in answers, "solaris_batch left a call unanswered"
        return answers

    async def _fetch(self, query: str, *args: object) -> list[Any]:
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
    async def _call(pool: asyncpg.Pool, query: str, args: tuple[object, ...]) -> list[Any]:
        async with pool.acquire() as connection:
            try:
                rows: list[Any] = await connection.fetch(query, *args)
                return rows
            except BaseException as error:
                # A server error leaves the connection clean; anything else (a dropped socket,
                # a cancelled call, "another operation is in progress") may not: never hand it
                # to the next request.
                if not isinstance(error, asyncpg.PostgresError):
                    connection.terminate()
                raise
