"""System alerts: the upstream's error rate and p95 latency per provider over a sliding window,
and whether the database and Redis answer — each raised once when it goes wrong and once more
when it recovers.

The request path only appends `(time, failed, latency)` to a bounded deque (`observe`); a
background task looks at the window every few seconds (`check`). Alerts go to the outbox with a
key that holds the cooldown window, so instances noticing the same trouble write one row and a
flapping provider writes at most one per cooldown. An unreachable database cannot hold its own
alert, nor can settlements waiting in the journal (they wait because the database is away):
those are sent straight through the channels, once per outage and process.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import structlog

from solaris.alerts.channels import Channel, Delivery, DeliveryError
from solaris.alerts.model import SystemEvent, system_alerts
from solaris.store.database import Database
from solaris.store.outbox import KIND_SYSTEM, Alert, enqueue

__all__ = ["MonitorSettings", "SystemMonitor"]

log = structlog.get_logger(__name__)

PROVIDERS_MAX = 64  # providers watched (the label is bounded like the metrics' labels)
SAMPLES_MAX = 20_000  # per provider and window: memory is bounded whatever the traffic
CHECK_INTERVAL_S = 5.0

Probe = Callable[[], Awaitable[str]]  # "ok" / "not configured", or what is wrong
# What a probe's trouble and its end are called, when not "<probe>_unreachable|_recovered".
PROBE_EVENTS = {"journal": ("settlements_journaled", "settlements_replayed")}
DIRECT_EVENTS = frozenset({"database_unreachable", "settlements_journaled"})


@dataclass(frozen=True)
class MonitorSettings:
    error_rate_max: float
    latency_p95_max_s: float
    window_s: int
    requests_min: int
    cooldown_s: int
    channels: tuple[str, ...]
    operator_email: str | None


@dataclass(slots=True)
class _Sample:
    at: float
    failed: bool
    latency_s: float | None


class SystemMonitor:
    def __init__(
        self,
        settings: MonitorSettings,
        database: Database,
        probes: Mapping[str, Probe],
        channels: Mapping[str, Channel],
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.database = database
        self.probes = dict(probes)  # "database", "redis"
        self.channels = dict(channels)
        self.clock = clock
        self.monotonic = monotonic
        self._samples: dict[str, deque[_Sample]] = {}
        self._alarms: set[tuple[str, str]] = set()  # (condition, scope) currently raised

    def observe(self, provider: str, failed: bool, latency_s: float | None) -> None:
        """One upstream call (request path: an append, nothing else)."""
        samples = self._samples.get(provider)
        if samples is None:
            if len(self._samples) >= PROVIDERS_MAX:
                return
            samples = self._samples[provider] = deque(maxlen=SAMPLES_MAX)
        samples.append(_Sample(self.monotonic(), failed, latency_s))

    async def check(self) -> list[SystemEvent]:
        """Look at the window and the stores once; write what changed. Returns the events."""
        events: list[tuple[SystemEvent, str]] = []
        for provider, samples in self._samples.items():
            events.extend(self._upstream_events(provider, samples))
        for store, probe in self.probes.items():
            events.extend(await self._store_events(store, probe))
        for event, scope in events:
            await self._raise(event, scope)
        return [event for event, _scope in events]

    def _upstream_events(
        self, provider: str, samples: deque[_Sample]
    ) -> list[tuple[SystemEvent, str]]:
        s = self.settings
        horizon = self.monotonic() - s.window_s
        while samples and samples[0].at < horizon:
            samples.popleft()
        if len(samples) < s.requests_min:
            return []  # too few calls to say anything about a rate (either way)
        failed = sum(sample.failed for sample in samples)
        rate = failed / len(samples)
        rate_data = {
            "provider": provider,
            "error_rate_percent": round(rate * 100, 1),
            "threshold_percent": round(s.error_rate_max * 100, 1),
            "window_s": s.window_s,
            "requests": len(samples),
        }
        events = self._transition(
            "upstream_error_rate", provider, rate > s.error_rate_max, rate_data
        )
        latencies = sorted(x.latency_s for x in samples if x.latency_s is not None)
        if latencies:
            p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
            latency_data = {
                "provider": provider,
                "p95_ms": round(p95 * 1000),
                "threshold_ms": round(s.latency_p95_max_s * 1000),
                "window_s": s.window_s,
            }
            events += self._transition(
                "upstream_latency", provider, p95 > s.latency_p95_max_s, latency_data
            )
        return events

    async def _store_events(self, store: str, probe: Probe) -> list[tuple[SystemEvent, str]]:
        try:
            state = await probe()
        except Exception as error:  # a probe must never stop the monitor
            state = f"unreachable: {type(error).__name__}"
        down = state not in ("ok", "not configured")
        condition, recovered = PROBE_EVENTS.get(store, (f"{store}_unreachable", None))
        return self._transition(condition, store, down, {"error": state}, recovered)

    def _transition(
        self,
        condition: str,
        scope: str,
        bad: bool,
        data: Mapping[str, object],
        recovered: str | None = None,
    ) -> list[tuple[SystemEvent, str]]:
        key = (condition, scope)
        if bad and key not in self._alarms:
            self._alarms.add(key)
            return [(SystemEvent(condition, "critical", dict(data)), scope)]
        if not bad and key in self._alarms:
            self._alarms.discard(key)
            recovered = recovered or condition.removesuffix("_unreachable") + "_recovered"
            return [(SystemEvent(recovered, "info", dict(data)), scope)]
        return []

    async def alarm(self, event: str, data: Mapping[str, object]) -> None:
        """A critical system alert raised by the caller (a payment that does not match its
        order), on the operator's channels; the dedupe key's scope is its data."""
        scope = ",".join(f"{key}={value}" for key, value in sorted(data.items()))[:120]
        await self._raise(SystemEvent(event, "critical", dict(data)), scope)

    async def _raise(self, event: SystemEvent, scope: str) -> None:
        s = self.settings
        rows = system_alerts(
            event,
            s.channels,
            self.clock(),
            scope=scope,
            cooldown_s=s.cooldown_s,
            operator_email=s.operator_email,
        )
        log.warning("system_alert", alert=event.event, scope=scope, **event.data)
        if event.event in DIRECT_EVENTS:
            await self._send_now(rows)
            return
        try:
            async with self.database.transaction() as conn:
                for row in rows:
                    await enqueue(conn, self.database.dialect, row)
        except Exception:
            log.exception("system alert not written", alert=event.event)

    async def _send_now(self, rows: list[Alert]) -> None:
        """Without a database there is no outbox: one attempt per channel, right now."""
        for row in rows:
            channel = self.channels.get(row.channel)
            if channel is None:
                continue
            delivery = Delivery(
                0, KIND_SYSTEM, row.dedupe_key, row.recipient, row.payload, row.created_at,
                1, row.created_at,
            )  # fmt: skip
            try:
                await channel.send(delivery)
            except DeliveryError as error:
                log.warning("system alert not sent", alert=row.dedupe_key, error=str(error))

    async def run_forever(self, stop: asyncio.Event, interval_s: float = CHECK_INTERVAL_S) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception:
                log.exception("system monitor check failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
