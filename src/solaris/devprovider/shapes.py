"""OpenAI's response bodies and stream events, built as bytes ready to send."""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import random
import secrets
import string
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import tiktoken

from solaris.devprovider.request import Json, UsageStyle
from solaris.errors import error_body

# Every prefix of this text, cut at token boundaries, re-encodes to the same tokens in
# cl100k_base and o200k_base, so `completion_tokens` equals a recount of the returned text.
_SENTENCE = "This is a deterministic reply from the Solaris dev provider."
_FINGERPRINT = "fp_d3v0000000"
_ALNUM = string.ascii_letters + string.digits
# OpenAI pads stream events with random `obfuscation` strings (stream_options
# include_obfuscation, on by default); a fixed cycle costs nothing per event.
_PADS = itertools.cycle(
    "".join(random.choices(_ALNUM, k=length)) for length in (3, 11, 7, 1, 14, 5, 9, 2)
)
_DONE = b"data: [DONE]\n\n"

# Messages as OpenAI words them for the statuses tests inject most.
_FAILURES: dict[int, tuple[str, str, str | None]] = {
    401: (
        "Incorrect API key provided: sk-dev****. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for {model} in organization org-dev on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def new_id(prefix: str) -> str:
    # OpenAI's ids are 29 alphanumerics after the prefix; hex is the cheapest such random text.
    return prefix + secrets.token_hex(15)[:29]


def failure(status: int, model: str) -> bytes:
    """The error body OpenAI sends with `status` (a generic one for statuses not listed)."""
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    message, type_, code = _FAILURES.get(
        status, (f"Injected failure (HTTP {status}).", default_type, None)
    )
    return error_body(message.format(model=model), type_, code)


_pieces: dict[str, list[str]] = {}


def reply_pieces(encoding: tiktoken.Encoding, count: int) -> list[str]:
    """The first `count` tokens of the reply text, one string per token."""
    pieces = _pieces.get(encoding.name, [])
    if len(pieces) < count:
        # Each sentence is at least 11 tokens: enough repeats to cover `count`.
        text = " ".join([_SENTENCE] * (count // 11 + 1))
        tokens = encoding.encode(text)
        pieces = [encoding.decode_single_token_bytes(token).decode() for token in tokens]
        _pieces[encoding.name] = pieces
    return pieces[:count]


@dataclass(frozen=True, slots=True)
class Reply:
    """One generated answer: the same token pieces in each of `choices` choices."""

    id: str
    model: str
    pieces: list[str]
    choices: int
    finish_reason: str
    prompt_tokens: int
    with_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))
    without_completion_tokens: bool = False
    cached_tokens: int = 0  # of the prompt
    cache_write_tokens: int = 0  # of the prompt
    reasoning_tokens: int = 0  # of the completion

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) * self.choices

    def chat_usage(self) -> Json:
        return {
            **self.text_usage(),
            "prompt_tokens_details": {
                "cached_tokens": min(self.cached_tokens, self.prompt_tokens),
                "cache_write_tokens": max(
                    0, min(self.cache_write_tokens, self.prompt_tokens - self.cached_tokens)
                ),
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": min(self.reasoning_tokens, self.completion_tokens),
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def text_usage(self) -> Json:
        completion = self.completion_tokens
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.without_completion_tokens:
            del usage["completion_tokens"]
        return usage


def chat_completion(reply: Reply) -> bytes:
    text = "".join(reply.pieces)
    body: Json = {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
            for index in range(reply.choices)
        ],
    }
    if reply.with_usage:
        body["usage"] = reply.chat_usage()
    body["service_tier"] = "default"
    body["system_fingerprint"] = _FINGERPRINT
    return orjson.dumps(body)


def chat_events(
    reply: Reply, include_usage: bool, obfuscate: bool, style: UsageStyle
) -> list[bytes]:
    """Every `data:` event of a chat stream, `[DONE]` included, in sending order."""
    head: Json = {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    role: Json = {"role": "assistant", "content": "", "refusal": None}
    steps = [role, *({"content": piece} for piece in reply.pieces), {}]
    last = len(steps) - 1
    choices = (
        {
            "index": index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": reply.finish_reason if step == last else None,
        }
        for step, delta in enumerate(steps)
        for index in range(reply.choices)
    )
    usage = reply.chat_usage() if include_usage and reply.with_usage else None
    return _events(head, choices, usage, [{"index": 0, "delta": {}}], style, obfuscate)


def text_completion(reply: Reply) -> bytes:
    text = "".join(reply.pieces)
    body: Json = {
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {"text": text, "index": index, "logprobs": None, "finish_reason": reply.finish_reason}
            for index in range(reply.choices)
        ],
    }
    if reply.with_usage:
        body["usage"] = reply.text_usage()
    return orjson.dumps(body)


def text_completion_events(reply: Reply, include_usage: bool, style: UsageStyle) -> list[bytes]:
    head: Json = {
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
    }
    last = len(reply.pieces)
    choices = (
        {
            "text": piece,
            "index": index,
            "logprobs": None,
            "finish_reason": reply.finish_reason if step == last else None,
        }
        for step, piece in enumerate([*reply.pieces, ""])
        for index in range(reply.choices)
    )
    usage = reply.text_usage() if include_usage and reply.with_usage else None
    litellm_choices = [{"text": "", "index": 0, "logprobs": None, "finish_reason": None}]
    return _events(head, choices, usage, litellm_choices, style, pad=False)


def _events(
    head: Json,
    choices: Iterator[Json],
    usage: Json | None,
    litellm_choices: list[Json],
    style: UsageStyle,
    pad: bool,
) -> list[bytes]:
    """One event per choice step, then the usage event if any, then `[DONE]`.

    OpenAI marks every event `usage: null` while a usage event is due, and sends that event with
    `choices: []`; LiteLLM sends no `usage: null` and gives its usage event `litellm_choices`.
    """
    openai_style = style == "openai"
    usage_null = {"usage": None} if usage is not None and openai_style else {}
    pad = pad and openai_style
    events = [_event({**head, "choices": [choice], **usage_null}, pad) for choice in choices]
    if usage is not None:
        usage_choices = [] if openai_style else litellm_choices
        events.append(_event({**head, "choices": usage_choices, "usage": usage}, pad))
    events.append(_DONE)
    return events


def _event(chunk: Json, pad: bool) -> bytes:
    if pad:
        chunk["obfuscation"] = next(_PADS)
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def embeddings(
    inputs: list[object], model: str, dimensions: int, as_base64: bool, prompt_tokens: int | None
) -> bytes:
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(orjson.dumps(item), dimensions)
        encoded: object = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    body: Json = {"object": "list", "data": data, "model": model}
    if prompt_tokens is not None:
        body["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return orjson.dumps(body)


def _vector(seed: bytes, dimensions: int) -> list[float]:
    """A unit vector that depends only on `seed`, as OpenAI's embeddings are unit length."""
    words = bytearray()
    block = 0
    while len(words) < 4 * dimensions:
        words += hashlib.blake2b(seed + block.to_bytes(4, "little")).digest()
        block += 1
    raw = [value / 2**31 - 1.0 for value in struct.unpack_from(f"<{dimensions}I", words)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [value / norm for value in raw]
