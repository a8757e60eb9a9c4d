"""USD prices of model usage, from the price table pydantic's `genai-prices` ships in its wheel.

Chosen over LiteLLM's `model_prices_and_context_window.json` because genai-prices bundles its
table as Python data (`genai_prices/data.py`) and only goes to the network when asked to
(`UpdatePrices`, never used here) and needs only pydantic and httpx2; LiteLLM would add ~50
packages for one JSON file and, by default, fetches that file from GitHub when imported.

Prices are today's list prices; a cost is an estimate for the operator, never what users are
charged (that is billable tokens, `solaris.metering.billing`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

__all__ = ["COST_QUANTUM_USD", "Pricer", "cost_usd", "group_cost_usd"]

# Group costs divide by the request count; a picodollar drops the division's noise digits.
COST_QUANTUM_USD = Decimal("1e-12")


def cost_usd(
    model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> Decimal | None:
    """The USD cost of one request, or None when the table has no price for `model`.

    `prompt_tokens` includes `cached_tokens` (OpenAI's usage shape); those are priced at the
    cached-input rate when the model has one, else at the input rate. A LiteLLM-style provider
    prefix ("openai/gpt-4o-mini") is understood. Never raises, never touches the network.
    """
    return Pricer().group_cost(model, 1, prompt_tokens, completion_tokens, cached_tokens)


def group_cost_usd(
    model: str, requests: int, prompt_tokens: int, completion_tokens: int, cached_tokens: int
) -> Decimal | None:
    """The USD cost of `requests` requests whose token counts sum to the given totals
    (one group; a report prices many through one `Pricer`)."""
    return Pricer().group_cost(model, requests, prompt_tokens, completion_tokens, cached_tokens)


class Pricer:
    """Prices groups of requests, looking each model up once.

    A group is priced as `requests` times its mean request, not as one huge request: that is
    exact for per-token prices, counts per-request fees once per request, and keeps
    long-context tiers (priced by each request's prompt size) from applying to a whole day's
    sum. Between two tier starts the price is affine in (requests, prompt, completion, cached
    tokens), so its rates are read from the table once and a group costs four multiplications:
    a report by user prices ~40 k groups, at ~0.35 ms a table call (`bench/HISTORY.md`). One
    per report, so a price that changes on a date is read afresh.
    """

    def __init__(self) -> None:
        self._models: dict[str, _ModelCost | None] = {}

    def group_cost(
        self,
        model: str,
        requests: int,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
    ) -> Decimal | None:
        if requests <= 0 or min(prompt_tokens, completion_tokens, cached_tokens) < 0:
            return None
        if cached_tokens > prompt_tokens:
            return None
        if model not in self._models:
            self._models[model] = _model_cost(model)
        found = self._models[model]
        if found is None:
            return None
        rates = found.rates(Decimal(prompt_tokens) / requests)
        if rates is None:
            return None
        per_request, per_prompt, per_completion, per_cached = rates
        cost = (
            per_request * requests
            + per_prompt * prompt_tokens
            + per_completion * completion_tokens
            + per_cached * cached_tokens
        )
        return cost.quantize(COST_QUANTUM_USD)


Rates = tuple[Decimal, Decimal, Decimal, Decimal]  # per request, prompt, completion, cached token


class _ModelCost:
    """One model's table entry as affine pieces: a long-context tier applies to every token of a
    request whose prompt passes its start, so between two starts the price of a request is a
    fee plus a rate per token of each kind. Each piece's rates are read from the table (by
    pricing two prompts inside it) the first time a group falls in it."""

    def __init__(self, model_price: Any) -> None:
        from genai_prices.types import TieredPrices

        self.model_price = model_price
        tiered = [v for v in vars(model_price).values() if isinstance(v, TieredPrices)]
        self.starts = sorted({int(tier.start) for value in tiered for tier in value.tiers})
        self.pieces: dict[int, Rates | None] = {}

    def rates(self, mean_prompt: Decimal) -> Rates | None:
        """The rates of the piece a request of `mean_prompt` prompt tokens falls in."""
        piece = sum(1 for start in self.starts if mean_prompt > start)
        if piece not in self.pieces:
            self.pieces[piece] = self._read(piece)
        return self.pieces[piece]

    def _read(self, piece: int) -> Rates | None:
        million = 1_000_000
        low = 0 if piece == 0 else self.starts[piece - 1] + 1
        high = self.starts[piece] if piece < len(self.starts) else low + million
        shapes = ((low, 0, 0), (high, 0, 0), (low, million, 0), (high, 0, high))
        probes = [self._price(*shape) for shape in shapes]
        if any(probe is None for probe in probes):
            return None
        at_low, at_high, completion, cached = cast(list[Decimal], probes)
        per_prompt = (at_high - at_low) / (high - low)
        return (
            at_low - per_prompt * low,
            per_prompt,
            (completion - at_low) / million,
            (cached - at_high) / high,
        )

    def _price(self, prompt: int, completion: int, cached: int) -> Decimal | None:
        from genai_prices import Usage

        usage = Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion)
        try:
            return Decimal(self.model_price.calc_price(usage)["total_price"])
        except Exception:  # odd usage or third-party data must not fail a report: unknown cost
            return None


def _model_cost(model: str) -> _ModelCost | None:
    """The table's entry for the first name it knows: the model as given, lowercased, then
    without its router prefix. provider_id="litellm" splits a known provider prefix off
    ("openai/gpt-4o-mini"); an unknown one ("hosted_vllm/gpt-4o-mini") is dropped here. None
    when the table has no price."""
    # Imported on first use: the table is ~30k lines of Python the request path never needs.
    from genai_prices import Usage, calc_price

    name = model.strip().lower()
    for candidate in dict.fromkeys((name, name.partition("/")[2])):
        if not candidate:
            continue
        try:
            found = calc_price(Usage(), candidate, provider_id="litellm")
        except LookupError:
            continue
        except Exception:  # odd third-party data must not fail a report: unknown cost
            return None
        return _ModelCost(found.model_price)
    return None
