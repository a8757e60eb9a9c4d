"""Pre-flight token estimates for OpenAI-style request bodies.

Chat prompts follow the OpenAI cookbook "How to count tokens with tiktoken"
(`num_tokens_from_messages` and `num_tokens_for_tools`), whose constants reproduce the
API-reported prompt_tokens of its examples. Inputs the cookbook does not cover (images, audio,
files, tool calls, nested parameter schemas) get the documented guesses below.

Every function takes the parsed JSON body and returns an int without raising on odd shapes:
unexpected values count as zero rather than failing the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeGuard

import tiktoken

from solaris.metering.tokenizer import count_tokens as text_tokens
from solaris.metering.tokenizer import encoding_for_model, get_encoding

__all__ = [
    "chat_prompt_tokens",
    "completion_cap",
    "completions_prompt_tokens",
    "embeddings_input_tokens",
    "text_tokens",
]

# num_tokens_from_messages
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>

# num_tokens_for_tools: gpt-4o/gpt-4o-mini use func_init 7, gpt-3.5-turbo/gpt-4 use 10; keyed by
# encoding so that newer models of each family get the same treatment.
FUNC_INIT = {"o200k_base": 7, "cl100k_base": 10}
PROP_INIT = 3
PROP_KEY = 3
ENUM_INIT = -3
ENUM_ITEM = 3
FUNC_END = 12

# Content parts. Images: the API's figures for detail "low", and for a 1024x1024 image at high
# detail (85 + 4 tiles x 170) otherwise, since the pixels are not decoded here.
IMAGE_LOW_DETAIL_TOKENS = 85
IMAGE_HIGH_DETAIL_TOKENS = 765
# Guesses, as the payload is not decoded: about a minute of speech, and about one PDF page
# (the API sends a page as its extracted text plus an image of it).
AUDIO_PART_TOKENS = 600
FILE_PART_TOKENS = 1500

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Property schema keys that num_tokens_for_tools renders itself; any others are counted as JSON.
_RENDERED_PROPERTY_KEYS = frozenset({"type", "description", "enum"})


def chat_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens of a /v1/chat/completions body: messages plus `tools`/`functions`."""
    enc = _body_encoding(body)
    messages = body.get("messages")
    total = REPLY_PRIMING
    if isinstance(messages, list):
        total += sum(_message_tokens(enc, m) for m in messages if isinstance(m, Mapping))
    return total + _tools_tokens(enc, _function_specs(body))


def completions_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens of a legacy /v1/completions body: `prompt` plus `suffix`."""
    enc = _body_encoding(body)
    total = _input_tokens(enc, body.get("prompt"))
    suffix = body.get("suffix")
    if isinstance(suffix, str):
        total += _count(enc, suffix)
    return total


def embeddings_input_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens of a /v1/embeddings body."""
    return _input_tokens(_body_encoding(body), body.get("input"))


def completion_cap(body: Mapping[str, Any], default: int) -> int:
    """The completion tokens the client allows: max_completion_tokens, else max_tokens, else
    `default`; times `n` when several choices are requested. Invalid values are ignored."""
    cap = default
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if _is_int(value) and value >= 0:
            cap = value
            break
    n = body.get("n")
    return cap * n if _is_int(n) and n > 1 else cap


def _is_int(value: object) -> TypeGuard[int]:
    # JSON true/false parse to bool, which is an int subclass.
    return isinstance(value, int) and not isinstance(value, bool)


def _body_encoding(body: Mapping[str, Any]) -> tiktoken.Encoding:
    model = body.get("model")
    return encoding_for_model(model if isinstance(model, str) else "")


def _count(enc: tiktoken.Encoding, text: str) -> int:
    return len(enc.encode_ordinary(text))


def _text(value: object) -> str:
    """`value` as the model would read it: strings as-is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _input_tokens(enc: tiktoken.Encoding, value: object) -> int:
    """A completions prompt or embeddings input: a string, or a list whose items are strings,
    token ids, or lists of token ids (already tokens, so they are counted, not encoded)."""
    if isinstance(value, str):
        return _count(enc, value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, str):
            total += _count(enc, item)
        elif isinstance(item, int):
            total += 1
        elif isinstance(item, list):
            total += len(item)
    return total


@cache
def _role_tokens(encoding_name: str) -> dict[str, int]:
    enc = get_encoding(encoding_name)
    return {role: _count(enc, role) for role in _ROLES}


def _message_tokens(enc: tiktoken.Encoding, message: Mapping[str, Any]) -> int:
    # As in the cookbook, every string field (role, content, name, tool_call_id, ...) counts.
    roles = _role_tokens(enc.name)
    total = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if isinstance(value, str):
            total += roles[value] if key == "role" and value in roles else _count(enc, value)
            if key == "name":
                total += TOKENS_PER_NAME
        elif key == "content" and isinstance(value, list):
            total += sum(_part_tokens(enc, part) for part in value if isinstance(part, Mapping))
        elif key == "tool_calls" and isinstance(value, list):
            # Parallel calls are rendered one after another, each framed like a message.
            total += sum(
                TOKENS_PER_MESSAGE + _call_tokens(enc, call.get("function", call.get("custom")))
                for call in value
                if isinstance(call, Mapping)
            )
        elif key == "function_call":
            total += _call_tokens(enc, value)
    return total


def _part_tokens(enc: tiktoken.Encoding, part: Mapping[str, Any]) -> int:
    match part.get("type"):
        case "text" | "refusal" as kind:
            text = part.get(kind)
            return _count(enc, text) if isinstance(text, str) else 0
        case "image_url":
            image = part.get("image_url")
            low = isinstance(image, Mapping) and image.get("detail") == "low"
            return IMAGE_LOW_DETAIL_TOKENS if low else IMAGE_HIGH_DETAIL_TOKENS
        case "input_audio":
            return AUDIO_PART_TOKENS
        case "file":
            return FILE_PART_TOKENS
        case _:
            return 0


def _call_tokens(enc: tiktoken.Encoding, call: object) -> int:
    """A called function's name and arguments (or a custom tool's input)."""
    if not isinstance(call, Mapping):
        return 0
    return sum(_count(enc, value) for value in call.values() if isinstance(value, str))


def _function_specs(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Function definitions from `tools` ({"type": "function", "function": {...}}, or a custom
    tool) and from the legacy `functions` list."""
    specs: list[object] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        specs += (t.get("function", t.get("custom")) for t in tools if isinstance(t, Mapping))
    functions = body.get("functions")
    if isinstance(functions, list):
        specs += functions
    return [spec for spec in specs if isinstance(spec, Mapping)]


def _tools_tokens(enc: tiktoken.Encoding, specs: list[Mapping[str, Any]]) -> int:
    """num_tokens_for_tools, tolerant of missing descriptions, types and parameters."""
    if not specs:
        return 0
    func_init = FUNC_INIT[enc.name]
    total = FUNC_END
    for spec in specs:
        line = f"{_text(spec.get('name', ''))}:{_description(spec)}"
        total += func_init + _count(enc, line)
        parameters = spec.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if isinstance(properties, Mapping) and properties:
            total += PROP_INIT
            for key, schema in properties.items():
                total += PROP_KEY + _property_tokens(enc, key, schema)
    return total


def _property_tokens(enc: tiktoken.Encoding, key: str, schema: object) -> int:
    if not isinstance(schema, Mapping):
        return _count(enc, f"{key}::")
    total = 0
    enum = schema.get("enum")
    if isinstance(enum, list):
        total += ENUM_INIT + sum(ENUM_ITEM + _count(enc, _text(item)) for item in enum)
    total += _count(enc, f"{key}:{_text(schema.get('type', ''))}:{_description(schema)}")
    # The cookbook ignores nested schemas (items, properties, ...); counting them as JSON keeps
    # a large nested definition from being free.
    extra = {k: v for k, v in schema.items() if k not in _RENDERED_PROPERTY_KEYS}
    if extra:
        total += _count(enc, _text(extra))
    return total


def _description(schema: Mapping[str, Any]) -> str:
    # The cookbook drops one trailing period before counting.
    description = schema.get("description")
    return description.removesuffix(".") if isinstance(description, str) else ""
