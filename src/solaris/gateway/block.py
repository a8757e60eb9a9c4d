"""What a user with no balance gets, in their language, with a way to buy more.

LibreChat shows a 4xx as plain text in a red box but renders an assistant reply as markdown, so a
blocked streamed chat from LibreChat is answered 200 with an ordinary assistant message holding a
signed link to the portal's purchase page — a stream in the endpoint's own shape (chat chunks,
Responses events, Anthropic events). Everything else (non-streamed calls such as LibreChat's
title generation, and per-user API keys) gets a 402 whose message reads well on its own, in the
endpoint's error shape; never the code `insufficient_quota`, which LibreChat replaces with a
canned text.

A user whose balance is only *held* by their own requests still running (a long stream while
LibreChat asks for a title) has not run out: they are told so, and a non-streamed call gets a
429 with `Retry-After`, which LibreChat's client retries by itself. The other refusals a user can
meet in the chat (rate limits, a model outside the plan, the database away) read in their
language too (`refusal`).

A request a usage window or cap refuses (`ledger/caps.py`) is told which limit and when it
reopens: in the chat as an assistant message, else a 429 with `Retry-After` when that is
within a minute, or a 402 `usage_cap_reached` whose message states the local time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog
from starlette.types import Send

from solaris.config import Settings
from solaris.errors import (
    BalanceHeld,
    CapReached,
    CapReachedSoon,
    PaymentRequired,
    StoreUnavailable,
)
from solaris.gateway.admission import Ticket
from solaris.gateway.endpoints import Endpoint
from solaris.gateway.responses import JSON, SSE, send_bytes
from solaris.ledger.caps import Cap, reopens_at
from solaris.ledger.ledger import Ledger
from solaris.ledger.refusals import note_refusal
from solaris.links import buy_url, sign_link
from solaris.texts import Language
from solaris.texts.caps import SOON_S, cap_refusal
from solaris.texts.chat import CHAT_TEXT, ERROR_TEXT, HELD_CHAT_TEXT, HELD_ERROR_TEXT

__all__ = ["BLOCKED_HEADER", "HELD_RETRY_AFTER_S", "Refusals", "block_json", "block_stream"]

log = structlog.get_logger(__name__)

BLOCKED_HEADER = b"x-solaris-blocked"
EXHAUSTED = "insufficient_balance"
HELD = "balance_held"  # the balance is there, but the user's running requests hold it
HELD_RETRY_AFTER_S = 2


async def block_json(
    send: Send,
    endpoint: Endpoint,
    language: Language,
    public_base_url: str,
    request_id: str,
    held: bool = False,
) -> None:
    if held:
        message = HELD_ERROR_TEXT[language].format(seconds=HELD_RETRY_AFTER_S)
        body = endpoint.error_body(BalanceHeld(message, retry_after_s=HELD_RETRY_AFTER_S))
        headers = [*_headers(request_id, HELD), (b"retry-after", str(HELD_RETRY_AFTER_S).encode())]
        await send_bytes(send, 429, body, JSON, headers)
        return
    message = ERROR_TEXT[language].format(portal=public_base_url)
    body = endpoint.error_body(PaymentRequired(message))
    await send_bytes(send, 402, body, JSON, _headers(request_id, EXHAUSTED))


async def block_stream(
    send: Send,
    endpoint: Endpoint,
    language: Language,
    model: str,
    url: str,
    link_ttl_s: int,
    body: Mapping[str, Any],
    request_id: str,
    held: bool = False,
) -> None:
    if held:
        text = HELD_CHAT_TEXT[language]
    else:
        text = CHAT_TEXT[language].format(url=url, minutes=max(1, link_ttl_s // 60))
    events = endpoint.block_stream(text, model, body)
    await send_bytes(send, 200, events, SSE, _headers(request_id, HELD if held else EXHAUSTED))


async def cap_reached(
    send: Send,
    endpoint: Endpoint,
    text: str,
    wait_s: int,
    kind: str,
    in_chat: tuple[str, Mapping[str, Any]] | None,
    request_id: str,
) -> int:
    """Refuse for a full cap (`text` says which and when it reopens); the status sent.
    `in_chat`: the model and body of a LibreChat stream, answered as an assistant message."""
    headers = _headers(request_id, f"cap_{kind}")
    if in_chat is not None:
        model, body = in_chat
        await send_bytes(send, 200, endpoint.block_stream(f"⏳ {text}", model, body), SSE, headers)
        return 200
    if wait_s <= SOON_S:
        retry = max(1, wait_s)
        error_body = endpoint.error_body(CapReachedSoon(text, retry_after_s=retry))
        await send_bytes(
            send, 429, error_body, JSON, [*headers, (b"retry-after", str(retry).encode())]
        )
        return 429
    await send_bytes(send, 402, endpoint.error_body(CapReached(text)), JSON, headers)
    return 402


class Refusals:
    """The answer to a request its reservation refused: no balance, a balance held by the
    user's running requests, or a full cap."""

    def __init__(self, settings: Settings, ledger: Ledger, signing_key: bytes) -> None:
        self.settings = settings
        self.ledger = ledger
        self.language = settings.language
        self.signing_key = signing_key

    async def __call__(self, ticket: Ticket, send: Send) -> None:
        """Refuse for want of balance. When the balance is there but the user's own running
        requests hold it, say so: that is no exhaustion (no 100% alert, no buy link)."""
        if ticket.refused_by is not None:
            await self._cap_reached(ticket, ticket.refused_by, send)
            return
        settings = self.settings
        held = ticket.balance >= ticket.minimum
        ticket.exchange.outcome = "held" if held else "blocked"
        if ticket.in_chat:
            ticket.exchange.status = 200
            token = sign_link(
                self.signing_key, ticket.caller.user_id, settings.link_ttl_s, self.ledger.clock()
            )
            await block_stream(
                send,
                ticket.endpoint,
                settings.language,
                ticket.model,
                buy_url(settings.public_base_url, token),
                settings.link_ttl_s,
                ticket.body,
                ticket.request_id,
                held=held,
            )
        else:
            ticket.exchange.status = 429 if held else 402
            await block_json(
                send,
                ticket.endpoint,
                settings.language,
                settings.public_base_url,
                ticket.request_id,
                held,
            )
        if held:
            return
        try:  # after the answer: the blocked user is not kept waiting for this
            await self.ledger.note_exhausted(ticket.caller.user_id)
        except StoreUnavailable as error:
            log.warning("exhausted_alert_failed", user_id=ticket.caller.user_id, error=str(error))
        told = ERROR_TEXT[self.language].format(portal=self.settings.public_base_url)
        await self._remember(ticket, EXHAUSTED, told)

    async def _cap_reached(self, ticket: Ticket, cap: Cap, send: Send) -> None:
        """A usage window or cap refused: say which, and when it reopens."""
        now = self.ledger.clock()
        try:
            reopens = await reopens_at(
                self.ledger.database, ticket.caller.user_id, cap, ticket.minimum, now
            )
        except StoreUnavailable:  # the reservation just answered: say the window's end
            reopens = cap.until or now + timedelta(hours=cap.hours or 1)
        wait_s = math.ceil((reopens - now).total_seconds())
        text = cap_refusal(
            self.language, cap.kind, plan=ticket.caller.plan.name, tokens=cap.tokens,
            hours=cap.hours, pattern=cap.pattern, reopens=reopens, wait_s=wait_s,
            timezone=self.ledger.zone.key, portal=self.settings.public_base_url,
        )  # fmt: skip
        ticket.exchange.outcome, ticket.exchange.error = "capped", f"cap_{cap.kind}"
        ticket.exchange.status = await cap_reached(
            send, ticket.endpoint, text, wait_s, cap.kind,
            (ticket.model, ticket.body) if ticket.in_chat else None, ticket.request_id,
        )  # fmt: skip
        await self._remember(ticket, f"cap_{cap.kind}", text)

    async def _remember(self, ticket: Ticket, reason: str, told: str) -> None:
        """The refusal's line of the statement, after the answer was sent."""
        user_id = ticket.caller.user_id
        try:
            await note_refusal(
                self.ledger.database, user_id, reason, ticket.model, told, self.ledger.clock()
            )
        except StoreUnavailable as error:
            log.warning("refusal_not_recorded", user_id=user_id, error=str(error))


def _headers(request_id: str, reason: str) -> list[tuple[bytes, bytes]]:
    return [(BLOCKED_HEADER, reason.encode()), (b"x-request-id", request_id.encode())]
