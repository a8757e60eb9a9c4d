"""Billable tokens: what a request costs the user's balance, from its token counts and weights.

A model has an input and an output weight (default 1), so the balance is in tokens users
understand while a dearer model spends it faster. Amounts round up to whole tokens.
"""

from __future__ import annotations

import math
from decimal import Decimal

from solaris.config import ModelPolicy

__all__ = ["billable", "completion_tokens_affordable", "held_prompt_tokens"]


def billable(prompt_tokens: int, completion_tokens: int, policy: ModelPolicy) -> int:
    return math.ceil(prompt_tokens * policy.input_weight + completion_tokens * policy.output_weight)


def completion_tokens_affordable(held: int, prompt_tokens: int, policy: ModelPolicy) -> int:
    """How many completion tokens a hold of `held` billable tokens pays for after the prompt."""
    left = held - billable(prompt_tokens, 0, policy)
    return max(0, math.floor(left / policy.output_weight))


def held_prompt_tokens(prompt_tokens: int, policy: ModelPolicy, default_margin: Decimal) -> int:
    """The prompt tokens a reservation holds: the estimate times the model's margin."""
    margin = policy.estimate_margin or default_margin
    return prompt_tokens if margin == 1 else math.ceil(prompt_tokens * margin)
