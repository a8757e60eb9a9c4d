"""User and system alerts: written to an outbox in the transaction that raised them, delivered
by a background worker over e-mail (SMTP) and signed webhooks.

    model.py      Alert rows and their typed payloads; threshold crossing; dedupe keys
    texts.py      every user-facing word, pt-BR and English
    outbox.py     enqueue (caller's transaction), claim with a lease, record the outcome
    deliverer.py  the worker: batches, retries with backoff and jitter, run_forever
    channels.py   the Channel protocol and DeliveryError
    mail.py       e-mail over smtplib (STARTTLS, TLS, plain) in a thread
    webhook.py    JSON POST signed with HMAC-SHA256
"""

from solaris.alerts.channels import Channel, Delivery, DeliveryError
from solaris.alerts.deliverer import Deliverer, RetryPolicy
from solaris.alerts.mail import EmailChannel, SmtpSettings
from solaris.alerts.model import (
    Alert,
    AlertUser,
    SystemEvent,
    ThresholdAlert,
    ThresholdCrossing,
    crossed_thresholds,
    system_alerts,
    user_threshold_alerts,
)
from solaris.alerts.outbox import OutboxRow, enqueue, list_alerts
from solaris.alerts.webhook import WebhookChannel, WebhookSettings, verify_signature

__all__ = [
    "Alert",
    "AlertUser",
    "Channel",
    "Deliverer",
    "Delivery",
    "DeliveryError",
    "EmailChannel",
    "OutboxRow",
    "RetryPolicy",
    "SmtpSettings",
    "SystemEvent",
    "ThresholdAlert",
    "ThresholdCrossing",
    "WebhookChannel",
    "WebhookSettings",
    "crossed_thresholds",
    "enqueue",
    "list_alerts",
    "system_alerts",
    "user_threshold_alerts",
    "verify_signature",
]
