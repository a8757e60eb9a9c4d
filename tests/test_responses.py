"""POST /v1/responses through the gateway, as the openai SDK's `responses.create` sees it.

Runs against the embedded default (SQLite) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import openai
import pytest
from openai.types.responses import ResponseInputParam

from solaris.links import verify_link
from solaris.metering.estimate_apis import responses_prompt_tokens
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway
from tests.test_proxy import provider_requests

MODEL = "gpt-4o-mini"
INPUT: ResponseInputParam = [
    {"role": "developer", "content": "You are terse."},
    {"role": "user", "content": [{"type": "input_text", "text": "Olá! Quanto é 2 + 2?"}]},
]
INSTRUCTIONS = "Answer in Portuguese."
PROMPT_TOKENS = responses_prompt_tokens(
    {"model": MODEL, "input": INPUT, "instructions": INSTRUCTIONS}
)
SECRET = b"test-secret-key-0123456789abcdef"


def sdk(gateway: Gateway, user: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=gateway.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
        max_retries=0,
    )


@pytest.fixture
def api(gateway: Gateway, user: str) -> Iterator[openai.OpenAI]:
    with sdk(gateway, user) as client:
        yield client


def body(stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": INPUT, "instructions": INSTRUCTIONS, "stream": stream, **extra}


def test_a_response_is_charged_what_the_provider_reported(
    gateway: Gateway, user: str, api: openai.OpenAI
) -> None:
    gateway.fund(user, 10_000)
    answer = api.responses.create(
        model=MODEL,
        input=INPUT,
        instructions=INSTRUCTIONS,
    )
    assert answer.output_text.startswith("This is a deterministic reply")
    assert answer.usage is not None and answer.usage.input_tokens == PROMPT_TOKENS
    [row] = gateway.usage_rows(user)
    assert row["endpoint"] == "responses"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        answer.usage.input_tokens,
        answer.usage.output_tokens,
    )
    assert row["billable"] == answer.usage.total_tokens
    assert row["estimated"] is False and row["status"] == "ok"
    assert gateway.user_row(user)["balance"] == 10_000 - answer.usage.total_tokens


def test_a_streamed_response_is_charged_what_response_completed_reported(
    gateway: Gateway, user: str, api: openai.OpenAI, provider: str
) -> None:
    gateway.fund(user, 10_000)
    events = list(
        api.responses.create(
            model=MODEL,
            input=INPUT,
            instructions=INSTRUCTIONS,
            stream=True,
            user=user,
            extra_body={"dev_provider": {"reply_tokens": 40}},
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("This is a deterministic reply")
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    usage = completed.response.usage
    [row] = gateway.usage_rows(user)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, 40)
    assert row["billable"] == usage.total_tokens and row["estimated"] is False
    forwarded = [r for r in provider_requests(provider) if (r["body"] or {}).get("user") == user]
    assert "stream_options" not in forwarded[-1]["body"], "a Responses stream reports usage"
    assert forwarded[-1]["path"] == "/v1/responses"


def test_the_stream_that_crosses_80_percent_ends_with_a_notice_item(
    gateway: Gateway, user: str, api: openai.OpenAI
) -> None:
    """SOLARIS_ALERT_CHAT_NOTICE (on by default): a message item of its own before
    response.completed, which lists it; the SDK's stream stays whole and numbered."""
    gateway.fund(user, PROMPT_TOKENS + 40)  # 35 tokens of reply cross 80% of it
    with api.responses.stream(
        model=MODEL,
        input=INPUT,
        instructions=INSTRUCTIONS,
        max_output_tokens=64,
        extra_body={"dev_provider": {"reply_tokens": 35}},
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    left = gateway.user_row(user)["balance"]
    assert left == 5
    notice = f"\n\n⚠️ Você já usou 80% dos seus tokens deste período (restam {left})."
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("This is a deterministic reply") and text.endswith(notice)
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [item.type for item in final.output] == ["message", "message"]
    assert final.output_text.endswith(notice)
    assert final.usage is not None and final.usage.output_tokens == 35
    [row] = gateway.usage_rows(user)
    assert row["completion_tokens"] == 35 and row["estimated"] is False


def test_a_small_balance_lowers_max_output_tokens(
    gateway: Gateway, user: str, api: openai.OpenAI, provider: str
) -> None:
    balance = PROMPT_TOKENS + 30
    gateway.fund(user, balance)
    answer = api.responses.create(
        model=MODEL,
        input=INPUT,
        instructions=INSTRUCTIONS,
        max_output_tokens=1000,
        user=user,
        extra_body={"dev_provider": {"reply_tokens": 500}},
    )
    forwarded = [r for r in provider_requests(provider) if (r["body"] or {}).get("user") == user]
    assert forwarded[-1]["body"]["max_output_tokens"] == 30
    assert answer.status == "incomplete" and answer.usage is not None
    assert answer.usage.total_tokens == balance
    assert gateway.user_row(user)["balance"] == 0
    [row] = gateway.usage_rows(user)
    assert row["status"] == "incomplete" and row["estimated"] is False


def test_a_blocked_stream_is_a_responses_stream_with_a_buy_link(
    gateway: Gateway, user: str, api: openai.OpenAI
) -> None:
    gateway.fund(user, 1)
    with gateway.client(user) as http:
        raw = http.post("/v1/responses", json=body(True))
    assert raw.status_code == 200 and raw.headers["x-solaris-blocked"] == "insufficient_balance"
    events = list(
        api.responses.create(
            model=MODEL,
            input=INPUT,
            stream=True,
        )
    )
    assert next(e.type for e in events) == "response.created"
    completed = events[-1]
    assert completed.type == "response.completed"
    text = completed.response.output_text
    assert "saldo de tokens acabou" in text
    assert text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    url = urlparse(text.split("](", 1)[1].split(")", 1)[0])
    assert (url.netloc, url.path) == ("chat.example.com", "/portal/buy")
    assert verify_link(SECRET, parse_qs(url.query)["t"][0]).user_id == gateway.user_row(user)["id"]
    assert gateway.usage_rows(user) == []


def test_a_blocked_non_streamed_call_gets_a_readable_402(
    gateway: Gateway, user: str, api: openai.OpenAI
) -> None:
    gateway.fund(user, 1)
    with pytest.raises(openai.APIStatusError) as raised:
        api.responses.create(model=MODEL, input="Oi")
    assert raised.value.status_code == 402
    error = raised.value.response.json()["error"]
    assert "Saldo de tokens insuficiente" in error["message"]
    assert error["code"] != "insufficient_quota"
    assert gateway.usage_rows(user) == []


def test_a_stream_cut_by_the_provider_is_charged_what_was_generated(
    gateway: Gateway, user: str
) -> None:
    """Four events open the stream; the next three are one token each, then the line drops."""
    gateway.fund(user, 10_000)
    with gateway.client(user) as http:
        sent = http.post("/v1/responses", json=body(True, dev_provider={"cut_after_chunks": 7}))
    assert sent.status_code == 200
    assert sent.text.rstrip().endswith('"sequence_number":0}'), "an error event ends it"
    assert "event: error" in sent.text
    [row] = gateway.usage_rows(user)
    assert row["status"] == "upstream_cut" and row["estimated"] is True
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, 3)


def test_a_stream_without_usage_is_counted_offline(
    gateway: Gateway, user: str, api: openai.OpenAI
) -> None:
    gateway.fund(user, 10_000)
    extra = {"dev_provider": {"omit_usage": True, "reply_tokens": 25}}
    events = list(
        api.responses.create(
            model=MODEL,
            input=INPUT,
            stream=True,
            extra_body=extra,
        )
    )
    assert events[-1].type == "response.completed"
    [row] = gateway.usage_rows(user)
    assert row["completion_tokens"] == 25 and row["estimated"] is True


def test_a_client_that_hangs_up_is_charged_once_for_what_was_generated(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 10_000)
    slow = body(True, dev_provider={"reply_tokens": 400, "chunk_delay_s": 0.01})
    deltas = 0
    with (
        gateway.client(user) as http,
        http.stream("POST", "/v1/responses", json=slow) as response,
    ):
        for line in response.iter_lines():
            deltas += line == "event: response.output_text.delta"
            if deltas == 5:
                break
    [row] = gateway.usage_rows(user)
    assert row["status"] == "client_disconnected" and row["estimated"] is True
    assert 5 <= row["completion_tokens"] < 400
    assert row["prompt_tokens"] == PROMPT_TOKENS
    assert gateway.user_row(user)["balance"] == 10_000 - row["billable"]


async def _fire(url: str, user: str, total: int, in_flight: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    gate = asyncio.Semaphore(in_flight)
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    request = body(True, max_output_tokens=16, dev_provider={"chunk_delay_s": 0.005})

    async def one(http: httpx.AsyncClient) -> None:
        async with gate, http.stream("POST", url, json=request, headers=headers) as response:
            payload = (await response.aread()).decode()
            if response.headers.get("x-solaris-blocked"):
                outcomes["blocked"] += 1
            elif response.status_code == 200 and "event: response.completed" in payload:
                outcomes["served"] += 1
            else:
                outcomes[f"other {response.status_code}"] += 1

    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(one(http) for _ in range(total)))
    return outcomes


def test_parallel_streams_never_spend_more_than_the_balance(gateway: Gateway, user: str) -> None:
    balance = 10 * (PROMPT_TOKENS + 16)
    gateway.fund(user, balance)
    outcomes = asyncio.run(_fire(gateway.url + "/v1/responses", user, total=60, in_flight=16))
    rows = gateway.usage_rows(user)
    charged = sum(row["billable"] for row in rows)
    assert outcomes["served"] == len(rows) and outcomes["served"] + outcomes["blocked"] == 60
    assert outcomes["served"] >= 5, outcomes
    assert charged <= balance
    shown = gateway.user_row(user)
    assert (shown["balance"], shown["held"]) == (balance - charged, 0)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        json.dumps({"model": MODEL}).encode(),
        json.dumps({"model": MODEL, "input": 42}).encode(),
        json.dumps({"model": MODEL, "input": ["hi"]}).encode(),
        json.dumps({"model": MODEL, "input": [{"type": "telepathy", "text": "hi"}]}).encode(),
        json.dumps({"model": MODEL, "input": [{"role": "user", "content": 7}]}).encode(),
        json.dumps({"model": MODEL, "input": "hi", "max_output_tokens": "lots"}).encode(),
        json.dumps({"model": MODEL, "input": "hi", "tools": "web"}).encode(),
        json.dumps({"model": MODEL, "input": "hi", "stream": "yes"}).encode(),
    ],
    ids=[
        "malformed",
        "no-input",
        "input-number",
        "item-string",
        "unknown-item",
        "content-number",
        "cap-string",
        "tools-string",
        "stream-string",
    ],
)
def test_bad_input_gets_an_openai_error_and_costs_nothing(
    gateway: Gateway, user: str, content: bytes
) -> None:
    gateway.fund(user, 1_000)
    with gateway.client(user) as http:
        response = http.post(
            "/v1/responses", content=content, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert gateway.usage_rows(user) == []
    assert gateway.user_row(user)["balance"] == 1_000


@pytest.mark.parametrize(
    ("continuation", "param"),
    [
        ({"previous_response_id": "resp_abc"}, "previous_response_id"),
        ({"conversation": "conv_abc"}, "conversation"),
        ({"input": [{"type": "item_reference", "id": "msg_abc"}]}, "input[0]"),
    ],
    ids=["previous_response_id", "conversation", "item_reference"],
)
def test_stored_context_is_refused_when_no_hold_is_configured(
    gateway: Gateway, user: str, continuation: dict[str, Any], param: str
) -> None:
    gateway.fund(user, 10_000)
    with gateway.client(user) as http:
        response = http.post("/v1/responses", json={**body(False), **continuation})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "previous_response_id" in error["message"] and error["param"] == param
    assert gateway.usage_rows(user) == []


STORED_CONTEXT_TOKENS = 500


@pytest.fixture(scope="module")
def holding_gateway(
    backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("stored")
    env = gateway_env(
        tmp, provider, backend, SOLARIS_STORED_CONTEXT_TOKENS=str(STORED_CONTEXT_TOKENS)
    )
    yield from start_gateway(env, tmp)


def test_stored_context_is_held_on_top_and_charged_what_the_provider_counted(
    holding_gateway: Gateway, user: str
) -> None:
    """The provider reads 300 stored tokens the body does not carry: the hold covered them."""
    gateway = holding_gateway
    extra = {"prompt_extra_tokens": 300, "reply_tokens": 16}
    follow_up = body(
        False, previous_response_id="resp_abc", max_output_tokens=16, dev_provider=extra
    )
    needed = PROMPT_TOKENS + STORED_CONTEXT_TOKENS + 16
    gateway.fund(user, needed - 1)
    with gateway.client(user) as http:
        short = http.post("/v1/responses", json=follow_up)
        assert short.status_code == 402, "the stored context is held, so this does not fit"
        gateway.fund(user, 1)
        served = http.post("/v1/responses", json=follow_up)
    assert served.status_code == 200, served.text
    usage = served.json()["usage"]
    assert usage["input_tokens"] == PROMPT_TOKENS + 300
    [row] = gateway.usage_rows(user)
    assert row["prompt_tokens"] == PROMPT_TOKENS + 300 and row["estimated"] is False
    assert gateway.user_row(user)["balance"] == needed - usage["total_tokens"]


def test_the_model_list_and_unknown_paths_still_answer(gateway: Gateway) -> None:
    with gateway.client("someone") as http:
        assert http.get("/v1/models").status_code == 200
        assert http.post("/v1/responses/abc/cancel", json={}).status_code == 404
