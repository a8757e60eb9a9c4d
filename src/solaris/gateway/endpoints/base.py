"""What the proxy asks of an API shape, and the OpenAI answers' defaults.

An `Endpoint` is a value: its methods are pure functions of the body or of the upstream's
payloads, so one instance serves every request. Unknown is never zero: a usage without
`prompt_tokens` or (for generating endpoints) `completion_tokens` reads as `None` in that field,
and the proxy completes it from its own count and marks the row estimated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from solaris.errors import ApiError, BadRequest
from solaris.metering import estimate

__all__ = ["Endpoint", "Usage", "count", "openai_text", "openai_usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """What the provider reported; `None` where it reported nothing."""

    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An OpenAI-shaped endpoint; a shape that differs overrides what differs."""

    name: str  # the usage row's `endpoint`
    path: str  # what clients call
    upstream_path: str  # what the upstream is called with, below its base URL
    input_field: str  # the field that must be present besides `model`
    generates: bool  # has a completion (so a completion cap, and maybe a stream)
    in_chat_block: bool = False  # a blocked LibreChat stream gets an assistant message

    def check(self, body: Mapping[str, Any]) -> None:
        """Refuse a body the upstream could not serve (`BadRequest`); `model` is checked."""
        if self.input_field not in body:
            raise BadRequest(f"Missing required parameter: '{self.input_field}'.")

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        raise NotImplementedError

    def completion_cap(self, body: Mapping[str, Any], default: int) -> int:
        return estimate.completion_cap(body, default) if self.generates else 0

    def usage(self, payload: Mapping[str, Any]) -> Usage | None:
        """The provider's usage in an answer or a stream chunk, if it reports one."""
        return openai_usage(payload, self.generates)

    def generated_text(self, payload: Mapping[str, Any]) -> Iterator[str]:
        """Text the model generated in an answer or chunk (for counting it offline)."""
        return openai_text(payload)

    def error_body(self, error: ApiError) -> bytes:
        """An error in this API's shape (OpenAI's, for these)."""
        return error.body()


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
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion if generates else 0,
        cached_tokens=count(prompt_details.get("cached_tokens")) or 0,
        reasoning_tokens=count(completion_details.get("reasoning_tokens")) or 0,
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
