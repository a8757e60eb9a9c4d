"""POST /v1/messages through the gateway, as the anthropic SDK sees it.

Runs against the embedded default (SQLite) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam

from solaris.links import verify_link
from solaris.metering.estimate_apis import messages_prompt_tokens
from tests.conftest import SERVICE_KEY, Gateway
from tests.test_proxy import provider_requests

MODEL = "claude-sonnet-4-5"
SYSTEM = "You are terse."
MESSAGES: list[MessageParam] = [
    {"role": "user", "content": "Olá! Quanto é 2 + 2?"},
    {"role": "assistant", "content": [{"type": "text", "text": "4."}]},
    {"role": "user", "content": [{"type": "text", "text": "E 3 + 3?"}]},
]
PROMPT_TOKENS = messages_prompt_tokens(
    {"model": MODEL, "system": SYSTEM, "messages": MESSAGES, "max_tokens": 64}
)
HELD_PROMPT = math.ceil(PROMPT_TOKENS * 1.3)  # claude-*: a stand-in tokenizer, held with margin
SECRET = b"test-secret-key-0123456789abcdef"


def sdk(gateway: Gateway, user: str | None) -> anthropic.Anthropic:
    headers = {} if user is None else {"X-LibreChat-User-Id": user}
    return anthropic.Anthropic(
        api_key=SERVICE_KEY, base_url=gateway.url, default_headers=headers, max_retries=0
    )


@pytest.fixture
def api(gateway: Gateway, user: str) -> Iterator[anthropic.Anthropic]:
    with sdk(gateway, user) as client:
        yield client


def body(stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "system": SYSTEM,
        "messages": MESSAGES,
        "max_tokens": 64,
        "stream": stream,
        **extra,
    }


def headers(user: str) -> dict[str, str]:
    return {
        "x-api-key": SERVICE_KEY,
        "anthropic-version": "2023-06-01",
        "X-LibreChat-User-Id": user,
    }


def test_a_message_is_charged_what_the_provider_reported_cache_included(
    gateway: Gateway, user: str, api: anthropic.Anthropic, provider: str
) -> None:
    gateway.fund(user, 10_000)
    cache = {"cache_write_tokens": 7, "cache_read_tokens": 11}
    answer = api.messages.create(
        model=MODEL,
        system=SYSTEM,
        messages=MESSAGES,
        max_tokens=64,
        metadata={"user_id": user},
        extra_body={"dev_provider": cache},
    )
    assert answer.content[0].type == "text" and answer.content[0].text.startswith("This is")
    usage = answer.usage
    assert (usage.input_tokens, usage.cache_creation_input_tokens) == (PROMPT_TOKENS, 7)
    [row] = gateway.usage_rows(user)
    assert row["endpoint"] == "messages" and row["estimated"] is False
    assert row["prompt_tokens"] == PROMPT_TOKENS + 7 + 11 and row["cached_tokens"] == 11
    assert row["completion_tokens"] == usage.output_tokens
    assert row["billable"] == PROMPT_TOKENS + 18 + usage.output_tokens
    assert gateway.user_row(user)["balance"] == 10_000 - row["billable"]
    forwarded = [
        r
        for r in provider_requests(provider)
        if ((r["body"] or {}).get("metadata") or {}).get("user_id") == user
    ]
    assert forwarded[-1]["path"] == "/v1/messages"
    assert forwarded[-1]["headers"]["anthropic-version"], "the SDK's API version goes upstream"
    assert forwarded[-1]["headers"]["authorization"] == "Bearer sk-upstream-test"
    assert "x-api-key" not in forwarded[-1]["headers"], "the client's key stays here"


def test_a_streamed_message_is_charged_from_message_start_and_message_delta(
    gateway: Gateway, user: str, api: anthropic.Anthropic
) -> None:
    gateway.fund(user, 10_000)
    extra = {"dev_provider": {"reply_tokens": 30, "cache_read_tokens": 5}}
    with api.messages.stream(
        model=MODEL, system=SYSTEM, messages=MESSAGES, max_tokens=64, extra_body=extra
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("This is a deterministic reply")
    assert final.usage.output_tokens == 30
    [row] = gateway.usage_rows(user)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS + 5, 30)
    assert row["cached_tokens"] == 5 and row["estimated"] is False
    assert row["billable"] == PROMPT_TOKENS + 5 + 30


def test_the_user_comes_from_metadata_and_bearer_keys_work_too(gateway: Gateway, user: str) -> None:
    gateway.fund(user, 10_000)
    with sdk(gateway, None) as client:
        client.messages.create(
            model=MODEL, messages=MESSAGES, max_tokens=16, metadata={"user_id": user}
        )
    bearer = httpx.post(
        gateway.url + "/v1/messages",
        json=body(False),
        headers={"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user},
    )
    assert bearer.status_code == 200, bearer.text
    assert len(gateway.usage_rows(user)) == 2


def test_a_small_balance_lowers_max_tokens(gateway: Gateway, user: str, provider: str) -> None:
    gateway.fund(user, HELD_PROMPT + 30)
    answer = httpx.post(
        gateway.url + "/v1/messages",
        json=body(
            False, max_tokens=1000, metadata={"user_id": user}, dev_provider={"reply_tokens": 500}
        ),
        headers=headers(user),
    ).json()
    forwarded = [
        r
        for r in provider_requests(provider)
        if ((r["body"] or {}).get("metadata") or {}).get("user_id") == user
    ]
    assert forwarded[-1]["body"]["max_tokens"] == 30
    assert answer["stop_reason"] == "max_tokens" and answer["usage"]["output_tokens"] == 30
    assert gateway.user_row(user)["balance"] == HELD_PROMPT - PROMPT_TOKENS


@pytest.mark.parametrize(
    ("room", "thinking"),
    [
        (1500, {"type": "enabled", "budget_tokens": 1499}),
        (600, {"type": "disabled"}),
    ],
    ids=["budget-under-the-cap", "no-room-to-think"],
)
def test_a_lowered_max_tokens_takes_the_thinking_budget_under_it(
    gateway: Gateway, user: str, provider: str, room: int, thinking: dict[str, Any]
) -> None:
    """LibreChat's Anthropic endpoint thinks by default (budget 2000): a cap lowered under the
    budget would make Anthropic refuse the request (budget_tokens must be < max_tokens, >= 1024)."""
    gateway.fund(user, HELD_PROMPT + room)
    wanted = {"type": "enabled", "budget_tokens": 2000}
    answer = httpx.post(
        gateway.url + "/v1/messages",
        json=body(False, max_tokens=64000, thinking=wanted, metadata={"user_id": user}),
        headers=headers(user),
    )
    assert answer.status_code == 200, answer.text
    forwarded = [
        r
        for r in provider_requests(provider)
        if ((r["body"] or {}).get("metadata") or {}).get("user_id") == user
    ]
    assert forwarded[-1]["body"]["max_tokens"] == room
    assert forwarded[-1]["body"]["thinking"] == thinking


def test_the_stream_that_crosses_80_percent_ends_with_a_notice_block(
    gateway: Gateway, user: str, api: anthropic.Anthropic
) -> None:
    """SOLARIS_ALERT_CHAT_NOTICE (on by default): a text block of its own before the held
    message_delta; the SDK's message has both blocks and the provider's usage."""
    gateway.fund(user, HELD_PROMPT + 40)
    assert PROMPT_TOKENS + 35 >= 0.8 * (HELD_PROMPT + 40), "35 tokens of reply cross 80%"
    with api.messages.stream(
        model=MODEL,
        system=SYSTEM,
        messages=MESSAGES,
        max_tokens=64,
        extra_body={"dev_provider": {"reply_tokens": 35}},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    left = gateway.user_row(user)["balance"]
    notice = f"\n\n⚠️ Você já usou 80% dos seus tokens deste período (restam {left})."
    assert text.startswith("This is a deterministic reply") and text.endswith(notice)
    assert [block.type for block in final.content] == ["text", "text"]
    assert final.content[1].type == "text" and final.content[1].text == notice
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 35
    [row] = gateway.usage_rows(user)
    assert row["completion_tokens"] == 35 and row["estimated"] is False


def test_a_blocked_stream_is_an_anthropic_stream_with_a_buy_link(
    gateway: Gateway, user: str, api: anthropic.Anthropic
) -> None:
    gateway.fund(user, 1)
    with api.messages.stream(model=MODEL, messages=MESSAGES, max_tokens=64) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn"
    assert "saldo de tokens acabou" in text
    url = urlparse(text.split("](", 1)[1].split(")", 1)[0])
    assert (url.netloc, url.path) == ("chat.example.com", "/portal/buy")
    assert verify_link(SECRET, parse_qs(url.query)["t"][0]).user_id == gateway.user_row(user)["id"]
    assert gateway.usage_rows(user) == []


def test_a_blocked_call_gets_a_402_in_anthropics_shape(
    gateway: Gateway, user: str, api: anthropic.Anthropic
) -> None:
    gateway.fund(user, 1)
    with pytest.raises(anthropic.APIStatusError) as raised:
        api.messages.create(model=MODEL, messages=MESSAGES, max_tokens=64)
    assert raised.value.status_code == 402
    error = raised.value.response.json()
    assert error["type"] == "error" and error["error"]["type"] == "billing_error"
    assert "Saldo de tokens insuficiente" in error["error"]["message"]
    assert gateway.usage_rows(user) == []


def test_a_balance_held_by_a_running_stream_is_a_429_in_anthropics_shape(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, HELD_PROMPT + 64 + 10)  # one request's hold, and a little
    slow = body(True, dev_provider={"reply_tokens": 60, "chunk_delay_s": 0.05})
    started = threading.Event()

    def stream() -> None:
        with httpx.stream(
            "POST", gateway.url + "/v1/messages", json=slow, headers=headers(user)
        ) as r:
            for line in r.iter_lines():
                if line.startswith("event: content_block_delta"):
                    started.set()

    runner = threading.Thread(target=stream)
    runner.start()
    assert started.wait(10)
    second = httpx.post(gateway.url + "/v1/messages", json=body(False), headers=headers(user))
    runner.join(30)
    assert second.status_code == 429 and "retry-after" in second.headers
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert len(gateway.usage_rows(user)) == 1


def test_a_cut_stream_is_charged_its_prompt_and_the_deltas_it_carried(
    gateway: Gateway, user: str
) -> None:
    """message_start, content_block_start and ping open the stream; then three deltas."""
    gateway.fund(user, 10_000)
    cut = body(True, dev_provider={"cut_after_chunks": 6})
    sent = httpx.post(gateway.url + "/v1/messages", json=cut, headers=headers(user))
    assert sent.status_code == 200
    last = sent.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ")
    assert json.loads(last.split("data: ", 1)[1])["error"]["type"] == "api_error"
    [row] = gateway.usage_rows(user)
    assert row["status"] == "upstream_cut" and row["estimated"] is True
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, 3)


def test_a_client_that_hangs_up_is_charged_once_for_what_was_generated(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 10_000)
    slow = body(True, max_tokens=400, dev_provider={"reply_tokens": 400, "chunk_delay_s": 0.01})
    deltas = 0
    with httpx.stream(
        "POST", gateway.url + "/v1/messages", json=slow, headers=headers(user)
    ) as response:
        for line in response.iter_lines():
            deltas += line == "event: content_block_delta"
            if deltas == 5:
                break
    [row] = gateway.usage_rows(user)
    assert row["status"] == "client_disconnected" and row["estimated"] is True
    assert row["prompt_tokens"] == PROMPT_TOKENS, "message_start told the prompt"
    assert 5 <= row["completion_tokens"] < 400


async def _fire(url: str, user: str, total: int, in_flight: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    gate = asyncio.Semaphore(in_flight)
    request = body(True, max_tokens=16, dev_provider={"chunk_delay_s": 0.005})

    async def one(http: httpx.AsyncClient) -> None:
        async with gate, http.stream("POST", url, json=request, headers=headers(user)) as response:
            payload = (await response.aread()).decode()
            if response.headers.get("x-solaris-blocked"):
                outcomes["blocked"] += 1
            elif response.status_code == 200 and "event: message_stop" in payload:
                outcomes["served"] += 1
            else:
                outcomes[f"other {response.status_code}"] += 1

    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(one(http) for _ in range(total)))
    return outcomes


def test_parallel_streams_never_spend_more_than_the_balance(gateway: Gateway, user: str) -> None:
    balance = 10 * (HELD_PROMPT + 16)
    gateway.fund(user, balance)
    outcomes = asyncio.run(_fire(gateway.url + "/v1/messages", user, total=60, in_flight=16))
    rows = gateway.usage_rows(user)
    charged = sum(row["billable"] for row in rows)
    assert outcomes["served"] == len(rows) and outcomes["served"] + outcomes["blocked"] == 60
    assert outcomes["served"] >= 5, outcomes
    assert charged <= balance
    shown = gateway.user_row(user)
    assert (shown["balance"], shown["held"]) == (balance - charged, 0)


@pytest.mark.parametrize(
    ("content", "key", "status", "kind"),
    [
        (b"{not json", SERVICE_KEY, 400, "invalid_request_error"),
        (json.dumps({"model": MODEL, "messages": MESSAGES}).encode(), SERVICE_KEY, 400, None),
        (json.dumps({"model": MODEL, "max_tokens": 9, "messages": "hi"}).encode(), None, 400, None),
        (
            json.dumps(
                {
                    "model": MODEL,
                    "max_tokens": 9,
                    "messages": [{"role": "user", "content": [{"type": "hologram"}]}],
                }
            ).encode(),
            None,
            400,
            None,
        ),
        (
            json.dumps(
                {"model": MODEL, "max_tokens": "9", "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            None,
            400,
            None,
        ),
        (
            json.dumps(
                {"model": MODEL, "max_tokens": 9, "messages": [{"role": "robot", "content": "x"}]}
            ).encode(),
            None,
            400,
            None,
        ),
        (json.dumps(body(False)).encode(), "sk-wrong", 401, "authentication_error"),
        (b"x" * (20 * 1024 * 1024), None, 413, "request_too_large"),
    ],
    ids=[
        "malformed",
        "no-max-tokens",
        "messages-str",
        "unknown-block",
        "cap-str",
        "role",
        "key",
        "20MB",
    ],
)
def test_bad_input_gets_an_anthropic_error_and_costs_nothing(
    gateway: Gateway, user: str, content: bytes, key: str | None, status: int, kind: str | None
) -> None:
    gateway.fund(user, 1_000)
    sent = {**headers(user), "x-api-key": key or SERVICE_KEY, "Content-Type": "application/json"}
    response = httpx.post(gateway.url + "/v1/messages", content=content, headers=sent)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["message"]
    assert error["error"]["type"] == (kind or "invalid_request_error")
    assert gateway.usage_rows(user) == []
    assert gateway.user_row(user)["balance"] == 1_000


def test_the_model_list_answers_anthropics_sdk_in_its_shape(gateway: Gateway, user: str) -> None:
    gateway.fund(user, 100)
    with sdk(gateway, user) as client:
        models = client.models.list()
        assert [model.id for model in models.data], "the whole plan's list, on one page"
        assert all(model.type == "model" for model in models.data)
    with sdk(gateway, None) as client:
        client.api_key = "sk-wrong"
        with pytest.raises(anthropic.AuthenticationError) as raised:
            client.models.list()
    assert raised.value.response.json()["error"]["type"] == "authentication_error"
