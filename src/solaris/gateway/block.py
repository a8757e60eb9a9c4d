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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import Send

from solaris.errors import BalanceHeld, PaymentRequired
from solaris.gateway.endpoints import Endpoint
from solaris.gateway.responses import JSON, SSE, send_bytes
from solaris.texts import Language
from solaris.texts.chat import CHAT_TEXT, ERROR_TEXT, HELD_CHAT_TEXT, HELD_ERROR_TEXT

__all__ = ["BLOCKED_HEADER", "HELD_RETRY_AFTER_S", "block_json", "block_stream"]

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


def _headers(request_id: str, reason: str) -> list[tuple[bytes, bytes]]:
    return [(BLOCKED_HEADER, reason.encode()), (b"x-request-id", request_id.encode())]
