"""Alerts on usage windows and caps, at the thresholds of the balance alerts (80% and 100% by
default, SOLARIS_ALERT_THRESHOLDS), once per window instance.

Checked after a settle, for the caps its request was reserved under: each cap's usage now
(`caps.spent`, this settle's row included) at or past a threshold writes one outbox row per
channel whose dedupe key names the user, the cap and the window instance (a calendar window's
start; a rolling window's slot of its own length). Level, not edge: two requests settling at
once cannot both miss a crossing, and the key keeps it to one alert; the request whose row was
new is the one whose streamed reply says so. A settle that is not followed by this check (the
process died between the two) leaves the alert to the next settle in the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from solaris.ledger.caps import Cap, spent
from solaris.ledger.thresholds import Thresholds
from solaris.store.database import Database
from solaris.store.outbox import KIND_CAP_THRESHOLD, OPERATOR, Alert, enqueue
from solaris.store.schema import users

__all__ = ["CapAlerts", "CapReached"]

CapReached = dict[str, Any]  # an alert's data: kind, percent, used, tokens, until… (texts.caps)


class CapAlerts:
    def __init__(
        self,
        database: Database,
        thresholds: Thresholds,
        language: str,
        timezone: str,
        public_base_url: str,
    ) -> None:
        self.database = database
        self.thresholds = thresholds
        self.language = language
        self.timezone = timezone
        self.limits_url = public_base_url.rstrip("/") + "/portal/limit"

    async def after_settle(
        self, user_id: int, plan: str, caps: Sequence[Cap], charged: int, now: datetime
    ) -> list[CapReached]:
        """Write the alerts the caps' usage now calls for; the data of those this settle of
        `charged` tokens was the first to reach (for the streamed reply's line: by the alert
        rows it wrote, or with no channel to write to, by its own crossing), highest threshold
        per cap."""
        if not caps or not self.thresholds.percents:
            return []
        first: list[CapReached] = []
        async with self.database.transaction() as conn:
            user = (
                await conn.execute(
                    select(users.c.external_id, users.c.email).where(users.c.id == user_id)
                )
            ).one()
            for cap in caps:
                used = await spent(conn, user_id, cap)
                reached = [p for p in self.thresholds.percents if p * cap.tokens <= used * 100]
                if not reached:
                    continue
                data = self._data(cap, max(reached), used, plan)
                new, rows = False, 0
                for percent in reached:
                    for alert in self._rows(user_id, user, cap, {**data, "percent": percent}, now):
                        new = await enqueue(conn, self.database.dialect, alert) or new
                        rows += 1
                if new or (rows == 0 and (used - charged) * 100 < max(reached) * cap.tokens):
                    first.append(data)
        return first

    def _data(self, cap: Cap, percent: int, used: int, plan: str) -> CapReached:
        return {
            "kind": cap.kind, "percent": percent, "used": used, "tokens": cap.tokens,
            "hours": cap.hours, "pattern": cap.pattern, "plan": plan,
            "until": None if cap.until is None else cap.until.isoformat(),
            "timezone": self.timezone, "limits_url": self.limits_url,
        }  # fmt: skip

    def _rows(
        self, user_id: int, user: Any, cap: Cap, data: CapReached, now: datetime
    ) -> list[Alert]:
        if cap.until is not None:
            instance = int(cap.since.timestamp())
        else:  # a rolling window: one alert per slot of its length
            assert cap.hours is not None
            instance = int(now.timestamp()) // (cap.hours * 3600)
        payload = {
            "language": self.language,
            "user": {"id": user_id, "external_id": user.external_id, "email": user.email},
            "data": data,
        }
        rows = []
        for channel in self.thresholds.channels:
            recipient = user.email if channel == "email" else OPERATOR
            if recipient:
                key = (
                    f"cap:{user_id}:{cap.kind}:{cap.pattern or '-'}:{instance}:"
                    f"{data['percent']}:{channel}"
                )
                rows.append(Alert(KIND_CAP_THRESHOLD, key, channel, recipient, payload, now))
        return rows
