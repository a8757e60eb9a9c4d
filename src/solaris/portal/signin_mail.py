"""The e-mail magic link: "send me a sign-in link" without telling anyone who has an account.

The page answers the same words whether the address is known or not, and at once: looking the
address up and talking to the SMTP server happen in a background task after the response, so
neither the text nor the timing says whether a user exists. Each matching user gets a signed,
single-use link (`solaris.links`) to `/portal/login`.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from html import escape

import structlog

from solaris.alerts.channels import DeliveryError
from solaris.alerts.mail import EmailChannel, SmtpSettings
from solaris.clock import Clock
from solaris.links import login_url, sign_link
from solaris.portal.account import users_with_email
from solaris.store.database import Database
from solaris.texts import Language
from solaris.texts.pages import translator

__all__ = ["EMAIL_LENGTH_MAX", "plausible_email", "send_signin_links", "signin_email"]

log = structlog.get_logger(__name__)
EMAIL_LENGTH_MAX = 320


def plausible_email(value: str) -> bool:
    """Shaped like an address (one @, a dot in the domain, no spaces); SMTP decides the rest."""
    local, at, domain = value.rpartition("@")
    return (
        bool(at and local and "." in domain.strip("."))
        and len(value) <= EMAIL_LENGTH_MAX
        and not any(c.isspace() for c in value)
    )


def signin_email(
    language: Language, sender: str, recipient: str, url: str, minutes: int
) -> EmailMessage:
    t = translator(language)
    body = t("mail.body", minutes=minutes)
    message = EmailMessage()
    message["Subject"] = t("mail.subject")
    message["From"] = sender
    message["To"] = recipient
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"{body}\n\n{url}\n\n{t('mail.ignore')}\n")
    message.add_alternative(
        '<!doctype html>\n<html><body style="font-family:system-ui,sans-serif;line-height:1.5;'
        f'color:#111;max-width:560px">\n<p>{escape(body)}</p>\n'
        f'<p><a href="{escape(url)}" style="display:inline-block;padding:10px 18px;'
        'background:#f59e0b;color:#111;border-radius:6px;text-decoration:none;font-weight:600">'
        f"{escape(t('mail.button'))}</a></p>\n"
        f'<p style="font-size:13px;color:#555">{escape(url)}</p>\n'
        f'<p style="font-size:12px;color:#777">{escape(t("mail.ignore"))}</p>\n</body></html>\n',
        subtype="html",
    )
    return message


async def send_signin_links(
    database: Database,
    smtp: SmtpSettings,
    key: bytes,
    clock: Clock,
    public_base_url: str,
    link_ttl_s: int,
    email: str,
    language: Language,
) -> None:
    """Send a sign-in link to each user with this e-mail (none: nothing happens). Runs after
    the response; failures are logged, never shown (the page has already answered)."""
    try:
        found = await users_with_email(database, email)
        channel = EmailChannel(smtp)
        for user in found:
            token = sign_link(key, user.id, link_ttl_s, clock())
            url = login_url(public_base_url, token)
            minutes = max(1, link_ttl_s // 60)
            await channel.send_message(
                signin_email(language, smtp.sender, user.email or email, url, minutes)
            )
        log.info("portal_signin_link", matched=len(found))
    except DeliveryError as error:
        log.warning("portal_signin_link_failed", error=str(error))
    except Exception as error:  # a background task has nobody to raise to
        log.exception("portal_signin_link_failed", error=repr(error))
