"""What a user with no balance gets, in their language, with a way to buy more.

LibreChat shows a 4xx as plain text in a red box but renders an assistant reply as markdown, so a
blocked streamed chat from LibreChat is answered 200 with an ordinary assistant message holding a
signed link to the portal's purchase page. Everything else (non-streamed calls such as LibreChat's
title generation, and per-user API keys) gets a 402 whose message reads well on its own; never the
code `insufficient_quota`, which LibreChat replaces with a canned text.

A user whose balance is only *held* by their own requests still running (a long stream while
LibreChat asks for a title) has not run out: they are told so, and a non-streamed call gets a
429 with `Retry-After`, which LibreChat's client retries by itself. The other refusals a user can
meet in the chat (rate limits, a model outside the plan, the database away) read in their
language too (`refusal`).
"""

from __future__ import annotations

import time
import uuid

import orjson
from starlette.types import Send

from solaris.errors import error_body
from solaris.gateway.responses import JSON, SSE, send_bytes
from solaris.texts import Language
from solaris.texts.chat import CHAT_TEXT, ERROR_TEXT, HELD_CHAT_TEXT, HELD_ERROR_TEXT

__all__ = ["BLOCKED_HEADER", "HELD_RETRY_AFTER_S", "block_chat_stream", "block_json"]

BLOCKED_HEADER = b"x-solaris-blocked"
EXHAUSTED = "insufficient_balance"
HELD = "balance_held"  # the balance is there, but the user's running requests hold it
HELD_RETRY_AFTER_S = 2


async def block_json(
    send: Send, language: Language, public_base_url: str, request_id: str, held: bool = False
) -> None:
    if held:
        message = HELD_ERROR_TEXT[language].format(seconds=HELD_RETRY_AFTER_S)
        body = error_body(message, "requests", HELD)
        headers = [*_headers(request_id, HELD), (b"retry-after", str(HELD_RETRY_AFTER_S).encode())]
        await send_bytes(send, 429, body, JSON, headers)
        return
    message = ERROR_TEXT[language].format(portal=public_base_url)
    body = error_body(message, EXHAUSTED, EXHAUSTED)
    await send_bytes(send, 402, body, JSON, _headers(request_id, EXHAUSTED))


async def block_chat_stream(
    send: Send,
    language: Language,
    model: str,
    url: str,
    link_ttl_s: int,
    include_usage: bool,
    request_id: str,
    held: bool = False,
) -> None:
    if held:
        text = HELD_CHAT_TEXT[language]
    else:
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
    await send_bytes(send, 200, body, SSE, _headers(request_id, HELD if held else EXHAUSTED))


def _headers(request_id: str, reason: str) -> list[tuple[bytes, bytes]]:
    return [(BLOCKED_HEADER, reason.encode()), (b"x-request-id", request_id.encode())]
