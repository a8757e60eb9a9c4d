"""POST /v1/messages as Anthropic (or LiteLLM's /v1/messages) answers it.

The reply is the dev provider's fixed text cut to `max_tokens` (then `stop_reason` is
`max_tokens`); `input_tokens` is counted as the gateway estimates the prompt, plus
`prompt_extra_tokens`, and the cache's tokens (`cache_write_tokens`, `cache_read_tokens`) are
reported beside it, as Anthropic does. The stream is `message_start` (with the input usage),
`content_block_start`, a `ping`, one `content_block_delta` per token, `content_block_stop`,
`message_delta` (stop reason and `output_tokens`) and `message_stop`; `omit_usage` leaves the
usage out of `message_start` and `message_delta`. With a web search tool offered, the usage's
`server_tool_use.web_search_requests` counts the `web_search_call`s in `hosted_tool_calls` (at
most the tool's `max_uses`), in the final usage of a stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from solaris.devprovider import shapes
from solaris.devprovider.request import Behaviour, Invalid, Json
from solaris.metering import estimate_apis, tokenizer

__all__ = ["messages"]


def messages(body: Json, behaviour: Behaviour, model: str) -> bytes | list[bytes]:
    cap = body.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise Invalid(_error("max_tokens: Field required"))
    given = body.get("messages")
    if not isinstance(given, list) or not given:
        raise Invalid(_error("messages: Field required"))
    wanted = behaviour.reply_tokens
    pieces = shapes.reply_pieces(tokenizer.encoding_for_model(model), min(wanted, cap))
    prompt_tokens = estimate_apis.messages_prompt_tokens(body) + behaviour.prompt_extra_tokens
    usage: Json | None = None
    if not behaviour.omit_usage:
        usage = {
            "input_tokens": prompt_tokens,
            "cache_creation_input_tokens": behaviour.cache_write_tokens,
            "cache_read_input_tokens": behaviour.cache_read_tokens,
            "output_tokens": len(pieces),
        }
        if behaviour.omit_completion_tokens:
            del usage["output_tokens"]
        searches = _searches(body, behaviour)
        if searches is not None:
            usage["server_tool_use"] = {"web_search_requests": searches, "web_fetch_requests": 0}
    stop_reason = "end_turn" if cap >= wanted else "max_tokens"
    message: Json = {
        "id": shapes.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    if body.get("stream") is True:
        return _events(message, pieces, stop_reason)
    text = "".join(pieces)
    whole = {**message, "content": [{"type": "text", "text": text}], "stop_reason": stop_reason}
    if usage is None:
        del whole["usage"]
    return orjson.dumps(whole)


def _events(message: Json, pieces: list[str], stop_reason: str) -> list[bytes]:
    usage = message["usage"]
    start = dict(message)
    if usage is None:
        del start["usage"]
    else:
        start["usage"] = {**usage, "output_tokens": 1}  # Anthropic's running count
    final: Json = {"type": "message_delta", "delta": {"stop_reason": stop_reason}}
    if usage is not None and "output_tokens" in usage:
        final["usage"] = {"output_tokens": usage["output_tokens"]}
    if usage is not None and "server_tool_use" in usage:  # counted by the final usage only
        final["usage"] = {**final.get("usage", {}), "server_tool_use": usage["server_tool_use"]}
        start["usage"] = {k: v for k, v in start["usage"].items() if k != "server_tool_use"}
    steps: list[Json] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in pieces
        ),
        {"type": "content_block_stop", "index": 0},
        {**final, "delta": {**final["delta"], "stop_sequence": None}},
        {"type": "message_stop"},
    ]
    return [_event(step) for step in steps]


def _searches(body: Json, behaviour: Behaviour) -> int | None:
    """The web searches Anthropic's web search tool ran (`hosted_tool_calls` that are
    `web_search_call`, at most its `max_uses`); None when the request offers no such tool."""
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and str(tool.get("type")).startswith("web_search_"):
            asked = behaviour.hosted_tool_calls.count("web_search_call")
            uses = tool.get("max_uses")
            return min(asked, uses) if isinstance(uses, int) and uses >= 0 else asked
    return None


def _event(payload: dict[str, Any]) -> bytes:
    name = str(payload["type"]).encode()
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _error(message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    )
