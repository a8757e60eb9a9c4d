"""Billable tokens: what a request costs the user's balance, from its token counts and weights.

A model has an input and an output weight (default 1), so the balance is in tokens users
understand while a dearer model spends it faster. Parts of the prompt and of the completion
that providers price apart have weights of their own, each defaulting to the one it refines:
input read from the prompt cache and input written to it (parts of the prompt), reasoning (a
part of the completion). Hosted tool calls (a Responses answer's `web_search_call`, …) cost a
configured price per call. Amounts round up to whole tokens, once per request.

A model may have a long-context tier: a prompt over its threshold bills the whole request at
the tier's weights (`Weights`), which a hold for a prompt that long uses too.
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
    "Weights",
    "billable",
    "charge",
    "completion_tokens_affordable",
    "held_prompt_tokens",
    "token_charge",
    "tool_call_price",
    "tool_calls_held",
    "tool_charges",
    "weights",
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


@dataclass(frozen=True, slots=True)
class Weights:
    """The weights one request's tokens are billed at, each part's with its default resolved:
    its model's, or its model's long-context tier's when the prompt is over the threshold."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    reasoning: Decimal
    long_context: bool = False  # the tier that applied

    @property
    def input_max(self) -> Decimal:
        return max(self.input, self.cached_input, self.cache_write)

    @property
    def output_max(self) -> Decimal:
        return max(self.output, self.reasoning)


def weights(policy: ModelPolicy, prompt_tokens: int) -> Weights:
    """The weights a request with this many prompt tokens (all of them, cache reads and writes
    included) is billed at. Over the long-context threshold, input and output take the tier's
    weights and the parts priced apart scale with their side (a cache read at a tenth of input
    stays a tenth of the tier's input)."""
    standard = Weights(
        policy.input_weight,
        policy.output_weight,
        policy.cached_weight,
        policy.write_weight,
        policy.thinking_weight,
    )
    threshold = policy.long_context_threshold
    if threshold is None or prompt_tokens <= threshold:
        return standard
    input_long = policy.long_context_input_weight or policy.input_weight
    output_long = policy.long_context_output_weight or policy.output_weight
    # Multiplied before divided: exact whenever the scaled weight is a short decimal.
    return Weights(
        input_long,
        output_long,
        standard.cached_input * input_long / standard.input,
        standard.cache_write * input_long / standard.input,
        standard.reasoning * output_long / standard.output,
        long_context=True,
    )


def billable(prompt_tokens: int, completion_tokens: int, policy: ModelPolicy) -> int:
    """What a hold for this many prompt and completion tokens must be: each at the dearest
    weight any part of it may be billed at (a cache write dearer than input, reasoning dearer
    than output), at the tier of a prompt that long, so the charge never passes it. With no
    part weights and no tier set: input and output."""
    rates = weights(policy, prompt_tokens)
    return math.ceil(prompt_tokens * rates.input_max + completion_tokens * rates.output_max)


def token_charge(counts: TokenCounts, policy: ModelPolicy) -> int:
    """What a request's tokens cost, each part at its own weight, at the tier of its prompt.
    With no part weights set this is `billable(prompt, completion)`."""
    rates = weights(policy, counts.prompt)
    cached = min(counts.cached, counts.prompt)
    written = min(counts.cache_write, counts.prompt - cached)
    reasoning = min(counts.reasoning, counts.completion)
    exact = (
        (counts.prompt - cached - written) * rates.input
        + cached * rates.cached_input
        + written * rates.cache_write
        + (counts.completion - reasoning) * rates.output
        + reasoning * rates.reasoning
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


def weights_json(policy: ModelPolicy, prompt_tokens: int) -> str:
    """The weights a usage row with this many prompt tokens was billed with, each part's as
    applied (defaults resolved, the tier's when it applied), as exact decimal strings: with
    the row's counts they recompute its charge. A model with a long-context tier also says
    which tier applied (`tier`: standard or long_context) and its `long_context_threshold`."""
    rates = weights(policy, prompt_tokens)
    applied = {
        "input": str(rates.input),
        "output": str(rates.output),
        "cached_input": str(rates.cached_input),
        "cache_write": str(rates.cache_write),
        "reasoning": str(rates.reasoning),
    }
    if policy.long_context_threshold is not None:
        applied["tier"] = "long_context" if rates.long_context else "standard"
        applied["long_context_threshold"] = str(policy.long_context_threshold)
    return orjson.dumps(applied).decode()


def completion_tokens_affordable(held: int, prompt_tokens: int, policy: ModelPolicy) -> int:
    """How many completion tokens a hold of `held` billable tokens pays for after the prompt."""
    left = held - billable(prompt_tokens, 0, policy)
    return max(0, math.floor(left / weights(policy, prompt_tokens).output_max))


def held_prompt_tokens(prompt_tokens: int, policy: ModelPolicy, default_margin: Decimal) -> int:
    """The prompt tokens a reservation holds: the estimate times the model's margin."""
    margin = policy.estimate_margin or default_margin
    return prompt_tokens if margin == 1 else math.ceil(prompt_tokens * margin)
