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

__all__ = ["COST_QUANTUM_USD", "cost_usd", "group_cost_usd"]

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
    return _price(model, prompt_tokens, completion_tokens, cached_tokens)


def group_cost_usd(
    model: str, requests: int, prompt_tokens: int, completion_tokens: int, cached_tokens: int
) -> Decimal | None:
    """The USD cost of `requests` requests whose token counts sum to the given totals.

    Priced as `requests` times the mean request, not as one huge request: that is exact for
    per-token prices, counts per-request fees once per request, and keeps long-context tiers
    (priced by each request's prompt size) from applying to a whole day's sum.
    """
    if requests <= 0:
        return None
    mean = [
        Decimal(count) / requests for count in (prompt_tokens, completion_tokens, cached_tokens)
    ]
    one = _price(model, *mean)
    return None if one is None else (one * requests).quantize(COST_QUANTUM_USD)


def _price(
    model: str,
    prompt_tokens: int | Decimal,
    completion_tokens: int | Decimal,
    cached: int | Decimal,
) -> Decimal | None:
    # Imported on first use: the table is ~30k lines of Python the request path never needs.
    from genai_prices import Usage, calc_price

    name = model.strip().lower()
    # provider_id="litellm" splits a known provider prefix off ("openai/gpt-4o-mini"); an
    # unknown router prefix ("hosted_vllm/gpt-4o-mini") is dropped and the bare name tried.
    for candidate in dict.fromkeys((name, name.partition("/")[2])):
        if not candidate:
            continue
        try:
            usage = Usage(
                input_tokens=prompt_tokens,
                cache_read_tokens=cached,
                output_tokens=completion_tokens,
            )
            return calc_price(usage, candidate, provider_id="litellm").total_price
        except LookupError:
            continue
        except Exception:  # odd usage or third-party data must not fail a report: unknown cost
            return None
    return None
