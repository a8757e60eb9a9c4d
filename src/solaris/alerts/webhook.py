"""The webhook channel: a signed JSON POST to the operator.

The body has one stable schema, `{"kind", "severity", "text", "user", "data", "created_at"}`;
`text` is a whole sentence so a Slack or Teams incoming webhook shows it as is. Receivers check
`X-Solaris-Signature: sha256=<hex HMAC-SHA256 of the raw body>`; `X-Solaris-Alert-Id` is the same
on every retry of one alert, so a receiver can drop the repeat of an attempt whose answer was lost.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from solaris.alerts.channels import Delivery, DeliveryError
from solaris.alerts.model import SystemEvent, ThresholdAlert
from solaris.errors import ConfigError
from solaris.store.outbox import KIND_CAP_THRESHOLD, KIND_USER_THRESHOLD
from solaris.texts import Language
from solaris.texts.alerts import system_sentence, threshold_sentence
from solaris.texts.caps import cap_sentence

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "WebhookSettings",
    "sign",
    "verify_signature",
    "webhook_body",
]

SIGNATURE_HEADER = "X-Solaris-Signature"
TIMESTAMP_HEADER = "X-Solaris-Timestamp"
ALERT_ID_HEADER = "X-Solaris-Alert-Id"
RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str = field(repr=False)
    language: Language = "pt-BR"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook URL must start with http:// or https://: {self.url}")
        if not self.secret:
            raise ConfigError("webhook secret must not be empty")
        if not 0 < self.timeout_s <= 120:
            raise ConfigError(f"webhook timeout must be in (0, 120] s: {self.timeout_s}")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header)


def webhook_body(delivery: Delivery, language: Language) -> dict[str, Any]:
    created_at = delivery.created_at.isoformat()
    if delivery.kind == KIND_USER_THRESHOLD:
        alert = ThresholdAlert.from_payload(delivery.payload)
        crossing = alert.crossing
        text = threshold_sentence(
            language,
            who=alert.user.email or alert.user.external_id,
            percent=crossing.percent,
            used=crossing.used,
            total=crossing.total,
            balance=crossing.balance,
            period_end=crossing.period_end,
            timezone=alert.timezone,
        )
        payload = alert.to_payload()
        return {
            "kind": delivery.kind,
            "severity": alert.severity,
            "text": text,
            "user": payload["user"],
            # The portal link logs the user in: it is for the user's eyes, not a team channel.
            "data": {k: v for k, v in payload["data"].items() if k != "portal_url"},
            "created_at": created_at,
        }
    if delivery.kind == KIND_CAP_THRESHOLD:
        user, data = delivery.payload["user"], delivery.payload["data"]
        return {
            "kind": delivery.kind,
            "severity": "warning" if data["percent"] >= 100 else "info",
            "text": cap_sentence(language, user["email"] or user["external_id"], data),
            "user": user,
            "data": data,
            "created_at": created_at,
        }
    event = SystemEvent.from_payload(delivery.payload)
    return {
        "kind": delivery.kind,
        "severity": event.severity,
        "text": system_sentence(language, event.event, event.data),
        "user": None,
        "data": {"event": event.event, **event.data},
        "created_at": created_at,
    }


class WebhookChannel:
    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop that runs the deliverer.
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            connector = aiohttp.TCPConnector(limit=8)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._session

    async def send(self, delivery: Delivery) -> None:
        try:
            body = orjson.dumps(webhook_body(delivery, self.settings.language))
        except (KeyError, TypeError, ValueError) as error:
            raise DeliveryError(f"unreadable payload: {error!r}", permanent=True) from error
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "solaris-gateway",
            SIGNATURE_HEADER: sign(self.settings.secret, body),
            TIMESTAMP_HEADER: str(int(delivery.now.timestamp())),
            ALERT_ID_HEADER: delivery.dedupe_key,
        }
        try:
            async with self._client().post(
                self.settings.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"webhook: {error!r}") from error
        if 200 <= status < 300:
            return
        permanent = 400 <= status < 500 and status not in RETRYABLE_STATUSES
        raise DeliveryError(f"webhook answered HTTP {status}", permanent=permanent)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
