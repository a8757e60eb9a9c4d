"""Pre-flight prompt estimates for the OpenAI Responses API and the Anthropic Messages API.

The same rules as `estimate.py` for chat: text counted with the model's tokenizer (a stand-in
for models without one, which the admission holds with a margin), a small frame per message,
images and files at the documented guesses, tools as their JSON. Like `estimate.py`, nothing
here raises on odd shapes: the endpoints' checks refuse those before anything is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import tiktoken

from solaris.metering.estimate import (
    FILE_PART_TOKENS,
    IMAGE_HIGH_DETAIL_TOKENS,
    IMAGE_LOW_DETAIL_TOKENS,
    REPLY_PRIMING,
    TOKENS_PER_MESSAGE,
)
from solaris.metering.estimate import _body_encoding as body_encoding
from solaris.metering.estimate import _count as count
from solaris.metering.estimate import _text as as_text

__all__ = ["messages_prompt_tokens", "responses_prompt_tokens"]

# Text-bearing fields of Responses input items and content parts, and of Anthropic blocks.
_TEXT_FIELDS = ("text", "arguments", "output", "name", "input", "content", "thinking", "summary")


def responses_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens of a /v1/responses body: `instructions`, `input` and `tools`."""
    enc = body_encoding(body)
    total = REPLY_PRIMING
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        total += TOKENS_PER_MESSAGE + count(enc, instructions)
    given = body.get("input")
    if isinstance(given, str):
        total += TOKENS_PER_MESSAGE + count(enc, given)
    elif isinstance(given, list):
        total += sum(
            TOKENS_PER_MESSAGE + _item_tokens(enc, item)
            for item in given
            if isinstance(item, Mapping)
        )
    return total + _tools_tokens(enc, body.get("tools"))


def messages_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens of an Anthropic /v1/messages body: `system`, `messages` and `tools`."""
    enc = body_encoding(body)
    total = REPLY_PRIMING
    system = body.get("system")
    if isinstance(system, str):
        total += TOKENS_PER_MESSAGE + count(enc, system)
    elif isinstance(system, list):
        total += TOKENS_PER_MESSAGE + _parts_tokens(enc, system)
    messages = body.get("messages")
    if isinstance(messages, list):
        total += sum(
            TOKENS_PER_MESSAGE + _item_tokens(enc, message)
            for message in messages
            if isinstance(message, Mapping)
        )
    return total + _tools_tokens(enc, body.get("tools"))


def _item_tokens(enc: tiktoken.Encoding, item: Mapping[str, Any]) -> int:
    """A message (role + content) or another input item (a call, its output, reasoning…)."""
    total = 0
    role = item.get("role")
    if isinstance(role, str):
        total += count(enc, role)
    content = item.get("content")
    if isinstance(content, str):
        total += count(enc, content)
    elif isinstance(content, list):
        total += _parts_tokens(enc, content)
    if "role" not in item:
        total += _part_tokens(enc, item)
    return total


def _parts_tokens(enc: tiktoken.Encoding, parts: Iterable[object]) -> int:
    return sum(_part_tokens(enc, part) for part in parts if isinstance(part, Mapping))


def _part_tokens(enc: tiktoken.Encoding, part: Mapping[str, Any]) -> int:
    kind = part.get("type")
    if kind in ("input_image", "image"):
        detail = part.get("detail")
        return IMAGE_LOW_DETAIL_TOKENS if detail == "low" else IMAGE_HIGH_DETAIL_TOKENS
    if kind in ("input_file", "document"):
        return FILE_PART_TOKENS
    total = 0
    for field in _TEXT_FIELDS:
        value = part.get(field)
        if isinstance(value, str):
            total += count(enc, value)
        elif isinstance(value, list):  # tool results and summaries hold parts of their own
            total += _parts_tokens(enc, value)
        elif isinstance(value, Mapping):  # a tool_use's input object
            total += count(enc, as_text(value))
    return total


def _tools_tokens(enc: tiktoken.Encoding, tools: object) -> int:
    """Tool definitions as the JSON they are sent as (hosted tools are a few words each)."""
    if not isinstance(tools, list) or not tools:
        return 0
    return sum(count(enc, as_text(tool)) for tool in tools if isinstance(tool, Mapping))
