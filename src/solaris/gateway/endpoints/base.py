"""What the proxy asks of an API shape, and the OpenAI answers' defaults.

An `Endpoint` is a value: its methods are pure functions of the body or of the upstream's
payloads, so one instance serves every request. The proxy, the admission, the body rewriting,
the relay and the block replies ask it everything that differs between shapes: the body checks,
the prompt estimate, the completion cap and its field, how to get usage on a stream and where
to read it, the generated text, the error shape, a stream's error event and the in-chat block. Unknown is never zero: a usage without
`prompt_tokens` or (for generating endpoints) `completion_tokens` reads as `None` in that field,
and the proxy completes it from its own count and marks the row estimated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from solaris.config import ModelPolicy
from solaris.errors import ApiError, BadRequest
from solaris.metering import estimate
from solaris.metering.billing import ToolCharge

__all__ = [
    "USAGE_OBJECT",
    "Endpoint",
    "Usage",
    "client_wants_usage",
    "count",
    "event_data",
    "model_and_cap",
    "openai_text",
    "openai_usage",
    "sse_event",
]


@dataclass(frozen=True, slots=True)
class Usage:
    """What the provider reported; `None` where it reported nothing."""

    prompt_tokens: int | None  # all of the prompt, the cache's reads and writes included
    completion_tokens: int | None  # all of the completion, reasoning included
    cached_tokens: int = 0  # of the prompt: read from the provider's prompt cache
    reasoning_tokens: int = 0  # of the completion
    cache_write_tokens: int = 0  # of the prompt: written to the prompt cache (Anthropic)


# Stream events the relay parses: those holding a usage object (not `"usage": null`, which
# OpenAI puts on every chunk when usage is on). A shape may add its own (`parsed_events`).
USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An OpenAI-shaped endpoint; a shape that differs overrides what differs."""

    name: str  # the usage row's `endpoint`
    path: str  # what clients call
    upstream_path: str  # what the upstream is called with, below its base URL
    input_field: str  # the field that must be present besides `model`
    generates: bool  # has a completion (so a completion cap, and maybe a stream)
    in_chat_block: bool = False  # a blocked LibreChat stream gets an assistant message
    parsed_events: re.Pattern[bytes] = USAGE_OBJECT  # which stream events the relay parses
    default_model: str | None = None  # what a body without `model` gets (OpenAI's default)
    binary_answer: bool = False  # the answer is bytes (audio), streamed through as they come

    def check(self, body: Mapping[str, Any]) -> None:
        """Refuse a body the upstream could not serve (`BadRequest`); `model` is checked."""
        if self.input_field not in body:
            raise BadRequest(f"Missing required parameter: '{self.input_field}'.")

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        raise NotImplementedError

    def completion_cap(self, body: Mapping[str, Any], default: int) -> int:
        return estimate.completion_cap(body, default) if self.generates else 0

    def choices(self, body: Mapping[str, Any]) -> int:
        """How many completions share the cap (`n`)."""
        n = body.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1

    def priced(self, body: Mapping[str, Any], policy: ModelPolicy) -> ToolCharge | None:
        """What the request costs at the model's configured price, known before it is
        forwarded (images, speech, moderation): held whole, and charged when the answer
        reports no token usage. None for shapes billed by their tokens alone; `BadRequest`
        when the model has no price for it."""
        return None

    def stored_context(self, body: Mapping[str, Any]) -> str | None:
        """The field by which the provider adds input the body does not carry (a stored
        conversation), if any."""
        return None

    def body_user(self, body: Mapping[str, Any]) -> object:
        """Where the body names its user, for a service key without the user header."""
        return body.get("user")

    def upstream_headers(self, headers: Mapping[bytes, bytes]) -> dict[str, str]:
        """Client headers the upstream needs as well (an API version, say)."""
        return {}

    def upstream_changes(
        self, body: Mapping[str, Any], upstream_model: str | None, completion_cap: int | None
    ) -> dict[str, Any]:
        """What the forwarded body must change: usage asked for on streams, the alias, the cap."""
        changes: dict[str, Any] = {}
        if body.get("stream") is True and not client_wants_usage(body):
            options = body.get("stream_options")
            changes["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        return {**changes, **model_and_cap(upstream_model, field, completion_cap)}

    def hides_usage(self, body: Mapping[str, Any]) -> bool:
        """Whether the stream's usage event is the gateway's own, to be kept from the client."""
        return not client_wants_usage(body)

    def usage(self, payload: Mapping[str, Any]) -> Usage | None:
        """The provider's usage in an answer or a stream chunk, if it reports one."""
        return openai_usage(payload, self.generates)

    def stream_usage(self, known: Usage | None, payload: Mapping[str, Any]) -> Usage | None:
        """The usage known after one more stream event (shapes that report it in parts merge)."""
        return self.usage(payload) or known

    def generated_text(self, payload: Mapping[str, Any]) -> Iterator[str]:
        """Text the model generated in an answer or chunk (for counting it offline)."""
        return openai_text(payload)

    def hosted_tools_offered(self, body: Mapping[str, Any]) -> tuple[set[str], int | None]:
        """The `tools` types a request offers that the provider runs itself (and bills per
        call), and the most calls of them the request allows, if it says; none for most
        shapes."""
        return set(), None

    def tool_calls_cap(self, body: Mapping[str, Any], calls: int) -> dict[str, Any]:
        """What the forwarded body changes so the provider runs at most `calls` hosted tool
        calls (shapes whose `hosted_tools_offered` can offer some)."""
        raise NotImplementedError

    def tool_calls(self, payload: Mapping[str, Any]) -> dict[str, int]:
        """Hosted tool calls in a whole answer, by the Responses output item type that names
        the tool (`web_search_call`, …)."""
        return {}

    def stream_tool_calls(
        self, known: dict[str, int], payload: Mapping[str, Any]
    ) -> dict[str, int]:
        """The hosted tool calls known after one more stream event."""
        return known

    def finish_status(self, payload: Mapping[str, Any]) -> str | None:
        """The usage row's status when an answer or a stream event says it ended short of
        complete (a Responses `incomplete` or `failed`); None when it says nothing of it."""
        return None

    def error_body(self, error: ApiError) -> bytes:
        """An error in this API's shape (OpenAI's, for these)."""
        return error.body()

    def stream_error(self, error: ApiError) -> bytes:
        """The event that tells a client the stream broke (SDKs raise it)."""
        return b"data: " + self.error_body(error) + b"\n\n"

    def block_stream(self, text: str, model: str, body: Mapping[str, Any]) -> bytes:
        """A whole stream answering `text` as the assistant (shapes with `in_chat_block`)."""
        raise NotImplementedError

    def closes_stream(self, payload: Mapping[str, Any]) -> bool:
        """Whether this stream event starts the answer's closing events (Responses'
        `response.completed`, Anthropic's `message_delta`): the relay holds them, and all after
        them, until the request is settled, so a notice can still go before them."""
        return False

    def opens_output(self, payload: Mapping[str, Any]) -> bool:
        """Whether this stream event opens an output part (an Anthropic content block), so the
        relay knows the index a notice's own part takes."""
        return False

    def with_notice(
        self, text: str, model: str, request_id: str, closing: bytes, parts: int
    ) -> bytes:
        """The stream's held `closing` events with an event appending `text` before them (`parts`
        output parts opened so far); `closing` alone where the shape has no room."""
        return closing


def client_wants_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def sse_event(payload: object, event: str | None = None) -> bytes:
    """One SSE event; `event` names it (the Responses and Anthropic streams name theirs)."""
    data = b"data: " + orjson.dumps(payload) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


def event_data(event: bytes) -> bytes:
    """The payload of one SSE event: its `data:` lines joined."""
    return b"".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))


def model_and_cap(upstream_model: str | None, cap_field: str, cap: int | None) -> dict[str, Any]:
    """What every shape changes in a forwarded body: the model's alias, the completion cap."""
    changes: dict[str, Any] = {}
    if upstream_model is not None:
        changes["model"] = upstream_model
    if cap is not None:
        changes[cap_field] = cap
    return changes


def count(value: Any) -> int | None:
    """A token count as reported, or None when it is missing or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def openai_usage(payload: Mapping[str, Any], generates: bool) -> Usage | None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    # `prompt_tokens` includes the cache's reads and writes: OpenAI's details break them out
    # (`cached_tokens`, `cache_write_tokens`); for an Anthropic model LiteLLM adds both into
    # `prompt_tokens` and reports the write beside it as `cache_creation_input_tokens`.
    written = count(prompt_details.get("cache_write_tokens"))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion if generates else 0,
        cached_tokens=count(prompt_details.get("cached_tokens")) or 0,
        reasoning_tokens=count(completion_details.get("reasoning_tokens")) or 0,
        cache_write_tokens=written or count(usage.get("cache_creation_input_tokens")) or 0,
    )


def openai_text(payload: Mapping[str, Any]) -> Iterator[str]:
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if isinstance(text := choice.get("text"), str):
            yield text
        for part_name in ("delta", "message"):
            part = choice.get(part_name)
            if isinstance(part, dict):
                yield from _message_text(part)


def _message_text(message: Mapping[str, Any]) -> Iterator[str]:
    for field in ("content", "reasoning_content", "refusal"):
        if isinstance(value := message.get(field), str):
            yield value
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            for field in ("name", "arguments"):
                if isinstance(value := function.get(field), str):
                    yield value
