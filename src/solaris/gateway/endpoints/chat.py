"""POST /v1/chat/completions: LibreChat's chat, titles, memory and summaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solaris.errors import BadRequest
from solaris.gateway.endpoints.base import Endpoint
from solaris.metering import estimate

__all__ = ["CHAT"]


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


CHAT = Chat(
    name="chat",
    path="/v1/chat/completions",
    upstream_path="/chat/completions",
    input_field="messages",
    generates=True,
    in_chat_block=True,
)
