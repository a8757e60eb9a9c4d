"""POST /v1/chat/completions: LibreChat's chat, titles, memory and summaries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solaris.errors import BadRequest
from solaris.gateway.endpoints.base import Endpoint, client_wants_usage, sse_event
from solaris.metering import estimate

__all__ = ["CHAT"]

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Chat(Endpoint):
    def check(self, body: Mapping[str, Any]) -> None:
        super(Chat, self).check(body)
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array.", param="messages")
        if not all(isinstance(message, dict) for message in messages):
            raise BadRequest("Each item of 'messages' must be an object.", param="messages")

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return estimate.chat_prompt_tokens(body)

    def block_stream(self, text: str, model: str, body: Mapping[str, Any]) -> bytes:
        head = _head("chatcmpl-" + uuid.uuid4().hex, model)
        deltas = [
            ({"role": "assistant", "content": ""}, None),
            ({"content": text}, None),
            ({}, "stop"),
        ]
        events = [
            sse_event({**head, "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
            for d, f in deltas
        ]
        if client_wants_usage(body):
            zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            events.append(sse_event({**head, "choices": [], "usage": zero}))
        return b"".join(events) + DONE

    def with_notice(
        self, text: str, model: str, request_id: str, closing: bytes, parts: int
    ) -> bytes:
        """One more content delta after the finish chunk, before [DONE] (which the relay holds)."""
        delta = {"content": "\n\n" + text}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        head = _head("chatcmpl-" + request_id, model)
        return sse_event({**head, "choices": [choice]}) + closing


def _head(id_: str, model: str) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }


CHAT = Chat(
    name="chat",
    path="/v1/chat/completions",
    upstream_path="/chat/completions",
    input_field="messages",
    generates=True,
    in_chat_block=True,
)
