"""What an alert says, before and after the outbox: the typed payloads of its rows.

The payload is stored as JSON and rendered into words only when delivered, so a text fixed in
`solaris.texts.alerts` reaches alerts that were already waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from solaris.clock import as_utc
from solaris.ledger.thresholds import threshold_key
from solaris.store.outbox import KIND_SYSTEM, KIND_USER_THRESHOLD, OPERATOR, Alert
from solaris.texts import Language, language_of

__all__ = [
    "AlertUser",
    "Severity",
    "SystemEvent",
    "ThresholdAlert",
    "ThresholdCrossing",
    "system_alerts",
    "user_threshold_alerts",
]


Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class AlertUser:
    id: int
    external_id: str
    email: str | None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "email": self.email,
            "name": self.name,
        }


@dataclass(frozen=True)
class ThresholdCrossing:
    """A settle moved the user's period consumption across `percent` of what the period offers."""

    percent: int
    used: int
    total: int  # allowance + credits available at the period's start + credits added since
    balance: int
    period_start: datetime
    period_end: datetime
    portal_url: str

    def __post_init__(self) -> None:
        assert 0 < self.percent <= 100, self.percent
        assert self.total > 0 and self.used >= 0, (self.used, self.total)
        assert self.portal_url.startswith(("http://", "https://")), "a link users can open"


@dataclass(frozen=True)
class ThresholdAlert:
    """The payload of a `user_threshold` alert."""

    user: AlertUser
    crossing: ThresholdCrossing
    language: Language
    timezone: str | None = None  # IANA name for the dates in e-mails; UTC when None

    @property
    def severity(self) -> Severity:
        return "warning" if self.crossing.percent >= 100 else "info"

    def to_payload(self) -> dict[str, Any]:
        crossing = self.crossing
        return {
            "severity": self.severity,
            "language": self.language,
            "timezone": self.timezone,
            "user": self.user.to_json(),
            "data": {
                "threshold": crossing.percent,
                "used": crossing.used,
                "total": crossing.total,
                "balance": crossing.balance,
                "period_start": as_utc(crossing.period_start).isoformat(),
                "period_end": as_utc(crossing.period_end).isoformat(),
                "portal_url": crossing.portal_url,
            },
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ThresholdAlert:
        data, user = payload["data"], payload["user"]
        crossing = ThresholdCrossing(
            percent=int(data["threshold"]),
            used=int(data["used"]),
            total=int(data["total"]),
            balance=int(data["balance"]),
            period_start=datetime.fromisoformat(data["period_start"]),
            period_end=datetime.fromisoformat(data["period_end"]),
            portal_url=str(data["portal_url"]),
        )
        found = AlertUser(int(user["id"]), str(user["external_id"]), user["email"], user["name"])
        return cls(found, crossing, language_of(payload["language"]), payload.get("timezone"))


@dataclass(frozen=True)
class SystemEvent:
    """The payload of a `system` alert: an event name `solaris.texts.alerts` knows, and its numbers."""

    event: str
    severity: Severity
    data: Mapping[str, Any]

    def to_payload(self) -> dict[str, Any]:
        return {"severity": self.severity, "user": None, "data": {"event": self.event, **self.data}}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SystemEvent:
        data = dict(payload["data"])
        return cls(str(data.pop("event")), payload["severity"], data)


def user_threshold_alerts(
    alert: ThresholdAlert, channels: Iterable[str], at: datetime
) -> list[Alert]:
    """One outbox row per channel. E-mail goes to the user (skipped without an address);
    webhooks go to the operator."""
    start = int(as_utc(alert.crossing.period_start).timestamp())
    payload = alert.to_payload()
    rows = []
    for channel in channels:
        recipient = alert.user.email if channel == "email" else OPERATOR
        if recipient:
            key = threshold_key(alert.user.id, start, alert.crossing.percent, channel)
            rows.append(Alert(KIND_USER_THRESHOLD, key, channel, recipient, payload, at))
    return rows


def system_alerts(
    event: SystemEvent,
    channels: Iterable[str],
    at: datetime,
    *,
    scope: str,
    cooldown_s: int,
    operator_email: str | None = None,
) -> list[Alert]:
    """One row per channel, at most once per event, scope (e.g. the provider) and cooldown
    window: the window is part of the unique key, so a flapping provider cannot flood anyone,
    whichever instance notices it."""
    assert cooldown_s > 0, cooldown_s
    window = int(at.timestamp()) // cooldown_s * cooldown_s
    key = f"system:{event.event}:{scope}:{window}"
    payload = event.to_payload()
    rows = []
    for channel in channels:
        recipient = operator_email if channel == "email" else OPERATOR
        if recipient:
            rows.append(Alert(KIND_SYSTEM, f"{key}:{channel}", channel, recipient, payload, at))
    return rows
