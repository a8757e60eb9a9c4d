"""POST /v1/responses as OpenAI answers it: a Response object, or its event stream.

The reply is the dev provider's fixed text cut to `max_output_tokens` (then the response is
`incomplete`, reason `max_output_tokens`); `input_tokens` is counted as the gateway estimates
it, plus `prompt_extra_tokens` (what a stored conversation would add). The stream is
`response.created`, `response.in_progress`, the message's item and part events, one
`response.output_text.delta` per token, their `*.done` events and `response.completed` (or
`response.incomplete`) with the usage; `omit_usage` sends `usage: null` there. The hosted tool
calls a request asks for (`hosted_tool_calls`, at most `max_tool_calls` of them) come first, as
finished output items (their `response.output_item.added` and `.done` events on a stream).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from solaris.devprovider import request, shapes
from solaris.devprovider.request import Behaviour, Invalid, Json
from solaris.metering import estimate_apis, tokenizer

__all__ = ["responses"]

ID_PREFIXES = {
    "web_search_call": "ws_", "file_search_call": "fs_", "image_generation_call": "ig_",
    "code_interpreter_call": "ci_",
}  # fmt: skip


def responses(body: Json, behaviour: Behaviour, model: str) -> bytes | list[bytes]:
    given = body.get("input")
    if given is None and body.get("previous_response_id") is None:
        raise Invalid(
            request.error(
                "Missing required parameter: 'input'.", "input", "missing_required_parameter"
            )
        )
    if given is not None and not isinstance(given, str | list):
        raise Invalid(request.error("Invalid type for 'input': expected a string or array."))
    cap = body.get("max_output_tokens")
    if cap is not None and (not request.is_int(cap) or cap < 16):
        raise Invalid(
            request.error(
                f"Invalid 'max_output_tokens': integer below minimum value. Expected a value "
                f">= 16, but got {cap} instead.",
                "max_output_tokens",
                "integer_below_min_value",
            )
        )
    wanted = behaviour.reply_tokens
    limit = wanted if cap is None else min(wanted, cap)
    pieces = shapes.reply_pieces(tokenizer.encoding_for_model(model), limit)
    prompt_tokens = estimate_apis.responses_prompt_tokens(body) + behaviour.prompt_extra_tokens
    usage: Json | None = None
    if not behaviour.omit_usage:
        usage = {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {
                "cached_tokens": min(behaviour.cache_read_tokens, prompt_tokens),
                "cache_write_tokens": max(
                    0,
                    min(behaviour.cache_write_tokens, prompt_tokens - behaviour.cache_read_tokens),
                ),
            },
            "output_tokens": len(pieces),
            "output_tokens_details": {
                "reasoning_tokens": min(behaviour.reasoning_tokens, len(pieces))
            },
            "total_tokens": prompt_tokens + len(pieces),
        }
        if behaviour.omit_completion_tokens:
            del usage["output_tokens"]
    head = _response(shapes.new_id("resp_"), model, body)
    item_id = shapes.new_id("msg_")
    complete = limit >= wanted
    calls_max = body.get("max_tool_calls")
    asked = behaviour.hosted_tool_calls
    runs = asked[:calls_max] if request.is_int(calls_max) and calls_max >= 0 else asked
    tools = [_hosted_call(kind) for kind in runs]
    if body.get("stream") is True:
        return _events(head, item_id, pieces, usage, complete, tools)
    return orjson.dumps(_finished(head, item_id, "".join(pieces), usage, complete, tools))


def _hosted_call(kind: str) -> Json:
    """A hosted tool's finished output item (a web search's, say), as the API lists it."""
    item: Json = {"id": shapes.new_id(ID_PREFIXES[kind]), "type": kind}
    item["status"] = "completed"
    if kind == "web_search_call":
        item["action"] = {"type": "search", "query": "solaris"}
    return item


def _response(id_: str, model: str, body: Json) -> Json:
    return {
        "id": id_,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": {},
    }


def _message(item_id: str, text: str, status: str) -> Json:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [] if status == "in_progress" else content,
    }


def _finished(
    head: Json, item_id: str, text: str, usage: Json | None, complete: bool, tools: list[Json]
) -> Json:
    status = "completed" if complete else "incomplete"
    return {
        **head,
        "status": status,
        "incomplete_details": None if complete else {"reason": "max_output_tokens"},
        "output": [*tools, _message(item_id, text, status)],
        "usage": usage,
    }


def _events(
    head: Json,
    item_id: str,
    pieces: list[str],
    usage: Json | None,
    complete: bool,
    tools: list[Json],
) -> list[bytes]:
    text = "".join(pieces)
    at = len(tools)  # the message follows the tool calls
    where = {"item_id": item_id, "output_index": at, "content_index": 0}
    part: Json = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    finished = _finished(head, item_id, text, usage, complete, tools)
    calls: list[tuple[str, Json]] = []
    for index, tool in enumerate(tools):
        calls.append(
            (
                "response.output_item.added",
                {"output_index": index, "item": {**tool, "status": "in_progress"}},
            )
        )
        calls.append(("response.output_item.done", {"output_index": index, "item": tool}))
    steps: list[tuple[str, Json]] = [
        ("response.created", {"response": head}),
        ("response.in_progress", {"response": head}),
        *calls,
        (
            "response.output_item.added",
            {"output_index": at, "item": _message(item_id, "", "in_progress")},
        ),
        ("response.content_part.added", {**where, "part": part}),
        *(
            ("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
            for piece in pieces
        ),
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": {**part, "text": text}}),
        ("response.output_item.done", {"output_index": at, "item": finished["output"][at]}),
        ("response.completed" if complete else "response.incomplete", {"response": finished}),
    ]
    return [_event(kind, number, fields) for number, (kind, fields) in enumerate(steps)]


def _event(kind: str, number: int, fields: dict[str, Any]) -> bytes:
    payload = orjson.dumps({"type": kind, "sequence_number": number, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"
