"""What the deliverer hands a channel, and how a channel says it failed.

    SolarisError
    └── DeliveryError            this attempt failed; retried with backoff
        (permanent=True)         retrying cannot help (recipient refused, 4xx): failed at once

Each channel maps its dependency's errors (smtplib, aiohttp) into DeliveryError at its boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from solaris.errors import SolarisError

__all__ = ["Channel", "Delivery", "DeliveryError"]


class DeliveryError(SolarisError):
    """An alert could not be delivered this time; `permanent` when no retry can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Delivery:
    """One attempt at one outbox row."""

    id: int
    kind: str
    dedupe_key: str
    recipient: str
    payload: Mapping[str, Any]
    created_at: datetime
    attempt: int  # 1 for the first
    now: datetime  # when this attempt runs (the deliverer's clock)


class Channel(Protocol):
    async def send(self, delivery: Delivery) -> None:
        """Deliver, or raise DeliveryError. Must finish within its own timeout."""

    async def aclose(self) -> None:
        """Release connections; called once when the deliverer stops."""
