"""The hard balance: blocked users, many parallel requests, several gateway processes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from solaris.links import verify_link
from solaris.metering.estimate import chat_prompt_tokens
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Conte uma história curta."}
]
SECRET = b"test-secret-key-0123456789abcdef"
COST = chat_prompt_tokens({"model": "gpt-4o-mini", "messages": MESSAGES}) + 16  # max_tokens 16


def chat(stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream, **extra}


def test_blocked_librechat_stream_gets_an_assistant_message_with_a_buy_link(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 1)  # far too little for any request
    with gateway.client(user) as http:
        response = http.post("/v1/chat/completions", json=chat(True))
    assert response.status_code == 200
    assert response.headers["x-solaris-blocked"] == "insufficient_balance"
    assert response.headers["content-type"].startswith("text/event-stream")
    client = openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=gateway.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
    )
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "saldo de tokens acabou" in text
    url = text.split("](", 1)[1].split(")", 1)[0]
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc, parsed.path) == (
        "https",
        "chat.example.com",
        "/portal/buy",
    )
    claims = verify_link(SECRET, parse_qs(parsed.query)["t"][0])
    assert claims.user_id == gateway.user_row(user)["id"]
    assert gateway.usage_rows(user) == []


def test_blocked_title_call_and_user_key_get_a_readable_402(gateway: Gateway, user: str) -> None:
    gateway.fund(user, 1)
    with gateway.client(user) as http:
        title = http.post("/v1/chat/completions", json=chat(False))
    key = gateway.cli("keys", "create", user).strip()
    by_key = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=chat(True),
        headers={"Authorization": f"Bearer {key}"},
    )
    for response in (title, by_key):
        assert response.status_code == 402
        assert response.headers["x-solaris-blocked"] == "insufficient_balance"
        error = response.json()["error"]
        assert error["code"] != "insufficient_quota"
        assert "Saldo de tokens insuficiente" in error["message"]
        assert "https://chat.example.com/portal/buy" in error["message"]
    assert gateway.usage_rows(user) == []


def test_a_small_balance_caps_the_completion_instead_of_overspending(
    gateway: Gateway, user: str, provider: str
) -> None:
    gateway.fund(user, 60)
    client = openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=gateway.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
    )
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_body={"dev_provider": {"reply_tokens": 500}},
    )
    assert answer.usage is not None
    assert answer.usage.total_tokens <= 60
    assert answer.choices[0].finish_reason == "length"
    assert gateway.user_row(user)["balance"] >= 0


async def _fire(urls: list[str], user: str, total: int, in_flight: int) -> Counter[str]:
    """`total` streamed requests, `in_flight` at a time, spread over the given gateways."""
    outcomes: Counter[str] = Counter()
    gate = asyncio.Semaphore(in_flight)
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    body = chat(True, max_tokens=16, dev_provider={"chunk_delay_s": 0.005})

    async def one(index: int, http: httpx.AsyncClient) -> None:
        async with gate:
            url = urls[index % len(urls)] + "/v1/chat/completions"
            async with http.stream("POST", url, json=body, headers=headers) as response:
                payload = (await response.aread()).decode()
            if response.headers.get("x-solaris-blocked"):
                outcomes["blocked"] += 1
            elif response.status_code == 200 and "[DONE]" in payload:
                outcomes["served"] += 1
            else:
                outcomes[f"other {response.status_code}"] += 1

    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(one(i, http) for i in range(total)))
    return outcomes


def _check_hard_balance(gateway: Gateway, user: str, balance: int, outcomes: Counter[str]) -> None:
    rows = gateway.usage_rows(user)
    charged = sum(row["billable"] for row in rows)
    assert outcomes["served"] == len(rows), outcomes
    assert outcomes["served"] + outcomes["blocked"] == 200, outcomes
    assert charged <= balance
    assert outcomes["served"] >= 10, "the balance covers about 20 requests"
    shown = gateway.user_row(user)
    assert shown["balance"] == balance - charged
    assert shown["held"] == 0
    assert "ledger verified" in gateway.cli("ledger", "verify")


def test_parallel_streams_never_spend_more_than_the_balance(gateway: Gateway, user: str) -> None:
    balance = 20 * COST
    gateway.fund(user, balance)
    outcomes = asyncio.run(_fire([gateway.url], user, total=200, in_flight=32))
    _check_hard_balance(gateway, user, balance, outcomes)


@pytest.fixture
def two_gateways(
    postgres_url: str, redis_url: str, provider: str, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    backend = Database(postgres_url, redis_url)
    env = gateway_env(tmp_path, provider, backend)
    first = start_gateway(env, tmp_path)
    second = start_gateway(env, tmp_path)
    yield next(first), next(second)
    for process in (first, second):
        next(process, None)


def test_two_gateway_processes_share_one_hard_balance(
    two_gateways: tuple[Gateway, Gateway],
) -> None:
    first, second = two_gateways
    user = "pair-" + uuid.uuid4().hex[:8]
    balance = 20 * COST
    first.fund(user, balance)
    outcomes = asyncio.run(_fire([first.url, second.url], user, total=200, in_flight=32))
    _check_hard_balance(first, user, balance, outcomes)
