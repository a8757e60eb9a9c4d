"""Long-context tiers: a prompt over a model's threshold is billed at dearer input and output
weights, as providers price prompts over 128 k / 200 k tokens; the hold for such a prompt is at
the tier too, and the usage row says which tier it was billed at. Through a gateway and the dev
provider, on SQLite and on PostgreSQL + Redis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from solaris.admin.inputs import PlanBody
from solaris.config import ModelPolicy
from solaris.ledger.plans import Plan
from solaris.metering import billing
from solaris.metering.estimate import chat_prompt_tokens
from solaris.metering.estimate_apis import messages_prompt_tokens
from tests.conftest import Database, Gateway, gateway_env, start_gateway
from tests.test_pricing import ledger_of, post

OPENAI_MODEL = "gpt-4o-mini"
CLAUDE_MODEL = "claude-sonnet-4-5"
THRESHOLD = 128_000
MODELS = {
    OPENAI_MODEL: {
        "input_weight": "1",
        "output_weight": "4",
        "cached_input_weight": "0.5",
        "long_context_threshold": THRESHOLD,
        "long_context_input_weight": "2",
        "long_context_output_weight": "6",
    },
    CLAUDE_MODEL: {
        "input_weight": "1",
        "output_weight": "5",
        "cached_input_weight": "0.1",
        "cache_write_weight": "1.25",
        "long_context_threshold": THRESHOLD,
        "long_context_input_weight": "2",
        "long_context_output_weight": "7.5",
    },
}
REPLY_TOKENS = 16


@pytest.fixture(scope="module")
def tiered(
    own_backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("tiered")
    env = gateway_env(tmp, provider, own_backend, SOLARIS_MODELS=json.dumps(MODELS))
    yield from start_gateway(env, tmp)


def chat_of(words: int) -> dict[str, Any]:
    """A chat whose prompt is `words` tokens and a few (one token per word for gpt-4o-mini)."""
    content = "hello " * words
    return {
        "model": OPENAI_MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": REPLY_TOKENS,
    }


def test_a_130k_prompt_is_billed_at_the_long_context_weights_and_a_100k_one_is_not(
    tiered: Gateway, user: str
) -> None:
    tiered.fund(user, 1_000_000)
    short, long = chat_of(100_000), chat_of(130_000)
    short_prompt, long_prompt = chat_prompt_tokens(short), chat_prompt_tokens(long)
    assert short_prompt < THRESHOLD < long_prompt
    post(tiered, user, "/v1/chat/completions", short)
    post(tiered, user, "/v1/chat/completions", long)
    first, second = tiered.usage_rows(user)
    assert (first["prompt_tokens"], second["prompt_tokens"]) == (short_prompt, long_prompt)
    assert first["completion_tokens"] == second["completion_tokens"] == REPLY_TOKENS
    assert first["billable"] == short_prompt * 1 + REPLY_TOKENS * 4
    assert second["billable"] == long_prompt * 2 + REPLY_TOKENS * 6
    assert json.loads(first["weights"]) == {
        "input": "1", "output": "4", "cached_input": "0.5", "cache_write": "1",
        "reasoning": "4", "tier": "standard", "long_context_threshold": str(THRESHOLD),
    }  # fmt: skip
    assert json.loads(second["weights"]) == {
        "input": "2", "output": "6", "cached_input": "1.0", "cache_write": "2",
        "reasoning": "6", "tier": "long_context", "long_context_threshold": str(THRESHOLD),
    }  # fmt: skip
    spent = first["billable"] + second["billable"]
    assert tiered.user_row(user)["balance"] == 1_000_000 - spent
    result, differences = ledger_of(tiered, user)
    assert differences == []
    used = [line for line in result.lines if line.kind == "usage"]
    assert [-line.amount for line in used] == [first["billable"], second["billable"]]


def test_the_hold_for_a_long_prompt_is_at_the_tier(tiered: Gateway, user: str) -> None:
    """A balance that covers a 130 k prompt at the standard weights but not at the tier's is
    refused before anything is forwarded; one that covers the tier is served, and the balance
    never goes below zero."""
    body = chat_of(130_000)
    prompt = chat_prompt_tokens(body)
    standard_hold = prompt * 1 + REPLY_TOKENS * 4
    tiered.fund(user, prompt * 2 - 1)
    assert prompt * 2 - 1 > standard_hold
    with tiered.client(user) as http:
        refused = http.post("/v1/chat/completions", json=body)
        assert refused.status_code == 402, refused.text
        assert tiered.usage_rows(user) == []
        tiered.fund(user, 1 + REPLY_TOKENS * 6)
        served = http.post("/v1/chat/completions", json=body)
        assert served.status_code == 200, served.text
    [row] = tiered.usage_rows(user)
    assert row["billable"] == prompt * 2 + REPLY_TOKENS * 6
    assert tiered.user_row(user)["balance"] == 0


def test_anthropic_cache_reads_count_toward_the_threshold(tiered: Gateway, user: str) -> None:
    """The threshold is on all of the prompt: a short message whose cache read is long is
    billed at the tier, the cache read at its weight scaled as the input's is."""
    tiered.fund(user, 1_000_000)
    body = {
        "model": CLAUDE_MODEL,
        "messages": [{"role": "user", "content": "Resuma o documento."}],
        "max_tokens": REPLY_TOKENS,
    }
    cache = {"cache_read_tokens": 130_000, "cache_write_tokens": 100}
    answer = post(tiered, user, "/v1/messages", {**body, "dev_provider": cache})
    fresh = answer["usage"]["input_tokens"]
    assert fresh == messages_prompt_tokens(body)
    [row] = tiered.usage_rows(user)
    assert row["prompt_tokens"] == fresh + 130_100 > THRESHOLD
    output = answer["usage"]["output_tokens"]
    assert row["billable"] == math.ceil(
        fresh * 2 + 130_000 * Decimal("0.2") + 100 * Decimal("2.5") + output * Decimal("7.5")
    )
    weights = json.loads(row["weights"])
    assert weights["tier"] == "long_context"
    # The row's counts and weights recompute its charge.
    rates = {name: Decimal(weights[name]) for name in ("input", "cached_input", "cache_write")}
    recomputed = math.ceil(
        (row["prompt_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]) * rates["input"]
        + row["cached_tokens"] * rates["cached_input"]
        + row["cache_write_tokens"] * rates["cache_write"]
        + row["completion_tokens"] * Decimal(weights["output"])
    )
    assert recomputed == row["billable"]


def test_the_tier_starts_past_the_threshold_and_scales_the_parts() -> None:
    policy = ModelPolicy.model_validate(MODELS[CLAUDE_MODEL] | {"reasoning_weight": "10"})
    at, past = billing.weights(policy, THRESHOLD), billing.weights(policy, THRESHOLD + 1)
    assert not at.long_context and (at.input, at.output, at.reasoning) == (
        Decimal(1), Decimal(5), Decimal(10),
    )  # fmt: skip
    assert past.long_context and (past.input, past.output) == (Decimal(2), Decimal("7.5"))
    assert (past.cached_input, past.cache_write, past.reasoning) == (
        Decimal("0.2"), Decimal("2.5"), Decimal(15),
    )  # fmt: skip
    # A hold prices every token at the dearest weight of the prompt's tier.
    assert billing.billable(THRESHOLD, 10, policy) == THRESHOLD * Decimal("1.25") + 10 * 10
    held = billing.billable(THRESHOLD + 1, 10, policy)
    assert held == math.ceil((THRESHOLD + 1) * Decimal("2.5") + 10 * 15)
    assert billing.completion_tokens_affordable(held, THRESHOLD + 1, policy) == 10
    # Unset: only the side named is dearer; a model without a tier bills as before.
    only_input = ModelPolicy(long_context_threshold=10, long_context_input_weight=Decimal(3))
    assert billing.token_charge(billing.TokenCounts(11, 4), only_input) == 33 + 4
    assert "tier" not in json.loads(billing.weights_json(ModelPolicy(), 10**6))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"long_context_input_weight": "2"}, "need long_context_threshold"),
        ({"long_context_threshold": 1000}, "needs long_context_input_weight"),
        (
            {"long_context_threshold": 1000, "long_context_input_weight": "0.5"},
            "must be at least input_weight",
        ),
    ],
)
def test_a_tier_is_configured_whole_and_dearer(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=error):
        ModelPolicy.model_validate(fields)
    plan = {"allowance_tokens": 0, "weights": {OPENAI_MODEL: fields}}
    with pytest.raises(pydantic.ValidationError, match=error):  # the admin API: a 422
        PlanBody.model_validate(plan)


def test_a_plans_weights_keep_the_tier() -> None:
    """A plan's weights as stored (JSON) and read back bill at the same tier."""
    body = PlanBody.model_validate({"allowance_tokens": 0, "weights": MODELS})
    stored = {m: p.model_dump(mode="json") for m, p in body.config().weights.items()}

    class Row:
        name, allowance_tokens, period, anchor, rpm, tpm = "p", 0, "monthly", "calendar", 1, 1
        models, weights, rollover = '["*"]', json.dumps(stored), False
        rollover_max_tokens = rollover_max_percent = windows = model_caps = None

    policy = Plan.from_row(Row()).weights[OPENAI_MODEL]
    assert billing.weights(policy, THRESHOLD + 1).input == 2
