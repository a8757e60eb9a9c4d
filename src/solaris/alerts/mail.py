"""The e-mail channel: SMTP with STARTTLS, implicit TLS, or plain (loopback relays), via the
standard library's smtplib in a worker thread, so no new dependency and no blocked event loop.

Every socket operation is bounded by `timeout_s`; a message is one connection (alerts are rare,
and a pooled SMTP connection would only go stale between them).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any, Literal

from solaris.alerts.channels import Delivery, DeliveryError
from solaris.alerts.model import SystemEvent, ThresholdAlert
from solaris.config import Settings
from solaris.errors import ConfigError
from solaris.store.outbox import KIND_CAP_THRESHOLD, KIND_RECEIPT, KIND_USER_THRESHOLD
from solaris.texts import Language, language_of
from solaris.texts.alerts import (
    EmailText,
    operator_email,
    system_sentence,
    threshold_email,
)
from solaris.texts.caps import cap_alert_email
from solaris.texts.receipt import receipt_email

__all__ = ["EmailChannel", "SmtpSettings", "build_email", "smtp_from"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str | None
    password: str | None = field(repr=False)
    sender: str  # "SOLARIS <alerts@example.com>"
    timeout_s: float = 10.0
    language: Language = "pt-BR"  # for operator e-mails; users get their own

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise ConfigError(f"SMTP security must be starttls, tls or none: {self.security}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"SMTP port out of range: {self.port}")
        if not 0 < self.timeout_s <= 120:
            raise ConfigError(f"SMTP timeout must be in (0, 120] s: {self.timeout_s}")
        if self.security == "none" and self.username and self.host not in LOOPBACK:
            raise ConfigError("SMTP credentials over a plain connection: use starttls or tls")


def smtp_from(settings: Settings) -> SmtpSettings | None:
    """The operator's SMTP settings (`SOLARIS_SMTP_*`), or None when no host is set."""
    if settings.smtp_host is None:
        return None
    password = settings.smtp_password
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=password.get_secret_value() if password else None,
        sender=settings.smtp_sender,
        timeout_s=settings.smtp_timeout_s,
        language=settings.language,
    )


def build_email(delivery: Delivery, sender: str, operator_language: Language) -> EmailMessage:
    words = _words(delivery, operator_language)
    message = EmailMessage()
    message["Subject"] = words.subject
    message["From"] = sender
    message["To"] = delivery.recipient
    message["Date"] = format_datetime(delivery.created_at)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(idstring=str(delivery.id), domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    message.set_content(words.text)
    message.add_alternative(words.html, subtype="html")
    return message


def _words(delivery: Delivery, operator_language: Language) -> EmailText:
    if delivery.kind == KIND_USER_THRESHOLD:
        alert = ThresholdAlert.from_payload(delivery.payload)
        crossing = alert.crossing
        return threshold_email(
            alert.language,
            name=alert.user.name,
            percent=crossing.percent,
            used=crossing.used,
            total=crossing.total,
            balance=crossing.balance,
            period_end=crossing.period_end,
            portal_url=crossing.portal_url,
            timezone=alert.timezone,
        )
    if delivery.kind == KIND_RECEIPT:
        return _receipt(delivery.payload)
    if delivery.kind == KIND_CAP_THRESHOLD:
        payload = delivery.payload
        return cap_alert_email(language_of(payload["language"]), None, payload["data"])
    event = SystemEvent.from_payload(delivery.payload)
    sentence = system_sentence(operator_language, event.event, event.data)
    return operator_email(operator_language, event.severity, sentence)


def _receipt(payload: Mapping[str, Any]) -> EmailText:
    data, expires = payload["data"], payload["data"]["credits_expire_at"]
    return receipt_email(
        language_of(payload["language"]),
        name=payload["user"].get("name"),
        order=str(data["order"]),
        pack=str(data["pack"]),
        tokens=int(data["tokens"]),
        amount_cents=int(data["amount_cents"]),
        currency=str(data["currency"]),
        provider=str(data["provider"]),
        paid_at=datetime.fromisoformat(data["paid_at"]),
        credits_expire_at=datetime.fromisoformat(expires) if expires else None,
        order_url=str(data["order_url"]),
        timezone=data.get("timezone"),
    )


class EmailChannel:
    def __init__(self, settings: SmtpSettings, tls: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls = tls or ssl.create_default_context()

    async def send(self, delivery: Delivery) -> None:
        try:
            message = build_email(delivery, self.settings.sender, self.settings.language)
        except (KeyError, TypeError, ValueError) as error:
            raise DeliveryError(f"unreadable payload: {error!r}", permanent=True) from error
        await self.send_message(message)

    async def send_message(self, message: EmailMessage) -> None:
        """Send a ready message (its From is ours); raises DeliveryError."""
        await asyncio.to_thread(self._send_blocking, message)

    def _send_blocking(self, message: EmailMessage) -> None:
        settings = self.settings
        try:
            client = (
                smtplib.SMTP_SSL(
                    settings.host, settings.port, timeout=settings.timeout_s, context=self.tls
                )
                if settings.security == "tls"
                else smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
            )
            with client:
                if settings.security == "starttls":
                    client.starttls(context=self.tls)
                if settings.username:
                    client.login(settings.username, settings.password or "")
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            permanent = all(code >= 500 for code in codes)
            raise DeliveryError(f"recipient refused: {codes}", permanent=permanent) from error
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP {settings.host}:{settings.port}: {error!r}") from error

    async def aclose(self) -> None:
        return None
