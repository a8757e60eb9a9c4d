"""The background worker that empties the outbox: claim due rows, send, record, back off.

Bounded everywhere: `batch_size` rows (sent concurrently) per cycle, each send under its
channel's timeout and the lease, `attempts_max` attempts per alert, and a delay between attempts
that doubles up to `delay_max_s`, drawn with jitter so many alerts failing together (an SMTP
outage) do not retry in one burst. A restarted gateway just claims what is still pending.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.alerts.channels import Channel, Delivery, DeliveryError
from solaris.store.database import Database
from solaris.store.outbox import (
    OutboxRow,
    claim_due,
    purge_finished,
    record_failure,
    record_sent,
)

__all__ = ["Deliverer", "RetryPolicy"]

log = structlog.get_logger(__name__)

PURGE_EVERY = timedelta(hours=1)

# Completes a delivery before a channel sends it (e.g. the words of a threshold alert).
Prepare = Callable[[Delivery], Awaitable[Delivery]]


async def _as_is(delivery: Delivery) -> Delivery:
    return delivery


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    attempts_max: int = 10
    delay_first_s: float = 30.0
    delay_max_s: float = 3600.0
    jitter: float = 0.5  # each delay is drawn from [delay * (1 - jitter), delay]

    def __post_init__(self) -> None:
        assert self.attempts_max >= 1, self.attempts_max
        assert 0 < self.delay_first_s <= self.delay_max_s, (self.delay_first_s, self.delay_max_s)
        assert 0 <= self.jitter < 1, self.jitter

    def delay_s(self, attempts: int, draw: float) -> float:
        """The wait after the `attempts`-th failed attempt; `draw` is uniform in [0, 1)."""
        assert attempts >= 1 and 0 <= draw < 1
        delay = min(self.delay_max_s, self.delay_first_s * 2.0 ** min(attempts - 1, 32))
        return delay * (1 - self.jitter * draw)


@dataclass(frozen=True)
class _Outcome:
    row: OutboxRow
    error: DeliveryError | None


class Deliverer:
    def __init__(
        self,
        database: Database,
        channels: Mapping[str, Channel],
        *,
        policy: RetryPolicy | None = None,
        batch_size: int = 20,
        lease_s: float = 300.0,
        poll_interval_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
        draw: Callable[[], float] = random.random,
        prepare: Prepare = _as_is,
        retention: timedelta | None = None,
    ) -> None:
        assert channels, "a deliverer without channels would deliver nothing"
        assert 0 < batch_size <= 1000 and poll_interval_s > 0 and lease_s > 0
        self.database = database
        self.channels = dict(channels)
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.lease_s = lease_s  # longer than any send: a send times out well before it
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.draw = draw
        self.prepare = prepare
        self.retention = retention  # finished alerts older than this are deleted, hourly
        self._purged_at: datetime | None = None

    async def run_once(self, now: datetime | None = None) -> int:
        """One cycle: claim what is due at `now`, send it, record how it went. Returns how many
        were delivered."""
        _claimed, sent = await self._cycle(now or self.clock())
        return sent

    async def _cycle(self, now: datetime) -> tuple[int, int]:
        async with self.database.transaction() as conn:
            rows = await claim_due(
                conn,
                self.database.dialect,
                now,
                channels=sorted(self.channels),
                limit=self.batch_size,
                lease_s=self.lease_s,
                attempts_max=self.policy.attempts_max,
            )
        if not rows:
            return 0, 0
        outcomes = await asyncio.gather(*(self._send(row, now) for row in rows))
        async with self.database.transaction() as conn:
            for outcome in outcomes:
                await self._record(conn, outcome, now)
        return len(rows), sum(outcome.error is None for outcome in outcomes)

    async def _send(self, row: OutboxRow, now: datetime) -> _Outcome:
        delivery = Delivery(
            row.id, row.kind, row.dedupe_key, row.recipient, row.payload, row.created_at,
            row.attempts, now,
        )  # fmt: skip
        try:
            await self.channels[row.channel].send(await self.prepare(delivery))
        except DeliveryError as error:
            return _Outcome(row, error)
        except Exception as error:  # a channel bug must not stop the other alerts
            log.exception("alert channel crashed", alert_id=row.id, channel=row.channel)
            return _Outcome(row, DeliveryError(f"channel crashed: {error!r}"))
        return _Outcome(row, None)

    async def _record(self, conn: AsyncConnection, outcome: _Outcome, now: datetime) -> None:
        row, error = outcome.row, outcome.error
        if error is None:
            await record_sent(conn, row, now)
            log.info("alert sent", alert_id=row.id, kind=row.kind, channel=row.channel)
            return
        give_up = error.permanent or row.attempts >= self.policy.attempts_max
        retry_at = None
        if not give_up:
            retry_at = now + timedelta(seconds=self.policy.delay_s(row.attempts, self.draw()))
        await record_failure(conn, row, str(error), retry_at)
        log.warning(
            "alert not delivered",
            alert_id=row.id,
            channel=row.channel,
            attempt=row.attempts,
            error=str(error),
            retry_at=None if retry_at is None else retry_at.isoformat(),
        )

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Cycle until `stop` is set; a full batch goes again at once, otherwise wait a poll
        interval. Errors (database down) are logged and retried at the next poll."""
        while not stop.is_set():
            claimed = 0
            try:
                claimed, _sent = await self._cycle(self.clock())
                await self.purge_if_due(self.clock())
            except Exception:
                log.exception("alert delivery cycle failed")
            if claimed < self.batch_size:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval_s)

    async def purge_if_due(self, now: datetime) -> int:
        """Delete finished alerts past the retention, at most once an hour."""
        if self.retention is None:
            return 0
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY:
            return 0
        self._purged_at = now
        async with self.database.transaction() as conn:
            purged = await purge_finished(conn, now - self.retention)
        if purged:
            log.info("alerts purged", count=purged)
        return purged

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()
