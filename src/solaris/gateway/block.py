"""What a user with no balance gets, in their language, with a way to buy more.

LibreChat shows a 4xx as plain text in a red box but renders an assistant reply as markdown, so a
blocked streamed chat from LibreChat is answered 200 with an ordinary assistant message holding a
signed link to the portal's purchase page. Everything else (non-streamed calls such as LibreChat's
title generation, and per-user API keys) gets a 402 whose message reads well on its own; never the
code `insufficient_quota`, which LibreChat replaces with a canned text.
"""

from __future__ import annotations

import time
import uuid

import orjson
from starlette.types import Send

from solaris.errors import error_body
from solaris.gateway.responses import JSON, SSE, send_bytes

__all__ = ["BLOCKED_HEADER", "block_chat_stream", "block_json"]

BLOCKED_HEADER = b"x-solaris-blocked"
REASON = b"insufficient_balance"

CHAT_TEXT = {
    "pt-BR": (
        "⚠️ **Seu saldo de tokens acabou.**\n\n"
        "Para continuar conversando, [compre mais créditos]({url}).\n\n"
        "_O link é pessoal e vale por {minutes} minutos._"
    ),
    "en": (
        "⚠️ **You have run out of tokens.**\n\n"
        "To keep chatting, [buy more credits]({url}).\n\n"
        "_This link is personal and valid for {minutes} minutes._"
    ),
}
ERROR_TEXT = {
    "pt-BR": (
        "Saldo de tokens insuficiente para esta solicitação. "
        "Compre mais créditos em {portal}/portal/buy ou fale com o administrador."
    ),
    "en": (
        "Not enough token balance for this request. "
        "Buy more credits at {portal}/portal/buy or contact your administrator."
    ),
}


async def block_json(send: Send, language: str, public_base_url: str, request_id: str) -> None:
    message = ERROR_TEXT[language].format(portal=public_base_url)
    body = error_body(message, "insufficient_balance", "insufficient_balance")
    await send_bytes(send, 402, body, JSON, _headers(request_id))


async def block_chat_stream(
    send: Send,
    language: str,
    model: str,
    url: str,
    link_ttl_s: int,
    include_usage: bool,
    request_id: str,
) -> None:
    text = CHAT_TEXT[language].format(url=url, minutes=max(1, link_ttl_s // 60))
    base = {
        "id": "chatcmpl-" + uuid.uuid4().hex,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    deltas = [
        ({"role": "assistant", "content": ""}, None),
        ({"content": text}, None),
        ({}, "stop"),
    ]
    events = [
        orjson.dumps({**base, "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
        for d, f in deltas
    ]
    if include_usage:
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        events.append(orjson.dumps({**base, "choices": [], "usage": zero}))
    body = b"".join(b"data: " + event + b"\n\n" for event in events) + b"data: [DONE]\n\n"
    await send_bytes(send, 200, body, SSE, _headers(request_id))


def _headers(request_id: str) -> list[tuple[bytes, bytes]]:
    return [(BLOCKED_HEADER, REASON), (b"x-request-id", request_id.encode())]
