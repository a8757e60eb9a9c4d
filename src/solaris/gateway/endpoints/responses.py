"""POST /v1/responses: OpenAI's Responses API (LibreChat's "Use Responses API" and web search).

The completion cap is `max_output_tokens` (reasoning included), lowered when the balance covers
less. A stream always reports its usage, in `response.completed` (or `response.incomplete` /
`response.failed`), which the client needs anyway: nothing is injected and nothing hidden,
but for the threshold notice, a message item of its own before `response.completed` (held until
the request is settled for that). A stream that ends without one (cut, client gone, a failure reported without usage) is charged
what its `*.delta` events carried, counted offline and marked estimated; an answer that says it
is `incomplete` or `failed` leaves its usage row with that status.

Stored context. `previous_response_id`, `conversation`, a reusable `prompt` and `item_reference`
input items make the provider read input this body does not carry, so the estimate cannot bound
it. Such a request is refused (400) unless the operator sets `SOLARIS_STORED_CONTEXT_TOKENS`:
then that many prompt tokens are held on top of the estimate. The user is still charged what
the provider reports; what passes the hold is debt, bounded per request as any estimate's excess
(README, "Debt is bounded and shown"), and no request is admitted while the balance is below zero.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from solaris.config import HOSTED_TOOLS
from solaris.errors import ApiError, BadRequest
from solaris.gateway.endpoints.base import (
    Endpoint,
    Usage,
    count,
    event_data,
    model_and_cap,
    sse_event,
)
from solaris.metering import estimate_apis

__all__ = ["RESPONSES", "response_object"]

# Input items the gateway knows how to count; others are refused rather than guessed at.
ITEM_TYPES = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
        "item_reference",
        "web_search_call",
        "file_search_call",
        "image_generation_call",
        "code_interpreter_call",
        "computer_call",
        "computer_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
    }
)
STORED_CONTEXT_FIELDS = ("previous_response_id", "conversation", "prompt")
# Parsed besides the usage events: a `response.failed` may carry no usage, yet ends the answer;
# each finished output item, which may be a hosted tool call (billed per call).
PARSED_EVENTS = re.compile(
    rb'"usage"\s*:\s*\{|"type"\s*:\s*"response\.(?:failed|output_item\.done)"'
)
OFFERED_AS = {kind: tool for tool, kinds in HOSTED_TOOLS.items() for kind in kinds}
SHORT_ENDINGS = frozenset({"incomplete", "failed"})
CLOSING_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
NOT_GENERATED = frozenset({"response.audio.delta"})  # base64 audio, not text


@dataclass(frozen=True, slots=True)
class Responses(Endpoint):
    def check(self, body: Mapping[str, Any]) -> None:
        given = body.get("input")
        if given is None and self.stored_context(body) is None:
            raise BadRequest("Missing required parameter: 'input'.", param="input")
        if given is not None and not isinstance(given, str | list):
            raise BadRequest("'input' must be a string or an array of items.", param="input")
        if isinstance(given, list):
            for index, item in enumerate(given):
                _check_item(item, f"input[{index}]")
        for field in ("instructions", "previous_response_id"):
            if body.get(field) is not None and not isinstance(body[field], str):
                raise BadRequest(f"'{field}' must be a string.", param=field)
        tools = body.get("tools")
        if tools is not None and not (
            isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)
        ):
            raise BadRequest("'tools' must be an array of objects.", param="tools")
        calls = body.get("max_tool_calls")
        if calls is not None and count(calls) is None:
            raise BadRequest(
                "'max_tool_calls' must be a non-negative integer.", param="max_tool_calls"
            )
        cap = body.get("max_output_tokens")
        if cap is not None and (count(cap) is None or cap < 1):
            raise BadRequest(
                "'max_output_tokens' must be a positive integer.", param="max_output_tokens"
            )

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return estimate_apis.responses_prompt_tokens(body)

    def completion_cap(self, body: Mapping[str, Any], default: int) -> int:
        cap = count(body.get("max_output_tokens"))
        return default if cap is None else cap

    def choices(self, body: Mapping[str, Any]) -> int:
        return 1

    def stored_context(self, body: Mapping[str, Any]) -> str | None:
        for field in STORED_CONTEXT_FIELDS:
            if body.get(field) is not None:
                return field
        given = body.get("input")
        for index, item in enumerate(given if isinstance(given, list) else ()):
            if isinstance(item, dict) and item.get("type") == "item_reference":
                return f"input[{index}]"
        return None

    def upstream_changes(
        self, body: Mapping[str, Any], upstream_model: str | None, completion_cap: int | None
    ) -> dict[str, Any]:
        return model_and_cap(upstream_model, "max_output_tokens", completion_cap)

    def hides_usage(self, body: Mapping[str, Any]) -> bool:
        return False

    def usage(self, payload: Mapping[str, Any]) -> Usage | None:
        response = payload.get("response")
        usage = (response if isinstance(response, dict) else payload).get("usage")
        if not isinstance(usage, dict):
            return None
        prompt, completion = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
        if prompt is None and completion is None:
            return None
        input_details = usage.get("input_tokens_details") or {}
        output_details = usage.get("output_tokens_details") or {}
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=count(input_details.get("cached_tokens")) or 0,
            reasoning_tokens=count(output_details.get("reasoning_tokens")) or 0,
            cache_write_tokens=count(input_details.get("cache_write_tokens")) or 0,
        )

    def generated_text(self, payload: Mapping[str, Any]) -> Iterator[str]:
        kind = payload.get("type")
        if isinstance(kind, str):  # a stream event: its deltas (`*.done` repeat them)
            delta = payload.get("delta")
            if kind.endswith(".delta") and kind not in NOT_GENERATED and isinstance(delta, str):
                yield delta
            item = payload.get("item")
            name = item.get("name") if isinstance(item, dict) else None
            if kind == "response.output_item.added" and isinstance(name, str):
                yield name  # a function call's name comes once, with its item
            return
        for item in payload.get("output") or ():  # a whole response
            if isinstance(item, dict):
                yield from _item_text(item)

    def hosted_tools_offered(self, body: Mapping[str, Any]) -> tuple[set[str], int | None]:
        offered = {
            tool["type"]
            for tool in body.get("tools") or ()
            if isinstance(tool, dict) and tool.get("type") in OFFERED_AS
        }
        return offered, count(body.get("max_tool_calls"))

    def tool_calls_cap(self, body: Mapping[str, Any], calls: int) -> dict[str, Any]:
        return {"max_tool_calls": calls}  # all hosted tools of the response together

    def tool_calls(self, payload: Mapping[str, Any]) -> dict[str, int]:
        response = payload.get("response")
        output = (response if isinstance(response, dict) else payload).get("output")
        calls: dict[str, int] = {}
        for item in output if isinstance(output, list) else ():
            kind = item.get("type") if isinstance(item, dict) else None
            if kind in HOSTED_TOOLS:
                calls[kind] = calls.get(kind, 0) + 1
        return calls

    def stream_tool_calls(
        self, known: dict[str, int], payload: Mapping[str, Any]
    ) -> dict[str, int]:
        kind = payload.get("type")
        if kind == "response.output_item.done":
            item = payload.get("item")
            tool = item.get("type") if isinstance(item, dict) else None
            return {**known, tool: known.get(tool, 0) + 1} if tool in HOSTED_TOOLS else known
        response = payload.get("response")
        if isinstance(response, dict) and isinstance(response.get("output"), list):
            # The finished response lists every item; an item event may have gone before it.
            listed = self.tool_calls(payload)
            return {tool: max(known.get(tool, 0), listed.get(tool, 0)) for tool in known | listed}
        return known

    def finish_status(self, payload: Mapping[str, Any]) -> str | None:
        response = payload.get("response")
        status = (response if isinstance(response, dict) else payload).get("status")
        return status if status in SHORT_ENDINGS else None

    def stream_error(self, error: ApiError) -> bytes:
        event = {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "sequence_number": 0,
        }
        return sse_event(event, "error")

    def block_stream(self, text: str, model: str, body: Mapping[str, Any]) -> bytes:
        response = response_object("resp_" + uuid.uuid4().hex, model, "in_progress")
        message = _message_events(0, text)
        zero = {
            "input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0,
        }  # fmt: skip
        output = [message[-1][1]["item"]]
        completed = {**response, "status": "completed", "output": output, "usage": zero}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": response}),
            ("response.in_progress", {"response": response}),
            *message,
            ("response.completed", {"response": completed}),
        ]
        return _numbered(events, 0)

    def closes_stream(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("type") in CLOSING_EVENTS

    def with_notice(
        self, text: str, model: str, request_id: str, closing: bytes, parts: int
    ) -> bytes:
        """A message item of its own after the answer's, before `response.completed`, which
        then lists it in its output and is numbered after it."""
        first, _, rest = closing.partition(b"\n\n")
        payload = orjson.loads(event_data(first)) if first else None
        response = payload.get("response") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or payload.get("type") != "response.completed":
            return closing
        if not isinstance(response, dict) or not isinstance(response.get("output"), list):
            return closing
        message = _message_events(len(response["output"]), "\n\n" + text)
        number = count(payload.get("sequence_number")) or 0
        output = [*response["output"], message[-1][1]["item"]]
        completed = {**payload, "response": {**response, "output": output}}
        completed["sequence_number"] = number + len(message)
        return _numbered(message, number) + sse_event(completed, "response.completed") + rest


def _message_events(index: int, text: str) -> list[tuple[str, dict[str, Any]]]:
    """An assistant message item at output `index` saying `text`, as a stream tells it."""
    item_id = "msg_" + uuid.uuid4().hex
    part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
    item: dict[str, Any] = {
        "id": item_id, "type": "message", "status": "in_progress", "role": "assistant",
        "content": [],
    }  # fmt: skip
    where = {"item_id": item_id, "output_index": index, "content_index": 0}
    done_part = {**part, "text": text}
    done_item = {**item, "status": "completed", "content": [done_part]}
    return [
        ("response.output_item.added", {"output_index": index, "item": item}),
        ("response.content_part.added", {**where, "part": part}),
        ("response.output_text.delta", {**where, "delta": text, "logprobs": []}),
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": done_part}),
        ("response.output_item.done", {"output_index": index, "item": done_item}),
    ]


def _numbered(events: list[tuple[str, dict[str, Any]]], first: int) -> bytes:
    return b"".join(
        sse_event({"type": kind, "sequence_number": first + offset, **fields}, kind)
        for offset, (kind, fields) in enumerate(events)
    )


def response_object(id_: str, model: str, status: str) -> dict[str, Any]:
    """A Response as the API returns it, with no output yet."""
    return {
        "id": id_,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "metadata": {},
    }


def _check_item(item: object, param: str) -> None:
    if not isinstance(item, dict):
        raise BadRequest(f"Invalid type for '{param}': expected an object.", param=param)
    kind = item.get("type", "message" if "role" in item else None)
    if kind not in ITEM_TYPES:
        raise BadRequest(f"Invalid value for '{param}.type': {kind!r}.", param=f"{param}.type")
    if kind == "message":
        content = item.get("content")
        if not isinstance(content, str | list):
            raise BadRequest(
                f"'{param}.content' must be a string or an array.", param=f"{param}.content"
            )
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise BadRequest(
                f"Each part of '{param}.content' must be an object.", param=f"{param}.content"
            )


def _item_text(item: Mapping[str, Any]) -> Iterator[str]:
    for field in ("name", "arguments", "input"):
        if isinstance(value := item.get(field), str):
            yield value
    for key in ("content", "summary"):
        for part in item.get(key) or ():
            if isinstance(part, dict):
                for field in ("text", "refusal"):
                    if isinstance(value := part.get(field), str):
                        yield value


RESPONSES = Responses(
    name="responses",
    path="/v1/responses",
    upstream_path="/responses",
    input_field="input",
    generates=True,
    in_chat_block=True,
    parsed_events=PARSED_EVENTS,
)
