"""The dev provider, served for real by uvicorn and driven by the openai SDK and httpx."""

from __future__ import annotations

import base64
import math
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import orjson
import pytest
import uvicorn

from solaris.devprovider import Behaviour
from solaris.devprovider.server import server_config
from solaris.devprovider.shapes import reply_pieces
from solaris.metering.estimate import (
    chat_prompt_tokens,
    completions_prompt_tokens,
    embeddings_input_tokens,
)
from solaris.metering.tokenizer import count_tokens, get_encoding
from tests.servers import free_port, wait_for

MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours.", "name": "ada"},
]


@contextmanager
def serving(defaults: Behaviour) -> Iterator[str]:
    """The dev provider as `run` configures it, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(server_config("127.0.0.1", port, defaults))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for("the dev provider to start", lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(Behaviour()) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-dev", max_retries=0) as sdk:
        yield sdk


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, **fields}


def sse(url: str, body: dict[str, Any]) -> list[str]:
    """The data payloads of a stream, `[DONE]` included."""
    response = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\n")
    events = response.text.removesuffix("\n\n").split("\n\n")
    assert all(event.startswith("data: ") for event in events)
    return [event.removeprefix("data: ") for event in events]


def test_chat_usage_is_openai_prompt_count_plus_reply(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(**chat_body())
    choice = completion.choices[0]
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    content = choice.message.content or ""
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == chat_prompt_tokens(chat_body())
    assert usage.completion_tokens == 16 == count_tokens(MODEL, content)
    assert usage.total_tokens == usage.prompt_tokens + 16
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_reply_text_recounts_to_its_token_count() -> None:
    for name in ("cl100k_base", "o200k_base"):
        encoding = get_encoding(name)
        for count in range(301):
            assert len(encoding.encode("".join(reply_pieces(encoding, count)))) == count


def test_max_tokens_cuts_the_reply(client: openai.OpenAI, url: str) -> None:
    for cap in ({"max_tokens": 5}, {"max_completion_tokens": 5, "max_tokens": 9}):
        completion = client.chat.completions.create(**chat_body(**cap))
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage and completion.usage.completion_tokens == 5
    completion = client.chat.completions.create(**chat_body(n=2, max_tokens=3))
    assert [choice.finish_reason for choice in completion.choices] == ["length", "length"]
    assert completion.usage and completion.usage.completion_tokens == 6
    events = sse(url, chat_body(stream=True, max_tokens=2))
    finish = orjson.loads(events[-2])["choices"][0]
    assert finish == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}


def test_stream_with_include_usage_ends_with_a_usage_chunk(client: openai.OpenAI, url: str) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    chunks = list(client.chat.completions.create(**body))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == chat_prompt_tokens(body)
    assert chunks[-1].usage.completion_tokens == len(chunks) - 3 == 16
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
    assert count_tokens(MODEL, text) == 16
    events = sse(url, body)
    assert events[-1] == "[DONE]"
    assert all(orjson.loads(event)["usage"] is None for event in events[:-2])


def test_stream_without_include_usage_has_no_usage(url: str) -> None:
    events = sse(url, chat_body(stream=True))
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert len(chunks) == 16 + 2
    assert not any("usage" in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_usage_style_litellm(client: openai.OpenAI, url: str) -> None:
    litellm = {"usage_style": "litellm", "reply_tokens": 3}
    body = chat_body(stream=True, stream_options={"include_usage": True})
    chunks = [orjson.loads(event) for event in sse(url, {**body, "dev_provider": litellm})[:-1]]
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}}]
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in chunk for chunk in chunks[:-1])
    stream = client.chat.completions.create(**body, extra_body={"dev_provider": litellm})
    usage = list(stream)[-1].usage
    assert usage and usage.total_tokens == chat_prompt_tokens(body) + 3


def test_omit_usage(client: openai.OpenAI, url: str) -> None:
    extra = {"dev_provider": {"omit_usage": True}}
    assert client.chat.completions.create(**chat_body(), extra_body=extra).usage is None
    raw = httpx.post(f"{url}/v1/chat/completions", json=chat_body(**extra)).json()
    assert "usage" not in raw
    body = chat_body(stream=True, stream_options={"include_usage": True}, **extra)
    chunks = [orjson.loads(event) for event in sse(url, body)[:-1]]
    assert not any("usage" in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_fail_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            **chat_body(), extra_body={"dev_provider": {"fail_status": 429}}
        )
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "requests"
    with pytest.raises(openai.InternalServerError) as server_error:
        client.embeddings.create(
            model="text-embedding-3-small",
            input="x",
            extra_body={"dev_provider": {"fail_status": 500}},
        )
    assert server_error.value.type == "server_error"


def test_fail_rate_fails_every_kth_request(client: openai.OpenAI, url: str) -> None:
    httpx.delete(f"{url}/_dev/requests")
    outcomes = []
    for _ in range(6):
        try:
            client.chat.completions.create(
                **chat_body(), extra_body={"dev_provider": {"fail_rate": 0.5}}
            )
            outcomes.append("ok")
        except openai.InternalServerError:
            outcomes.append("500")
    assert outcomes == ["ok", "500"] * 3


def test_cut_after_chunks_breaks_the_stream(client: openai.OpenAI, url: str) -> None:
    cut = {"cut_after_chunks": 3}
    lines: list[str] = []
    body = chat_body(stream=True, dev_provider=cut)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            lines.extend(response.iter_lines())
    assert len([line for line in lines if line.startswith("data: ")]) == 3
    stream = client.chat.completions.create(
        **chat_body(stream=True), extra_body={"dev_provider": cut}
    )
    with pytest.raises(openai.APIConnectionError):
        list(stream)


def test_stall_before_headers_times_a_client_out(url: str) -> None:
    body = chat_body(dev_provider={"stall_s": 10})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=0.3)
    assert time.monotonic() - started < 2
    assert httpx.post(f"{url}/v1/chat/completions", json=chat_body()).status_code == 200


def test_stall_mid_stream_and_chunk_delay(url: str) -> None:
    body = chat_body(
        stream=True, dev_provider={"reply_tokens": 4, "stall_after_chunks": 2, "stall_s": 0.3}
    )
    arrivals = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 4 + 3
    assert arrivals[2] - arrivals[1] >= 0.25
    assert arrivals[-1] - arrivals[2] < 0.2
    started = time.monotonic()
    events = sse(
        url, chat_body(stream=True, dev_provider={"reply_tokens": 4, "chunk_delay_s": 0.04})
    )
    assert len(events) == 7
    assert time.monotonic() - started >= 6 * 0.04


def test_completions(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert completion.object == "text_completion"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage and completion.usage.prompt_tokens == completions_prompt_tokens(
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}
    )
    # Without max_tokens the legacy endpoint stops at 16 tokens, as OpenAI's does.
    long = client.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt=["a", "b"],
        extra_body={"dev_provider": {"reply_tokens": 40}},
    )
    assert [choice.finish_reason for choice in long.choices] == ["length", "length"]
    assert long.usage and long.usage.completion_tokens == 32
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hi",
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(chunk.choices[0].text for chunk in chunks[:-1])
    assert completion.choices[0].text.startswith(streamed)
    assert count_tokens("gpt-3.5-turbo-instruct", streamed) == 4
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage
    assert chunks[-1].usage.completion_tokens == 4


def test_embeddings(client: openai.OpenAI, url: str) -> None:
    # The SDK asks for base64 unless told otherwise.
    result = client.embeddings.create(model="text-embedding-3-small", input=["red", "green"])
    vectors = [item.embedding for item in result.data]
    assert [len(vector) for vector in vectors] == [8, 8]
    assert all(math.isclose(sum(x * x for x in vector), 1, rel_tol=1e-5) for vector in vectors)
    assert vectors[0] != vectors[1]
    body = {"model": "text-embedding-3-small", "input": ["red", "green"]}
    assert result.usage.prompt_tokens == embeddings_input_tokens(body)
    floats = httpx.post(f"{url}/v1/embeddings", json=body).json()["data"][0]["embedding"]
    assert floats == pytest.approx(vectors[0], rel=1e-6)
    packed = httpx.post(f"{url}/v1/embeddings", json={**body, "encoding_format": "base64"})
    decoded = struct.unpack("<8f", base64.b64decode(packed.json()["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(floats, rel=1e-6)


def test_models_and_health(client: openai.OpenAI, url: str) -> None:
    assert {model.id for model in client.models.list()} >= {"gpt-4o-mini", "text-embedding-3-small"}
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1]", None),
        (orjson.dumps({"messages": MESSAGES}), None),
        (orjson.dumps({"model": MODEL}), "messages"),
        (orjson.dumps({"model": MODEL, "messages": [{"content": "x"}]}), "messages[0].role"),
        (orjson.dumps(chat_body(stream_options={"include_usage": True})), "stream_options"),
        (orjson.dumps(chat_body(dev_provider={"reply_token": 3})), "dev_provider"),
        (orjson.dumps(chat_body(dev_provider={"fail_rate": 2})), "dev_provider"),
    ],
)
def test_bad_requests_get_openai_400s(url: str, body: bytes, param: str | None) -> None:
    response = httpx.post(f"{url}/v1/chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_unknown_route_is_openai_404(url: str) -> None:
    response = httpx.get(f"{url}/v1/chat/completions")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/chat/completions)"


def test_requests_are_recorded(client: openai.OpenAI, url: str) -> None:
    assert httpx.delete(f"{url}/_dev/requests").status_code == 200
    client.chat.completions.create(
        **chat_body(), extra_headers={"x-trace": "t1"}, extra_body={"user_tier": "gold"}
    )
    recorded = httpx.get(f"{url}/_dev/requests").json()
    assert len(recorded) == 1
    assert recorded[0]["method"] == "POST"
    assert recorded[0]["path"] == "/v1/chat/completions"
    assert recorded[0]["headers"]["authorization"] == "Bearer sk-dev"
    assert recorded[0]["headers"]["x-trace"] == "t1"
    assert recorded[0]["body"] == chat_body(user_tier="gold")
    httpx.delete(f"{url}/_dev/requests")
    assert httpx.get(f"{url}/_dev/requests").json() == []


def test_server_defaults_apply_until_a_request_overrides_them() -> None:
    with serving(Behaviour(fail_status=503, reply_tokens=2)) as url:
        assert httpx.post(f"{url}/v1/chat/completions", json=chat_body()).status_code == 503
        ok = httpx.post(
            f"{url}/v1/chat/completions", json=chat_body(dev_provider={"fail_status": None})
        )
        assert ok.json()["usage"]["completion_tokens"] == 2


def test_behaviour_rejects_bad_values() -> None:
    for bad in (
        {"fail_rate": 1.5},
        {"fail_status": 200},
        {"usage_style": "x"},
        {"reply_tokens": -1},
    ):
        with pytest.raises(ValueError):
            Behaviour(**bad)
