"""Billable tokens: what a request costs the user's balance, from its token counts and weights.

A model has an input and an output weight (default 1), so the balance is in tokens users
understand while a dearer model spends it faster. Parts of the prompt and of the completion
that providers price apart have weights of their own, each defaulting to the one it refines:
input read from the prompt cache and input written to it (parts of the prompt), reasoning (a
part of the completion). Hosted tool calls (a Responses answer's `web_search_call`, …) cost a
configured price per call. Amounts round up to whole tokens, once per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import orjson

from solaris.config import HOSTED_TOOLS, ModelPolicy

__all__ = [
    "TokenCounts",
    "ToolCharge",
    "billable",
    "charge",
    "completion_tokens_affordable",
    "held_prompt_tokens",
    "token_charge",
    "tool_call_price",
    "tool_calls_held",
    "tool_charges",
    "weights_json",
]


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """A request's counts as billed: `cached` and `cache_write` are parts of `prompt`,
    `reasoning` a part of `completion` (a provider that reports more is held to the whole)."""

    prompt: int
    completion: int
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class ToolCharge:
    """Calls of one hosted tool in an answer, at the price per call they were billed."""

    tool: str  # the output item type: web_search_call, …
    calls: int
    price: int  # billable tokens per call

    def __post_init__(self) -> None:
        assert self.calls > 0 and self.price >= 0, (self.calls, self.price)

    @property
    def amount(self) -> int:
        return self.calls * self.price


def billable(prompt_tokens: int, completion_tokens: int, policy: ModelPolicy) -> int:
    """What a hold for this many prompt and completion tokens must be: each at the dearest
    weight any part of it may be billed at (a cache write dearer than input, reasoning dearer
    than output), so the charge never passes it. With no part weights set: input and output."""
    return math.ceil(
        prompt_tokens * _input_weight_max(policy) + completion_tokens * _output_weight_max(policy)
    )


def _input_weight_max(policy: ModelPolicy) -> Decimal:
    return max(policy.input_weight, policy.cached_weight, policy.write_weight)


def _output_weight_max(policy: ModelPolicy) -> Decimal:
    return max(policy.output_weight, policy.thinking_weight)


def token_charge(counts: TokenCounts, policy: ModelPolicy) -> int:
    """What a request's tokens cost, each part at its own weight. With no part weights set
    this is `billable(prompt, completion)`."""
    cached = min(counts.cached, counts.prompt)
    written = min(counts.cache_write, counts.prompt - cached)
    reasoning = min(counts.reasoning, counts.completion)
    exact = (
        (counts.prompt - cached - written) * policy.input_weight
        + cached * policy.cached_weight
        + written * policy.write_weight
        + (counts.completion - reasoning) * policy.output_weight
        + reasoning * policy.thinking_weight
    )
    return math.ceil(exact)


def charge(
    counts: TokenCounts, tool_calls: Mapping[str, int], policy: ModelPolicy
) -> tuple[int, tuple[ToolCharge, ...]]:
    """What a finished request costs in all, and the hosted tool charges that are part of it."""
    tools = tool_charges(tool_calls, policy)
    return token_charge(counts, policy) + sum(tool.amount for tool in tools), tools


def tool_charges(calls: Mapping[str, int], policy: ModelPolicy) -> tuple[ToolCharge, ...]:
    """The priced hosted tool calls of an answer, one charge per tool (unpriced ones cost
    nothing and are left out), in a stable order."""
    return tuple(
        ToolCharge(tool, count, policy.tool_prices[tool])  # type: ignore[index]
        for tool, count in sorted(calls.items())
        if count > 0 and policy.tool_prices.get(tool, 0) > 0  # type: ignore[call-overload]
    )


def tool_call_price(offered: set[str], policy: ModelPolicy) -> int:
    """What one hosted tool call of a request offering these `tools` types may cost: the
    dearest offered tool's price (0: none of them is priced). `max_tool_calls` bounds the calls
    of all hosted tools together, so this times it bounds what they cost."""
    prices = [
        policy.tool_prices.get(tool, 0)  # type: ignore[call-overload]
        for tool, offered_as in HOSTED_TOOLS.items()
        if offered.intersection(offered_as)
    ]
    return max(prices, default=0)


def tool_calls_held(held: int, tokens_wanted: int, price: int, calls_wanted: int) -> int:
    """How many hosted tool calls a hold of `held` covers once the tokens have what they want
    (at least one: the least hold paid for one; at most `calls_wanted`)."""
    assert price > 0 and calls_wanted >= 1, (price, calls_wanted)
    return max(1, min(calls_wanted, (held - tokens_wanted) // price))


def weights_json(policy: ModelPolicy) -> str:
    """The weights a usage row was billed with, each part's as applied (defaults resolved),
    as exact decimal strings: with the row's counts they recompute its charge."""
    weights = {
        "input": policy.input_weight,
        "output": policy.output_weight,
        "cached_input": policy.cached_weight,
        "cache_write": policy.write_weight,
        "reasoning": policy.thinking_weight,
    }
    return orjson.dumps({name: str(value) for name, value in weights.items()}).decode()


def completion_tokens_affordable(held: int, prompt_tokens: int, policy: ModelPolicy) -> int:
    """How many completion tokens a hold of `held` billable tokens pays for after the prompt."""
    left = held - billable(prompt_tokens, 0, policy)
    return max(0, math.floor(left / _output_weight_max(policy)))


def held_prompt_tokens(prompt_tokens: int, policy: ModelPolicy, default_margin: Decimal) -> int:
    """The prompt tokens a reservation holds: the estimate times the model's margin."""
    margin = policy.estimate_margin or default_margin
    return prompt_tokens if margin == 1 else math.ceil(prompt_tokens * margin)
