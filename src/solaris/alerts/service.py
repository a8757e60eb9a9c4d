"""Alerting for one gateway process, from the settings: the channels that are configured, the
thresholds the settle checks, the delivery worker and the system monitor, started and stopped
with the app."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import structlog

from solaris.alerts.channels import Channel
from solaris.alerts.deliverer import Deliverer, RetryPolicy
from solaris.alerts.mail import EmailChannel, smtp_from
from solaris.alerts.monitor import MonitorSettings, Probe, SystemMonitor
from solaris.alerts.render import ThresholdRenderer
from solaris.alerts.webhook import WebhookChannel, WebhookSettings
from solaris.clock import Clock
from solaris.config import Settings
from solaris.ledger.thresholds import Thresholds
from solaris.store.database import Database

__all__ = ["Alerting", "channels_from"]

log = structlog.get_logger(__name__)


def channels_from(settings: Settings) -> dict[str, Channel]:
    """The channels the operator configured: e-mail with an SMTP host, webhook with a URL."""
    channels: dict[str, Channel] = {}
    if (smtp := smtp_from(settings)) is not None:
        channels["email"] = EmailChannel(smtp)
    if settings.alert_webhook_url is not None:
        secret = settings.alert_webhook_secret
        channels["webhook"] = WebhookChannel(
            WebhookSettings(
                url=settings.alert_webhook_url,
                secret=secret.get_secret_value() if secret else "",
                language=settings.language,
                timeout_s=settings.alert_webhook_timeout_s,
            )
        )
    return channels


class Alerting:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        probes: Mapping[str, Probe],
        clock: Clock,
    ) -> None:
        self.channels = channels_from(settings)
        # What the settle checks: thresholds for the chat notice or a channel, and only the
        # channels that can deliver (an alert for a channel nobody configured would wait in the
        # outbox forever).
        user_channels = tuple(c for c in settings.alert_user_channels if c in self.channels)
        wanted = bool(user_channels) or settings.alert_chat_notice
        self.thresholds = Thresholds(
            tuple(settings.alert_thresholds) if wanted else (), user_channels
        )
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        system_channels = tuple(c for c in settings.alert_system_channels if c in self.channels)
        self.monitor = SystemMonitor(
            MonitorSettings(
                error_rate_max=settings.alert_error_rate_max,
                latency_p95_max_s=settings.alert_latency_p95_max_s,
                window_s=settings.alert_window_s,
                requests_min=settings.alert_window_requests_min,
                cooldown_s=settings.alert_cooldown_s,
                channels=system_channels,
                operator_email=settings.alert_operator_email,
            ),
            database,
            probes,
            self.channels,
            clock,
        )
        self.check_interval_s = settings.alert_check_interval_s
        self.deliverer: Deliverer | None = None
        if self.channels:
            renderer = ThresholdRenderer(
                database,
                settings.signing_key(),
                settings.public_base_url,
                settings.language,
                settings.zone,
            )
            self.deliverer = Deliverer(
                database,
                self.channels,
                policy=RetryPolicy(
                    attempts_max=settings.alert_attempts_max,
                    delay_first_s=settings.alert_retry_first_s,
                ),
                poll_interval_s=settings.alert_poll_interval_s,
                clock=clock,
                prepare=renderer,
                retention=timedelta(days=settings.alert_retention_days),
            )

    def start(self) -> None:
        self._tasks.append(
            asyncio.create_task(self.monitor.run_forever(self.stop, self.check_interval_s))
        )
        if self.deliverer is not None:
            self._tasks.append(asyncio.create_task(self.deliverer.run_forever(self.stop)))
        log.info("alerting", channels=sorted(self.channels))

    async def close(self) -> None:
        self.stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=15)
        for task in self._tasks:
            task.cancel()
        if self.deliverer is not None:
            await self.deliverer.aclose()
        else:
            for channel in self.channels.values():
                await channel.aclose()
