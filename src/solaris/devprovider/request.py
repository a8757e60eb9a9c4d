"""What a request asks of the dev provider: its checked fields, and the Behaviour to answer with.

Behaviour defaults come from the CLI; a request may override any of them with a body field
`"dev_provider": {...}` holding the same names.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import orjson

from solaris.errors import error_body

Json = dict[str, Any]
UsageStyle = Literal["openai", "litellm"]
MAX_REPLY_TOKENS = 1_000_000  # the reply text is kept in memory per tokenizer
HOSTED_CALLS = (
    "web_search_call", "file_search_call", "image_generation_call", "code_interpreter_call",
)  # fmt: skip
HOSTED_CALLS_MAX = 16


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How to answer a generation request (chat, completions, embeddings).

    reply_tokens        tokens of reply text before the completion cap applies
    chunk_delay_s       sleep between stream events
    fail_status         answer this HTTP status with an OpenAI-shaped error body
    fail_rate           fail that fraction of requests with 500: generation request number n
                        (counted since start or the last DELETE /_dev/requests) fails when
                        floor(n * rate) > floor((n - 1) * rate), e.g. 0.5 fails every 2nd
    stall_s             sleep before the response headers, or with stall_after_chunks mid-stream
    stall_after_chunks  for streams: stall after this many data events instead
    omit_usage          report no usage at all, in JSON or stream
    cut_after_chunks    for streams: drop the connection after this many data events,
                        never sending `data: [DONE]`
    usage_style         "litellm": the stream's usage event has choices [{index 0, delta {}}]
                        and earlier events carry no `usage` key (how the LiteLLM proxy sends it)
    prompt_extra_tokens reported on top of the prompt's real count, as a provider that adds a
                        hidden system prompt (or counts with another tokenizer) would
    omit_completion_tokens
                        usage without `completion_tokens` (a half-reporting server)
    cache_write_tokens, cache_read_tokens
                        /v1/messages: prompt tokens reported as written to / read from the
                        prompt cache, on top of `input_tokens` (as Anthropic counts them);
                        chat and /v1/responses: reported as the prompt's
                        `cache_write_tokens` and `cached_tokens`, parts of its count (as
                        OpenAI counts them)
    reasoning_tokens    chat and /v1/responses: this much of the completion's count is
                        reported as `reasoning_tokens` (at most all of it)
    hosted_tool_calls   /v1/responses: output items of these types (web_search_call,
                        file_search_call, image_generation_call, code_interpreter_call), one
                        each, before the message, as OpenAI runs a hosted tool (at most
                        `max_tool_calls`); /v1/messages: its web_search_calls are the
                        searches of Anthropic's web search tool (at most its `max_uses`)
    """

    reply_tokens: int = 16
    chunk_delay_s: float = 0.0
    fail_status: int | None = None
    fail_rate: float = 0.0
    stall_s: float = 0.0
    stall_after_chunks: int | None = None
    omit_usage: bool = False
    cut_after_chunks: int | None = None
    usage_style: UsageStyle = "openai"
    prompt_extra_tokens: int = 0
    omit_completion_tokens: bool = False
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    hosted_tool_calls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Checked at run time too: overrides arrive as arbitrary JSON.
        _check(
            _is_count(self.reply_tokens) and self.reply_tokens <= MAX_REPLY_TOKENS,
            f"reply_tokens must be an integer in 0..{MAX_REPLY_TOKENS}",
        )
        _check(_is_seconds(self.chunk_delay_s), "chunk_delay_s must be a number >= 0")
        _check(
            self.fail_status is None
            or (_is_count(self.fail_status) and 400 <= self.fail_status <= 599),
            "fail_status must be null or an HTTP status 400..599",
        )
        _check(_is_seconds(self.fail_rate) and self.fail_rate <= 1, "fail_rate must be within 0..1")
        _check(_is_seconds(self.stall_s), "stall_s must be a number >= 0")
        _check(
            self.stall_after_chunks is None or _is_count(self.stall_after_chunks),
            "stall_after_chunks must be null or an integer >= 0",
        )
        _check(isinstance(self.omit_usage, bool), "omit_usage must be a boolean")
        _check(
            isinstance(self.omit_completion_tokens, bool),
            "omit_completion_tokens must be a boolean",
        )
        _check(
            self.cut_after_chunks is None or _is_count(self.cut_after_chunks),
            "cut_after_chunks must be null or an integer >= 0",
        )
        _check(self.usage_style in ("openai", "litellm"), "usage_style must be openai or litellm")
        _check(
            _is_count(self.prompt_extra_tokens) and self.prompt_extra_tokens <= MAX_REPLY_TOKENS,
            f"prompt_extra_tokens must be an integer in 0..{MAX_REPLY_TOKENS}",
        )
        _check(
            isinstance(self.hosted_tool_calls, list | tuple)
            and all(call in HOSTED_CALLS for call in self.hosted_tool_calls)
            and len(self.hosted_tool_calls) <= HOSTED_CALLS_MAX,
            f"hosted_tool_calls must be a list of at most {HOSTED_CALLS_MAX} of "
            + ", ".join(HOSTED_CALLS),
        )
        for cache in (self.cache_write_tokens, self.cache_read_tokens, self.reasoning_tokens):
            _check(
                _is_count(cache) and cache <= MAX_REPLY_TOKENS,
                f"cache and reasoning tokens must be integers in 0..{MAX_REPLY_TOKENS}",
            )

    def fails(self, n: int) -> bool:
        """Whether the n-th counted request (1-based) falls on the fail_rate pattern."""
        return math.floor(n * self.fail_rate) > math.floor((n - 1) * self.fail_rate)


_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_FIELDS = frozenset(field.name for field in dataclasses.fields(Behaviour))


def with_overrides(defaults: Behaviour, body: Json) -> Behaviour:
    """`defaults` with the body's `dev_provider` object applied."""
    overrides = body.get("dev_provider")
    if overrides is None:
        return defaults
    try:
        if not isinstance(overrides, dict):
            raise ValueError("expected an object")
        unknown = overrides.keys() - _FIELDS
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}")
        return dataclasses.replace(defaults, **overrides)
    except ValueError as exc:
        raise Invalid(error(f"Invalid 'dev_provider': {exc}.", "dev_provider")) from exc


class Invalid(Exception):
    """A request OpenAI would refuse with 400; `body` is the error envelope to answer with."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.body = body


def error(message: str, param: str | None = None, code: str | None = None) -> bytes:
    return error_body(message, "invalid_request_error", code, param)


def loads(raw: bytes) -> object:
    """The parsed body, or None when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def json_object(parsed: object) -> Json:
    if not isinstance(parsed, dict):
        raise Invalid(error(_BAD_JSON))
    return parsed


def model(body: Json) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise Invalid(error("you must provide a model parameter"))
    return name


def required(body: Json, key: str, within: str = "") -> object:
    """`body[key]`, present and not null; `within` prefixes the param named in the error."""
    value = body.get(key)
    if value is None:
        param = f"{within}.{key}" if within else key
        raise Invalid(
            error(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
        )
    return value


def check_messages(messages: object) -> None:
    """The checks OpenAI makes of `messages` before anything else."""
    if not isinstance(messages, list) or not messages:
        raise Invalid(error("Invalid 'messages': expected a non-empty array.", "messages"))
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise Invalid(error(f"Invalid type for '{param}': expected an object.", param))
        role = required(message, "role", param)
        if role not in _ROLES:
            raise Invalid(
                error(
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                    "'user', 'function', 'tool', and 'developer'.",
                    f"{param}.role",
                    "invalid_value",
                )
            )


def choices(body: Json) -> int:
    n: object = body.get("n")
    if n is None:
        return 1
    if not is_int(n) or not 1 <= n <= 128:
        raise Invalid(error("Invalid 'n': expected an integer in 1..128.", "n"))
    return n


def stream_options(body: Json) -> tuple[bool, bool]:
    """(include_usage, include_obfuscation) of a stream request."""
    options = body.get("stream_options")
    if options is None:
        return False, True
    if body.get("stream") is not True:
        raise Invalid(
            error(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        )
    if not isinstance(options, dict):
        raise Invalid(error("Invalid 'stream_options': expected an object.", "stream_options"))
    return options.get("include_usage") is True, options.get("include_obfuscation") is not False


_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)
EMBEDDING_INPUTS_MAX = 2048


def embedding_inputs(given: object) -> list[object]:
    """The inputs of an embeddings request, one per vector, as OpenAI accepts them: a
    non-empty string, or a non-empty array of non-empty strings, of token ids, or of non-empty
    arrays of token ids (at most 2048 inputs). Anything else gets OpenAI's one message."""
    if isinstance(given, str) and given:
        return [given]
    if not isinstance(given, list) or not given:
        raise Invalid(error(_INVALID_INPUT))
    if all(is_int(item) for item in given):
        return [given]  # one input, as token ids
    if len(given) <= EMBEDDING_INPUTS_MAX and (
        all(isinstance(item, str) and item for item in given)
        or all(
            isinstance(item, list) and item and all(is_int(token) for token in item)
            for item in given
        )
    ):
        return list(given)
    raise Invalid(error(_INVALID_INPUT))


def is_batch(value: object) -> TypeGuard[list[object]]:
    """A list of prompts or inputs, as opposed to a single one given as token ids."""
    return isinstance(value, list) and not (value and is_int(value[0]))


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is_count(value: object) -> bool:
    return is_int(value) and value >= 0


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
