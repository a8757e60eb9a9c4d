"""The SSE relay on its own: what reaches the client and what usage it reads."""

from __future__ import annotations

import orjson

from solaris.gateway.endpoints import ENDPOINTS, Usage
from solaris.gateway.relay import SseRelay

CHAT = ENDPOINTS["/v1/chat/completions"]


def event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(text: str, usage: object = None) -> bytes:
    return event({"choices": [{"index": 0, "delta": {"content": text}}], "usage": usage})


USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 3,
    "total_tokens": 13,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 1},
}
USAGE_CHUNK = event({"choices": [], "usage": USAGE})
DONE = b"data: [DONE]\n\n"


def relay_all(relay: SseRelay, pieces: list[bytes]) -> bytes:
    """What the client receives: the relayed events, then [DONE] once the proxy has settled."""
    relayed = b"".join(relay.feed(piece) for piece in pieces)
    assert b"[DONE]" not in relayed, "[DONE] leaves only after the request is settled"
    return relayed + (DONE if relay.done else b"")


def test_done_is_held_back_until_the_request_is_settled() -> None:
    relay = SseRelay(CHAT, hide_usage=False)
    assert relay.feed(chunk("a") + DONE) == chunk("a")
    assert relay.done


def test_events_pass_through_as_received_even_when_split_anywhere() -> None:
    stream = chunk("Olá") + chunk(", mundo") + USAGE_CHUNK + DONE
    for size in (1, 7, 64, len(stream)):
        relay = SseRelay(CHAT, hide_usage=False)
        out = relay_all(relay, [stream[i : i + size] for i in range(0, len(stream), size)])
        assert out == stream
        assert relay.usage == Usage(10, 3, cached_tokens=4, reasoning_tokens=1)


def test_usage_chunk_is_removed_for_clients_that_did_not_ask() -> None:
    relay = SseRelay(CHAT, hide_usage=True)
    out = relay_all(relay, [chunk("a") + USAGE_CHUNK, DONE])
    assert out == chunk("a") + DONE
    assert relay.usage is not None and relay.usage.prompt_tokens == 10


def test_litellm_style_usage_on_a_chunk_with_choices_loses_only_its_usage() -> None:
    litellm = event({"choices": [{"index": 0, "delta": {}}], "usage": USAGE})
    relay = SseRelay(CHAT, hide_usage=True)
    out = relay_all(relay, [chunk("a"), litellm, DONE])
    assert out == chunk("a") + event({"choices": [{"index": 0, "delta": {}}]}) + DONE
    assert relay.usage is not None and relay.usage.completion_tokens == 3


def test_crlf_streams_are_understood() -> None:
    relay = SseRelay(CHAT, hide_usage=True)
    out = relay_all(relay, [(chunk("x") + USAGE_CHUNK + DONE).replace(b"\n", b"\r\n")])
    assert out == chunk("x") + DONE
    assert relay.usage is not None


def test_without_usage_the_generated_text_is_recovered_for_counting() -> None:
    relay = SseRelay(CHAT, hide_usage=True)
    tool = event(
        {"choices": [{"delta": {"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}}]}
    )
    relay_all(relay, [chunk("Bom "), chunk("dia"), tool, b"data: {broken", b"\n\n", DONE])
    assert relay.usage is None
    assert relay.text() == "Bom diaf{}"


def test_a_partial_event_is_held_until_it_is_complete() -> None:
    relay = SseRelay(CHAT, hide_usage=False)
    whole = chunk("abc")
    assert relay.feed(whole[:10]) == b""
    assert relay.feed(whole[10:]) == whole
