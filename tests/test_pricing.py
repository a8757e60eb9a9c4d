"""What providers bill, billed exactly: cached input, cache writes and reads, reasoning output
each at its model's weight, and hosted tool calls at a price per call, as their own statement
lines. Through a gateway and the dev provider, on SQLite and on PostgreSQL + Redis; a model
that configures none of it is billed as it always was.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseOutputItemDoneEvent

from solaris.admin.inputs import PlanBody
from solaris.config import ModelPolicy
from solaris.ledger import journal
from solaris.ledger.records import UsageRecord
from solaris.ledger.statement import Statement, statement
from solaris.ledger.verify import verify_ledger
from solaris.metering import billing
from solaris.metering.estimate import chat_prompt_tokens
from solaris.metering.estimate_apis import messages_prompt_tokens, responses_prompt_tokens
from solaris.store.database import open_database
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway
from tests.test_proxy import provider_requests

OPENAI_MODEL = "gpt-4o-mini"
CLAUDE_MODEL = "claude-sonnet-4-5"
WEB_SEARCH_PRICE = 1000
HOSTED_TOOL_CALLS_MAX = 3
CLAUDE_SEARCH_PRICE = 10
ANTHROPIC_SEARCH = [{"type": "web_search_20250305", "name": "web_search"}]
MODELS = {
    OPENAI_MODEL: {
        "input_weight": "2",
        "output_weight": "4",
        "cached_input_weight": "0.5",
        "cache_write_weight": "3",
        "reasoning_weight": "8",
        "tool_prices": {"web_search_call": WEB_SEARCH_PRICE, "file_search_call": 300},
    },
    CLAUDE_MODEL: {
        "input_weight": "1",
        "output_weight": "5",
        "cache_write_weight": "1.25",
        "cached_input_weight": "0.1",
        "tool_prices": {"web_search_call": CLAUDE_SEARCH_PRICE},
    },
}
MESSAGES = [{"role": "user", "content": "Olá! Quanto é 2 + 2?"}]
INPUT = [{"role": "user", "content": [{"type": "input_text", "text": "Busque: SOLARIS."}]}]
WEB_SEARCH = [{"type": "web_search_preview"}]


@pytest.fixture(scope="module")
def priced(
    own_backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose models price the parts apart (a database of the module's own, so the
    ledger's verification reads only these users)."""
    tmp = tmp_path_factory.mktemp("priced")
    env = gateway_env(
        tmp,
        provider,
        own_backend,
        SOLARIS_MODELS=json.dumps(MODELS),
        SOLARIS_HOSTED_TOOL_CALLS_MAX=str(HOSTED_TOOL_CALLS_MAX),
    )
    yield from start_gateway(env, tmp)


def post(gateway: Gateway, user: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with gateway.client(user, **{"anthropic-version": "2023-06-01"}) as http:
        answer = http.post(path, json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def ledger_of(gateway: Gateway, user: str) -> tuple[Statement, list[Any]]:
    """The user's statement over these days, and what `solaris ledger verify` finds."""

    found = gateway.user_row(user)

    async def read() -> tuple[Statement, list[Any]]:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            now = datetime.now(UTC)
            start, end = now - timedelta(days=1), now + timedelta(days=1)
            lines = await statement(database, found["id"], user, start, end)
            return lines, await verify_ledger(database)
        finally:
            await database.close()

    return asyncio.run(read())


def test_cached_input_is_billed_at_its_weight(priced: Gateway, user: str) -> None:
    priced.fund(user, 100_000)
    body = {"model": OPENAI_MODEL, "messages": MESSAGES, "max_tokens": 64}
    prompt = chat_prompt_tokens(body)
    cached = prompt // 2
    answer = post(
        priced,
        user,
        "/v1/chat/completions",
        {**body, "dev_provider": {"cache_read_tokens": cached}},
    )
    usage = answer["usage"]
    assert usage["prompt_tokens"] == prompt, "OpenAI's prompt_tokens include the cached ones"
    assert usage["prompt_tokens_details"]["cached_tokens"] == cached
    [row] = priced.usage_rows(user)
    assert (row["prompt_tokens"], row["cached_tokens"]) == (prompt, cached)
    completion = row["completion_tokens"]
    assert row["billable"] == math.ceil(
        (prompt - cached) * 2 + cached * Decimal("0.5") + completion * 4
    )
    weights = json.loads(row["weights"])
    assert weights == {
        "input": "2", "output": "4", "cached_input": "0.5", "cache_write": "3", "reasoning": "8",
    }  # fmt: skip
    assert priced.user_row(user)["balance"] == 100_000 - row["billable"]
    _lines, differences = ledger_of(priced, user)
    assert differences == []


def test_reasoning_cached_input_and_cache_writes_on_the_responses_api(
    priced: Gateway, user: str
) -> None:
    priced.fund(user, 100_000)
    behaviour = {
        "reply_tokens": 40, "reasoning_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 5,
    }  # fmt: skip
    body = {"model": OPENAI_MODEL, "input": INPUT, "stream": True, "dev_provider": behaviour}
    with priced.client(user) as http, http.stream("POST", "/v1/responses", json=body) as reply:
        assert reply.status_code == 200
        events = "".join(reply.iter_text())
    assert "response.completed" in events
    [row] = priced.usage_rows(user)
    prompt = responses_prompt_tokens(body)
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (prompt, 8, 5)
    assert (row["completion_tokens"], row["reasoning_tokens"]) == (40, 10)
    assert row["billable"] == math.ceil(
        (prompt - 13) * 2 + 8 * Decimal("0.5") + 5 * 3 + 30 * 4 + 10 * 8
    )


def test_anthropic_cache_writes_and_reads_have_their_own_weights(
    priced: Gateway, user: str
) -> None:
    """Anthropic's `input_tokens` leave the cache's out: the prompt is all three, each part at
    its weight."""
    priced.fund(user, 100_000)
    body = {"model": CLAUDE_MODEL, "messages": MESSAGES, "max_tokens": 64}
    cache = {"cache_write_tokens": 100, "cache_read_tokens": 200}
    answer = post(priced, user, "/v1/messages", {**body, "dev_provider": cache})
    fresh = answer["usage"]["input_tokens"]
    assert fresh == messages_prompt_tokens(body)
    [row] = priced.usage_rows(user)
    assert row["prompt_tokens"] == fresh + 300
    assert (row["cached_tokens"], row["cache_write_tokens"]) == (200, 100)
    output = answer["usage"]["output_tokens"]
    expected = math.ceil(fresh + 100 * Decimal("1.25") + 200 * Decimal("0.1") + output * 5)
    assert row["billable"] == expected
    # The row says how: its counts and weights recompute the charge.
    weights = {name: Decimal(value) for name, value in json.loads(row["weights"]).items()}
    recomputed = math.ceil(
        (row["prompt_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]) * weights["input"]
        + row["cached_tokens"] * weights["cached_input"]
        + row["cache_write_tokens"] * weights["cache_write"]
        + row["completion_tokens"] * weights["output"]
    )
    assert recomputed == row["billable"]
    assert priced.user_row(user)["balance"] == 100_000 - expected


def test_a_streamed_anthropic_message_bills_the_cache_from_message_start(
    priced: Gateway, user: str
) -> None:
    priced.fund(user, 100_000)
    cache = {"cache_write_tokens": 40, "cache_read_tokens": 0, "reply_tokens": 20}
    body = {"model": CLAUDE_MODEL, "messages": MESSAGES, "max_tokens": 64, "stream": True}
    headers = {"anthropic-version": "2023-06-01"}
    with (
        priced.client(user, **headers) as http,
        http.stream("POST", "/v1/messages", json={**body, "dev_provider": cache}) as reply,
    ):
        assert reply.status_code == 200
        "".join(reply.iter_text())
    [row] = priced.usage_rows(user)
    fresh = messages_prompt_tokens(body)
    assert (row["prompt_tokens"], row["cache_write_tokens"]) == (fresh + 40, 40)
    assert row["billable"] == math.ceil(fresh + 40 * Decimal("1.25") + 20 * 5)


@pytest.mark.parametrize("stream", [False, True])
def test_a_web_search_is_billed_its_price_as_a_statement_line_of_its_own(
    priced: Gateway, user: str, stream: bool
) -> None:
    priced.fund(user, 100_000)
    behaviour = {"hosted_tool_calls": ["web_search_call"], "reply_tokens": 16}
    client = openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=priced.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
        max_retries=0,
    )
    with client:
        if stream:
            events = list(
                client.responses.create(
                    model=OPENAI_MODEL,
                    input=INPUT,  # type: ignore[arg-type]
                    tools=WEB_SEARCH,  # type: ignore[arg-type]
                    stream=True,
                    extra_body={"dev_provider": behaviour},
                )
            )
            done = [e for e in events if isinstance(e, ResponseOutputItemDoneEvent)]
            assert done[0].item.type == "web_search_call"
        else:
            answer = client.responses.create(
                model=OPENAI_MODEL,
                input=INPUT,  # type: ignore[arg-type]
                tools=WEB_SEARCH,  # type: ignore[arg-type]
                extra_body={"dev_provider": behaviour},
            )
            assert [item.type for item in answer.output] == ["web_search_call", "message"]
    [row] = priced.usage_rows(user)
    tokens = math.ceil(row["prompt_tokens"] * 2 + row["completion_tokens"] * 4)
    assert row["billable"] == tokens + WEB_SEARCH_PRICE
    assert row["tool_billable"] == WEB_SEARCH_PRICE
    assert json.loads(row["tool_calls"]) == {
        "web_search_call": {"calls": 1, "price": WEB_SEARCH_PRICE}
    }
    assert priced.user_row(user)["balance"] == 100_000 - row["billable"]
    with priced.client() as http:
        metrics = http.get("/metrics").text
    charged = re.search(
        rf'solaris_tool_billable_tokens_total{{model="{OPENAI_MODEL}"}} (\S+)', metrics
    )
    assert charged is not None and float(charged.group(1)) >= WEB_SEARCH_PRICE
    result, differences = ledger_of(priced, user)
    assert differences == []
    used = [line for line in result.lines if line.kind == "usage"]
    assert [(line.amount, line.tool, line.tool_calls) for line in used] == [
        (-tokens, None, None),
        (-WEB_SEARCH_PRICE, "web_search_call", 1),
    ]
    assert used[0].prompt_tokens == row["prompt_tokens"] and used[1].prompt_tokens is None
    buffer = io.StringIO()
    result.write_csv(buffer)
    rows = [r for r in csv.DictReader(io.StringIO(buffer.getvalue())) if r["kind"] == "usage"]
    assert [(r["debit"], r["tool"], r["tool_calls"], r["note"]) for r in rows] == [
        (str(tokens), "", "", ""),
        (str(WEB_SEARCH_PRICE), "web_search_call", "1", f"web_search_call: 1 x {WEB_SEARCH_PRICE}"),
    ]


def test_hosted_tool_calls_are_held_and_capped_to_what_the_balance_covers(
    priced: Gateway, user: str, provider: str
) -> None:
    """`max_tool_calls` bounds a response's hosted tool calls: the gateway holds the dearest
    offered tool's price for each call (SOLARIS_HOSTED_TOOL_CALLS_MAX when the request sets
    none), sends the number held upstream, and lowers it to what the balance covers, as it
    lowers the completion cap; less than one call's worth is refused."""
    searches = ["web_search_call"] * 6
    body = {
        "model": OPENAI_MODEL, "input": INPUT, "tools": WEB_SEARCH, "max_output_tokens": 16,
        "user": user, "dev_provider": {"hosted_tool_calls": searches, "reply_tokens": 16},
    }  # fmt: skip
    prompt = responses_prompt_tokens(body)
    # Each token at the dearest weight it may be billed at: prompt 3 (a cache write),
    # completion 8 (reasoning).
    tokens = prompt * 3 + 16 * 8
    priced.fund(user, tokens + WEB_SEARCH_PRICE - 1)
    with priced.client(user) as http:
        assert http.post("/v1/responses", json=body).status_code == 402
        priced.fund(user, 1)  # one search's worth
        assert http.post("/v1/responses", json=body).status_code == 200
        priced.fund(user, 10 * (tokens + WEB_SEARCH_PRICE))
        assert http.post("/v1/responses", json=body).status_code == 200
        own = http.post("/v1/responses", json={**body, "max_tool_calls": 2})
        assert own.status_code == 200
    sent = [r["body"] for r in provider_requests(provider) if (r["body"] or {}).get("user") == user]
    assert [b.get("max_tool_calls") for b in sent] == [1, HOSTED_TOOL_CALLS_MAX, 2]
    rows = priced.usage_rows(user)
    assert [row["tool_billable"] for row in rows] == [
        WEB_SEARCH_PRICE, HOSTED_TOOL_CALLS_MAX * WEB_SEARCH_PRICE, 2 * WEB_SEARCH_PRICE,
    ]  # fmt: skip
    assert rows[0]["billable"] <= tokens + WEB_SEARCH_PRICE, "the first was held in full"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_web_searches_are_billed_from_server_tool_use_and_capped_by_max_uses(
    priced: Gateway, user: str, provider: str, stream: bool
) -> None:
    """Anthropic's web search tool bills per search (`usage.server_tool_use`); its `max_uses`
    bounds them, so it is held and sent as `max_tool_calls` is on the Responses API."""
    behaviour = {"hosted_tool_calls": ["web_search_call"] * 5, "reply_tokens": 8}
    body = {
        "model": CLAUDE_MODEL, "messages": MESSAGES, "max_tokens": 16, "stream": stream,
        "tools": ANTHROPIC_SEARCH, "metadata": {"user_id": user}, "dev_provider": behaviour,
    }  # fmt: skip
    held_prompt = math.ceil(messages_prompt_tokens(body) * Decimal("1.3"))  # a stand-in tokenizer
    tokens = math.ceil(held_prompt * Decimal("1.25") + 16 * 5)  # the dearest input weight
    priced.fund(user, tokens + CLAUDE_SEARCH_PRICE)  # one search's worth
    headers = {"anthropic-version": "2023-06-01"}
    with priced.client(user, **headers) as http:
        assert http.post("/v1/messages", json=body).status_code == 200
        priced.fund(user, 100_000)
        assert http.post("/v1/messages", json=body).status_code == 200
    sent = [
        r["body"]
        for r in provider_requests(provider)
        if ((r["body"] or {}).get("metadata") or {}).get("user_id") == user
    ]
    assert [b["tools"][0]["max_uses"] for b in sent] == [1, HOSTED_TOOL_CALLS_MAX]
    rows = priced.usage_rows(user)
    assert [row["tool_billable"] for row in rows] == [
        CLAUDE_SEARCH_PRICE, HOSTED_TOOL_CALLS_MAX * CLAUDE_SEARCH_PRICE,
    ]  # fmt: skip
    for row in rows:
        tokens_charged = row["billable"] - row["tool_billable"]
        assert tokens_charged == math.ceil(row["prompt_tokens"] + row["completion_tokens"] * 5)
    result, differences = ledger_of(priced, user)
    assert differences == []
    tool_lines = [line for line in result.lines if line.tool]
    assert [(line.tool, line.tool_calls) for line in tool_lines] == [
        ("web_search_call", 1), ("web_search_call", HOSTED_TOOL_CALLS_MAX),
    ]  # fmt: skip


def test_defaults_bill_as_before(gateway: Gateway, user: str) -> None:
    """A model with no part weights and no tool prices: cached, reasoning and cache tokens at
    the input and output weights, a web search at nothing, no line of its own."""
    gateway.fund(user, 100_000)
    behaviour = {
        "cache_read_tokens": 8, "reasoning_tokens": 4, "hosted_tool_calls": ["web_search_call"],
    }  # fmt: skip
    body = {"model": OPENAI_MODEL, "input": INPUT, "tools": WEB_SEARCH, "dev_provider": behaviour}
    post(gateway, user, "/v1/responses", body)
    chat = {"model": OPENAI_MODEL, "messages": MESSAGES, "dev_provider": behaviour}
    post(gateway, user, "/v1/chat/completions", chat)
    cache = {"cache_write_tokens": 9, "cache_read_tokens": 5}
    messages = {"model": CLAUDE_MODEL, "messages": MESSAGES, "max_tokens": 32}
    post(gateway, user, "/v1/messages", {**messages, "dev_provider": cache})
    rows = gateway.usage_rows(user)
    assert len(rows) == 3
    for row in rows:
        assert row["billable"] == row["prompt_tokens"] + row["completion_tokens"]
        assert row["tool_billable"] == 0 and row["tool_calls"] is None
    assert rows[0]["cached_tokens"] == 8 and rows[1]["reasoning_tokens"] == 4
    assert rows[2]["cache_write_tokens"] == 9
    assert gateway.user_row(user)["balance"] == 100_000 - sum(r["billable"] for r in rows)


def test_part_weights_default_to_the_ones_they_refine() -> None:
    plain = ModelPolicy(input_weight=Decimal("2.5"), output_weight=Decimal(10))
    counts = billing.TokenCounts(1000, 300, cached=400, cache_write=100, reasoning=200)
    assert billing.token_charge(counts, plain) == billing.billable(1000, 300, plain) == 5500
    assert billing.tool_charges({"web_search_call": 3}, plain) == ()
    assert billing.tool_call_price({"web_search_preview"}, plain) == 0
    # A provider that reports more cached than prompt is held to the prompt.
    priced = ModelPolicy(cached_input_weight=Decimal(0), reasoning_weight=Decimal(3))
    assert billing.token_charge(billing.TokenCounts(10, 5, cached=50, reasoning=9), priced) == 15
    # A hold prices every token at the dearest weight it may be billed at.
    assert billing.billable(10, 5, priced) == 10 + 15
    dear = ModelPolicy(tool_prices={"web_search_call": 7, "file_search_call": 9})
    assert billing.tool_call_price({"web_search", "file_search"}, dear) == 9
    assert billing.tool_call_price({"web_search", "code_interpreter"}, dear) == 7
    # After the tokens' share, a hold pays for at least one call and at most those wanted.
    assert billing.tool_calls_held(100 + 9, 100, 9, 4) == 1
    assert billing.tool_calls_held(100 + 3 * 9 + 8, 100, 9, 4) == 3
    assert billing.tool_calls_held(10_000, 100, 9, 4) == 4


def test_a_journaled_settlement_keeps_its_weights_and_tool_charges() -> None:
    """What waits in the journal for the database settles as it would have."""
    record = UsageRecord(
        "req-tools", 7, "responses", OPENAI_MODEL, 100, 20, 10, 5, 1300, False, "ok", 12,
        finished_at=datetime(2026, 3, 1, 12, tzinfo=UTC), cache_write_tokens=3,
        weights=billing.weights_json(ModelPolicy(), 100),
        tool_charges=(billing.ToolCharge("web_search_call", 1, 1000),),
    )  # fmt: skip
    again = journal.decode(journal.encode(record))
    assert again == record and again.tool_billable == 1000 and again.token_billable == 300


def test_a_plans_weights_price_the_parts_too(
    fresh_backend: Database, provider: str, tmp_path: Path, user: str
) -> None:
    """A plan's `weights:` take the same keys (YAML, or the admin API's plan body)."""
    house = {
        "allowance_tokens": 0,
        "default": True,
        "weights": {
            OPENAI_MODEL: {"cached_input_weight": "0", "tool_prices": {"web_search_call": 50}}
        },
    }
    body = PlanBody.model_validate(house)
    policy = body.config().weights[OPENAI_MODEL]
    assert policy.cached_weight == Decimal(0) and policy.tool_prices["web_search_call"] == 50
    env = gateway_env(tmp_path, provider, fresh_backend, SOLARIS_PLANS=json.dumps({"house": house}))
    for gateway in start_gateway(env, tmp_path):
        gateway.fund(user, 10_000)
        behaviour = {"cache_read_tokens": 6, "hosted_tool_calls": ["web_search_call"]}
        request = {
            "model": OPENAI_MODEL,
            "input": INPUT,
            "tools": WEB_SEARCH,
            "dev_provider": behaviour,
        }
        post(gateway, user, "/v1/responses", request)
        [row] = gateway.usage_rows(user)
        assert row["billable"] == row["prompt_tokens"] - 6 + row["completion_tokens"] + 50
        assert json.loads(row["weights"])["cached_input"] == "0"
