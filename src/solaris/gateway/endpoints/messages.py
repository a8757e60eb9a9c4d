"""POST /v1/messages: Anthropic's Messages API (LibreChat's Anthropic endpoint, or a custom
endpoint with `provider: anthropic`), forwarded to the upstream's /v1/messages (LiteLLM's).

The key comes as `x-api-key` or `Authorization: Bearer`; `anthropic-version` and
`anthropic-beta` go upstream as sent; with the service key and no user header, the user is
`metadata.user_id`, which LibreChat sets. `max_tokens` is required and is the completion cap,
lowered when the balance covers less (and with it a `thinking.budget_tokens` that would no
longer fit under it). Usage comes in parts on a stream: the prompt in
`message_start` (`input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens`,
the cache read kept as `cached_tokens`, the write as `cache_write_tokens`, each billed at its
own weight), the output in the final `message_delta`; a stream cut before that is charged its
prompt and its text deltas counted offline, marked estimated. The threshold notice is a text
block of its own before `message_delta` (held, with what follows it, until the request is
settled). Every error on this path, the gateway's own included, is in Anthropic's shape
`{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from solaris.errors import ApiError, BadRequest
from solaris.gateway.endpoints.base import Endpoint, Usage, count, model_and_cap, sse_event
from solaris.metering import estimate_apis

__all__ = ["MESSAGES", "anthropic_error_type"]

ROLES = frozenset({"user", "assistant"})
BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "search_result",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    }
)
FORWARDED_HEADERS = (b"anthropic-version", b"anthropic-beta")
# Anthropic's error types by HTTP status (docs: "Errors"); others are api_error.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
TEXT_DELTAS = ("text", "partial_json", "thinking")
WEB_SEARCH_TOOL = "web_search_"  # the type's prefix: web_search_20250305, web_search_20260209, …
THINKING_BUDGET_MIN = 1024  # Anthropic's smallest `thinking.budget_tokens`
# Parsed besides the usage events: where content blocks open (a notice's block is the next one)
# and the closing message_delta, with or without usage.
PARSED_EVENTS = re.compile(
    rb'"usage"\s*:\s*\{|"type"\s*:\s*"(?:content_block_start|message_delta)"'
)


def anthropic_error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error")


@dataclass(frozen=True, slots=True)
class Messages(Endpoint):
    def check(self, body: Mapping[str, Any]) -> None:
        cap = body.get("max_tokens")
        if cap is None:
            raise BadRequest("max_tokens: Field required", param="max_tokens")
        if count(cap) is None or cap < 1:
            raise BadRequest("max_tokens: must be a positive integer", param="max_tokens")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: must be a non-empty array", param="messages")
        for index, message in enumerate(messages):
            _check_message(message, f"messages.{index}")
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            _check_blocks(system, "system")
        tools = body.get("tools")
        if tools is not None and not (
            isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)
        ):
            raise BadRequest("tools: must be an array of objects", param="tools")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise BadRequest("metadata: must be an object", param="metadata")

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return estimate_apis.messages_prompt_tokens(body)

    def completion_cap(self, body: Mapping[str, Any], default: int) -> int:
        cap = count(body.get("max_tokens"))
        return default if cap is None else cap

    def choices(self, body: Mapping[str, Any]) -> int:
        return 1

    def body_user(self, body: Mapping[str, Any]) -> object:
        metadata = body.get("metadata")
        return metadata.get("user_id") if isinstance(metadata, dict) else None

    def upstream_headers(self, headers: Mapping[bytes, bytes]) -> dict[str, str]:
        return {
            name.decode(): value.decode("latin-1")
            for name in FORWARDED_HEADERS
            if (value := headers.get(name))
        }

    def upstream_changes(
        self, body: Mapping[str, Any], upstream_model: str | None, completion_cap: int | None
    ) -> dict[str, Any]:
        changes = model_and_cap(upstream_model, "max_tokens", completion_cap)
        if completion_cap is not None and (thinking := _thinking_within(body, completion_cap)):
            changes["thinking"] = thinking
        return changes

    def hides_usage(self, body: Mapping[str, Any]) -> bool:
        return False

    def usage(self, payload: Mapping[str, Any]) -> Usage | None:
        """A whole message's usage (the stream's parts go through `stream_usage`)."""
        usage = payload.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt = _prompt_tokens(usage)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=count(usage.get("output_tokens")),
            cached_tokens=count(usage.get("cache_read_input_tokens")) or 0,
            cache_write_tokens=count(usage.get("cache_creation_input_tokens")) or 0,
        )

    def stream_usage(self, known: Usage | None, payload: Mapping[str, Any]) -> Usage | None:
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            started = self.usage(message) if isinstance(message, dict) else None
            # Its output_tokens is a running count, not the answer's: that is message_delta's.
            return (
                None
                if started is None
                else Usage(
                    started.prompt_tokens,
                    None,
                    started.cached_tokens,
                    cache_write_tokens=started.cache_write_tokens,
                )
            )
        if kind != "message_delta":
            return known
        final = self.usage(payload)
        if final is None:
            return known
        before = known or Usage(None, None)
        return Usage(
            prompt_tokens=before.prompt_tokens
            if final.prompt_tokens is None
            else final.prompt_tokens,
            completion_tokens=final.completion_tokens,
            cached_tokens=final.cached_tokens or before.cached_tokens,
            cache_write_tokens=final.cache_write_tokens or before.cache_write_tokens,
        )

    def hosted_tools_offered(self, body: Mapping[str, Any]) -> tuple[set[str], int | None]:
        """Anthropic's web search tool (`web_search_20250305`, …; one per request, its name
        is fixed) runs at the provider and is billed per search, at most `max_uses`."""
        for tool in body.get("tools") or ():
            if isinstance(tool, dict) and str(tool.get("type")).startswith(WEB_SEARCH_TOOL):
                return {"web_search"}, count(tool.get("max_uses"))
        return set(), None

    def tool_calls_cap(self, body: Mapping[str, Any], calls: int) -> dict[str, Any]:
        tools = [
            {**tool, "max_uses": calls}
            if isinstance(tool, dict) and str(tool.get("type")).startswith(WEB_SEARCH_TOOL)
            else tool
            for tool in body.get("tools") or ()
        ]
        return {"tools": tools}

    def tool_calls(self, payload: Mapping[str, Any]) -> dict[str, int]:
        """Searches in `usage.server_tool_use` (a whole message, or a stream's message_start
        or message_delta, which counts them all so far)."""
        message = payload.get("message")
        usage = (message if isinstance(message, dict) else payload).get("usage")
        used = usage.get("server_tool_use") if isinstance(usage, dict) else None
        searches = count(used.get("web_search_requests")) if isinstance(used, dict) else None
        return {"web_search_call": searches} if searches else {}

    def stream_tool_calls(
        self, known: dict[str, int], payload: Mapping[str, Any]
    ) -> dict[str, int]:
        reported = self.tool_calls(payload)
        return {tool: max(known.get(tool, 0), reported.get(tool, 0)) for tool in known | reported}

    def generated_text(self, payload: Mapping[str, Any]) -> Iterator[str]:
        if payload.get("type") == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict):
                for field in TEXT_DELTAS:
                    if isinstance(value := delta.get(field), str):
                        yield value
            return
        if payload.get("type") == "content_block_start":
            block = payload.get("content_block")
            if isinstance(block, dict) and isinstance(name := block.get("name"), str):
                yield name
            return
        for block in payload.get("content") or ():  # a whole message
            if isinstance(block, dict):
                yield from _block_text(block)

    def error_body(self, error: ApiError) -> bytes:
        return orjson.dumps(_error(error))

    def stream_error(self, error: ApiError) -> bytes:
        return sse_event(_error(error), "error")

    def closes_stream(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("type") == "message_delta"

    def opens_output(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("type") == "content_block_start"

    def with_notice(
        self, text: str, model: str, request_id: str, closing: bytes, parts: int
    ) -> bytes:
        """A text block of its own after the answer's, before the held `message_delta`."""
        if not closing:
            return closing  # no message_delta came: nothing to put the block before
        return (
            b"".join(sse_event(event, event["type"]) for event in _text_block(parts, "\n\n" + text))
            + closing
        )

    def block_stream(self, text: str, model: str, body: Mapping[str, Any]) -> bytes:
        zero = {
            "input_tokens": 0, "output_tokens": 0,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        }  # fmt: skip
        message: dict[str, Any] = {
            "id": "msg_" + uuid.uuid4().hex, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": zero,
        }  # fmt: skip
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": message},
            *_text_block(0, text),
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 0},
            },
            {"type": "message_stop"},
        ]
        return b"".join(sse_event(event, event["type"]) for event in events)


def _text_block(index: int, text: str) -> list[dict[str, Any]]:
    """A text content block at `index` saying `text`, as a stream tells it."""
    return [
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        },
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": text},
        },
        {"type": "content_block_stop", "index": index},
    ]


def _thinking_within(body: Mapping[str, Any], cap: int) -> dict[str, Any] | None:
    """The `thinking` a lowered `max_tokens` leaves room for, when the body's has none.

    Anthropic refuses a `budget_tokens` that is not below `max_tokens`, or under 1024;
    LibreChat's Anthropic endpoint thinks by default (budget 2000), so a cap lowered for a
    small balance would turn its reply into a 400. The budget goes under the cap; below the
    smallest budget there is no room to think, and the reply comes without thinking.
    """
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = count(thinking.get("budget_tokens"))
    if budget is None or budget < cap:
        return None
    if cap <= THINKING_BUDGET_MIN:
        return {"type": "disabled"}
    return {**thinking, "budget_tokens": cap - 1}


def _error(error: ApiError) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(error.status), "message": error.message},
    }


def _prompt_tokens(usage: Mapping[str, Any]) -> int | None:
    """Anthropic's input_tokens leave out the cache's: the prompt is all three."""
    parts = [
        count(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    if parts[0] is None:
        return None
    return sum(part or 0 for part in parts)


def _check_message(message: object, param: str) -> None:
    if not isinstance(message, dict):
        raise BadRequest(f"{param}: Input should be an object", param=param)
    if message.get("role") not in ROLES:
        raise BadRequest(f"{param}.role: Input should be 'user' or 'assistant'", param=param)
    content = message.get("content")
    if not isinstance(content, str):
        _check_blocks(content, f"{param}.content")


def _check_blocks(blocks: object, param: str) -> None:
    if not isinstance(blocks, list):
        raise BadRequest(f"{param}: Input should be a string or an array of blocks", param=param)
    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            raise BadRequest(f"{param}.{index}.type: unknown block type {kind!r}", param=param)


def _block_text(block: Mapping[str, Any]) -> Iterator[str]:
    for field in ("text", "thinking", "name"):
        if isinstance(value := block.get(field), str):
            yield value
    if isinstance(block.get("input"), dict):
        yield orjson.dumps(block["input"]).decode()


MESSAGES = Messages(
    name="messages",
    path="/v1/messages",
    upstream_path="/messages",
    input_field="messages",
    generates=True,
    in_chat_block=True,
    parsed_events=PARSED_EVENTS,
)
