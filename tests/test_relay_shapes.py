"""The SSE relay on Responses and Anthropic streams: passed through as received, usage read."""

from __future__ import annotations

import orjson

from solaris.errors import ServiceUnavailable
from solaris.gateway.endpoints import ENDPOINTS, Usage
from solaris.gateway.relay import SseRelay

RESPONSES = ENDPOINTS["/v1/responses"]
MESSAGES = ENDPOINTS["/v1/messages"]


def event(name: str, payload: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def delta(text: str) -> bytes:
    return event(
        "response.output_text.delta", {"type": "response.output_text.delta", "delta": text}
    )


RESPONSES_USAGE = {
    "input_tokens": 20,
    "input_tokens_details": {"cached_tokens": 8},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 25,
}
RESPONSES_STREAM = (
    event("response.created", {"type": "response.created", "response": {"usage": None}})
    + delta("Bom ")
    + delta("dia")
    + event("response.output_text.done", {"type": "response.output_text.done", "text": "Bom dia"})
    + event(
        "response.completed",
        {"type": "response.completed", "response": {"usage": RESPONSES_USAGE}},
    )
)


def test_a_responses_stream_passes_untouched_and_its_usage_is_read() -> None:
    for size in (1, 13, 100, len(RESPONSES_STREAM)):
        relay = SseRelay(RESPONSES, hide_usage=RESPONSES.hides_usage({"stream": True}))
        pieces = [RESPONSES_STREAM[i : i + size] for i in range(0, len(RESPONSES_STREAM), size)]
        forwarded = b"".join(relay.feed(piece) for piece in pieces)
        # response.completed waits until the request is settled (a notice may go before it)
        assert relay.closing.startswith(b"event: response.completed\n")
        assert forwarded + relay.closing == RESPONSES_STREAM
        assert relay.usage == Usage(20, 5, cached_tokens=8, reasoning_tokens=2)
        assert not relay.done, "a Responses stream has no [DONE]"


def test_a_cut_responses_stream_counts_its_deltas_not_the_done_events() -> None:
    relay = SseRelay(RESPONSES, hide_usage=False)
    cut = RESPONSES_STREAM.split(b"event: response.completed")[0]
    relay.feed(cut)
    assert relay.usage is None
    assert relay.text() == "Bom dia"


def item_done(kind: str) -> bytes:
    payload: dict[str, object] = {"type": "response.output_item.done", "item": {"type": kind}}
    return event("response.output_item.done", payload)


def test_hosted_tool_calls_are_counted_once_each_from_items_or_the_finished_response() -> None:
    searches = item_done("web_search_call") + item_done("web_search_call")
    finished = {
        "usage": RESPONSES_USAGE,
        "output": [{"type": "web_search_call"}, {"type": "web_search_call"}, {"type": "message"}],
    }
    completed = event("response.completed", {"type": "response.completed", "response": finished})
    relay = SseRelay(RESPONSES, hide_usage=False)
    stream = searches + item_done("message") + item_done("file_search_call") + completed
    assert relay.feed(stream) + relay.closing == stream, "response.completed waits to be settled"
    assert relay.tool_calls == {"web_search_call": 2, "file_search_call": 1}
    cut = SseRelay(RESPONSES, hide_usage=False)
    cut.feed(searches + delta("Bom"))
    assert cut.tool_calls == {"web_search_call": 2}, "a cut stream still pays its searches"
    assert RESPONSES.tool_calls(finished) == {"web_search_call": 2}
    assert MESSAGES.tool_calls(finished) == {}


def anthropic(payload: dict[str, object]) -> bytes:
    return event(str(payload["type"]), payload)


START = anthropic(
    {
        "type": "message_start",
        "message": {
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 3,
                "cache_read_input_tokens": 4,
                "output_tokens": 1,
            }
        },
    }
)
TEXT = anthropic(
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Olá"}}
)
FINAL = anthropic(
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 6}}
)


def test_anthropic_usage_is_merged_from_message_start_and_message_delta() -> None:
    relay = SseRelay(MESSAGES, hide_usage=MESSAGES.hides_usage({"stream": True}))
    stream = START + TEXT + FINAL + anthropic({"type": "message_stop"})
    assert relay.feed(stream) == START + TEXT, "message_delta on waits for the settlement"
    assert relay.closing == FINAL + anthropic({"type": "message_stop"})
    assert relay.parts == 0, "TEXT opened no block"
    assert relay.usage == Usage(17, 6, cached_tokens=4, cache_write_tokens=3)


def test_an_anthropic_stream_cut_after_message_start_knows_only_its_prompt() -> None:
    relay = SseRelay(MESSAGES, hide_usage=False)
    relay.feed(START + TEXT + TEXT)
    assert relay.usage == Usage(17, None, cached_tokens=4, cache_write_tokens=3)
    assert relay.text() == "OláOlá"


def test_errors_take_each_api_s_shape() -> None:
    error = ServiceUnavailable("down")
    assert orjson.loads(MESSAGES.error_body(error)) == {
        "type": "error",
        "error": {"type": "api_error", "message": "down"},
    }
    assert MESSAGES.stream_error(error).startswith(b"event: error\ndata: ")
    responses_event = RESPONSES.stream_error(error)
    assert responses_event.startswith(b"event: error\ndata: ")
    payload = orjson.loads(responses_event.split(b"data: ", 1)[1])
    assert (payload["type"], payload["message"]) == ("error", "down")


def test_anthropic_closing_is_held_without_usage_too_and_blocks_are_counted() -> None:
    """Where a notice's block would go: after the blocks opened, before message_delta."""
    block = anthropic(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    bare = anthropic({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})
    stop = anthropic({"type": "message_stop"})
    relay = SseRelay(MESSAGES, hide_usage=False)
    assert relay.feed(START + block + TEXT + bare + stop) == START + block + TEXT
    assert relay.closing == bare + stop and relay.parts == 1


def test_a_failed_response_without_usage_is_marked_failed_and_counted() -> None:
    failed = event(
        "response.failed",
        {"type": "response.failed", "response": {"status": "failed", "usage": None}},
    )
    relay = SseRelay(RESPONSES, hide_usage=False)
    stream = delta("Bom ") + failed
    assert relay.feed(stream) + relay.closing == stream
    assert relay.closing == failed
    assert relay.finish == "failed" and relay.usage is None
    assert relay.text() == "Bom "


def test_an_incomplete_response_keeps_its_usage_and_says_so() -> None:
    incomplete = event(
        "response.incomplete",
        {
            "type": "response.incomplete",
            "response": {"status": "incomplete", "usage": RESPONSES_USAGE},
        },
    )
    relay = SseRelay(RESPONSES, hide_usage=False)
    relay.feed(delta("x") + incomplete)
    assert relay.finish == "incomplete" and relay.usage is not None
