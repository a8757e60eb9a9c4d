"""Settling a finished request so that its charge is never lost.

`settle` tries the database once (bounded by `SETTLE_TIMEOUT_S`); when the database cannot take
it, the usage record goes to this process's journal (`journal.py`), durably, and the caller may
give the answer. When neither works it raises `SettlementLost`, and the answer is withheld.

`run_forever` replays the journal in the background as soon as the database answers (on
start-up too, with the journals that dead processes left behind). A replay is the same
idempotent settle, so an entry that had in fact reached the database (a reply lost on the way
back) is recognised as already settled and charged once.

While an entry waits, its reservation still holds its tokens in the database (until
`reservation_timeout_s`), so the user cannot spend them twice meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from dataclasses import replace

import structlog

from solaris.errors import SettlementLost, StoreUnavailable
from solaris.ledger.journal import Journal, Orphan
from solaris.ledger.ledger import Ledger, SettleOutcome, UsageRecord
from solaris.observability.metrics import Metrics

__all__ = ["SETTLE_TIMEOUT_S", "Settlements"]

log = structlog.get_logger(__name__)

SETTLE_TIMEOUT_S = 5.0  # one settle's longest wait for the database before it is journaled
REPLAY_INTERVAL_S = 1.0  # between replay passes while entries wait
ORPHAN_SCAN_S = 10.0  # how often other processes' files are looked at


class Settlements:
    def __init__(self, ledger: Ledger, journal: Journal, metrics: Metrics) -> None:
        self.ledger = ledger
        self.journal = journal
        self.metrics = metrics
        self._orphans: list[Orphan] = []
        self._file_lock = asyncio.Lock()  # appends and truncations never interleave
        self._wake = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Entries not yet in the database (this process's and adopted ones)."""
        return len(self.journal.pending) + sum(len(orphan.records) for orphan in self._orphans)

    async def probe(self) -> str:
        """For /readyz and the system monitor: "ok", or how many settlements wait."""
        waiting = self.waiting
        return "ok" if not waiting else f"{waiting} settlements waiting for the database"

    def open(self, deployment: str) -> None:
        self.journal.open(deployment)

    async def close(self) -> None:
        """At shutdown: one last replay; what still waits is left for the next start."""
        with suppress(StoreUnavailable):
            await self.replay()
        for orphan in self._orphans:
            self.journal.release(orphan)
        self._orphans.clear()
        self.journal.close()

    async def settle(self, record: UsageRecord) -> SettleOutcome:
        try:
            return await asyncio.wait_for(self.ledger.settle(record), SETTLE_TIMEOUT_S)
        except (StoreUnavailable, TimeoutError) as error:
            self.metrics.store_errors.labels("database").inc()
            log.warning("settle_journaled", request_id=record.request_id, error=str(error))
        except Exception:
            # The database refused it (a bug, a schema out of step): kept and retried like an
            # outage, so the charge waits for the operator's fix instead of vanishing.
            log.exception("settle_refused_journaled", request_id=record.request_id)
        # The time the request finished, kept for the replay (its entry's date).
        entry = replace(record, finished_at=record.finished_at or self.ledger.clock())
        try:
            async with self._file_lock:
                await asyncio.to_thread(self.journal.append, entry)
        except OSError as error:
            self.metrics.settlements_lost.inc()
            log.critical(
                "settlement_lost",
                request_id=record.request_id,
                user_id=record.user_id,
                billable=record.billable,
                error=str(error),
            )
            raise SettlementLost(str(error)) from error
        self.metrics.journal_writes.inc()
        self._changed()
        self._wake.set()
        return SettleOutcome(charged=record.billable, already_settled=False, journaled=True)

    async def replay(self) -> int:
        """Settle what waits, oldest first; stops at the first outage. An entry the database
        refuses stays (and is logged) while the others go on. Returns how many settled."""
        settled = 0
        for record in list(self.journal.pending.values()):
            if await self._replay_one(record):
                async with self._file_lock:
                    self.journal.settled(record.request_id)
                settled += 1
        for orphan in list(self._orphans):
            for record in list(orphan.records):
                if await self._replay_one(record):
                    orphan.records.remove(record)
                    settled += 1
            if not orphan.records:
                self.journal.finish(orphan)
                self._orphans.remove(orphan)
                log.info("journal_adopted_and_replayed", path=str(orphan.path))
        self._changed()
        return settled

    async def _replay_one(self, record: UsageRecord) -> bool:
        try:
            outcome = await asyncio.wait_for(self.ledger.settle(record), SETTLE_TIMEOUT_S)
        except TimeoutError as error:
            raise StoreUnavailable("the replayed settle timed out") from error
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("settle_replay_refused", request_id=record.request_id)
            return False
        self.metrics.journal_replayed.inc()
        log.info(
            "settle_replayed",
            request_id=record.request_id,
            already_settled=outcome.already_settled,
            charged=outcome.charged,
        )
        return True

    async def adopt(self) -> None:
        orphans = await asyncio.to_thread(self.journal.adopt)
        for orphan in orphans:
            log.warning("journal_adopted", path=str(orphan.path), entries=len(orphan.records))
        self._orphans.extend(orphans)
        self._changed()

    async def run_forever(self, stop: asyncio.Event) -> None:
        next_scan = 0.0
        while not stop.is_set():
            progress = False
            try:
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + ORPHAN_SCAN_S
                    await self.adopt()
                progress = await self.replay() > 0
            except StoreUnavailable as error:
                progress = True  # an outage: look again soon
                log.info("journal_replay_waits", waiting=self.waiting, error=str(error))
            except Exception:  # the replayer must outlive anything
                log.exception("journal_replay_failed", waiting=self.waiting)
            self._wake.clear()
            # Only refused entries left: they wait for the operator, looked at less often.
            interval = REPLAY_INTERVAL_S if self.waiting and progress else ORPHAN_SCAN_S
            with suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, self._wake), interval)

    def _changed(self) -> None:
        self.metrics.journal_entries.set(self.waiting)


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
