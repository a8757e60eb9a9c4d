"""The settings that are lists and maps of things: model policies, plans, credit packs, service
accounts. Each is
validated where it is declared, with its bounds."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "DEFAULT_MODEL_POLICY",
    "HOSTED_TOOLS",
    "LONG_CONTEXT_TOKENS_MAX",
    "TOOL_PRICE_MAX",
    "CreditPack",
    "HostedTool",
    "ModelPolicy",
    "PlanConfig",
    "ServiceAccount",
    "UsageWindow",
    "rollover_problem",
]

# The Responses API's hosted tool calls, by their output item type, and the `tools` entry
# types that offer each (a request offers `web_search_preview` for `web_search_call` items).
HOSTED_TOOLS: dict[str, tuple[str, ...]] = {
    "web_search_call": ("web_search", "web_search_preview", "web_search_2025_08_26"),
    "file_search_call": ("file_search",),
    "image_generation_call": ("image_generation",),
    "code_interpreter_call": ("code_interpreter",),
}
HostedTool = Literal[
    "web_search_call", "file_search_call", "image_generation_call", "code_interpreter_call"
]
TOOL_PRICE_MAX = 10**9  # billable tokens for one call
ToolPrice = Annotated[int, Field(ge=0, le=TOOL_PRICE_MAX)]
LONG_CONTEXT_TOKENS_MAX = 10**8  # a threshold past any context window


class ModelPolicy(BaseModel):
    """How one model is billed and named upstream.

    Unset weights follow the one they refine, so a policy that names none bills as it always
    did: cached input and cache writes at `input_weight`, reasoning at `output_weight`, hosted
    tool calls at nothing."""

    input_weight: Decimal = Field(default=Decimal(1), gt=0)
    output_weight: Decimal = Field(default=Decimal(1), gt=0)
    # Input the provider read from its prompt cache (OpenAI `cached_tokens`, Anthropic
    # `cache_read_input_tokens`) and input it wrote there (`cache_creation_input_tokens`).
    cached_input_weight: Decimal | None = Field(default=None, ge=0)
    cache_write_weight: Decimal | None = Field(default=None, ge=0)
    # Reasoning output (`reasoning_tokens`, a part of the completion) where it is priced apart.
    reasoning_weight: Decimal | None = Field(default=None, ge=0)
    # Billable tokens per hosted tool call in a Responses answer, by output item type.
    tool_prices: dict[HostedTool, ToolPrice] = Field(default_factory=dict)
    # Priced routes (`/v1/images/generations`, `/v1/audio/speech`, `/v1/moderations`): billable
    # tokens per image generated (unset: the model's images are refused, nothing could be
    # held), per 1,000 input characters of speech (unset: refused likewise), per moderation
    # request (0: free, still a usage row). An answer that reports its token usage (gpt-image-1)
    # is billed at the weights instead.
    image_price: ToolPrice | None = None
    speech_price: Decimal | None = Field(default=None, ge=0, le=TOOL_PRICE_MAX)
    moderation_price: ToolPrice = 0
    upstream_name: str | None = None  # alias: clients say `model`, the upstream gets this
    # The prompt estimate is multiplied by this when a request is reserved; unset: 1 for models
    # whose tokenizer the gateway ships, `unknown_tokenizer_margin` for the others.
    estimate_margin: Decimal | None = Field(default=None, ge=1, le=10)
    # A long-context tier, as providers price prompts over 128 k / 200 k tokens: a request
    # whose prompt (all of it, cache reads and writes included) has more tokens than the
    # threshold is billed at these input and output weights (unset: the standard one), its
    # parts priced apart (cache reads and writes, reasoning) scaled by the same factor as
    # their side, as Anthropic and Google scale theirs.
    long_context_threshold: int | None = Field(default=None, gt=0, le=LONG_CONTEXT_TOKENS_MAX)
    long_context_input_weight: Decimal | None = Field(default=None, gt=0)
    long_context_output_weight: Decimal | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _long_context_tier(self) -> ModelPolicy:
        weights = (self.long_context_input_weight, self.long_context_output_weight)
        if self.long_context_threshold is None:
            if weights != (None, None):
                raise ValueError("long-context weights need long_context_threshold")
            return self
        if weights == (None, None):
            raise ValueError(
                "long_context_threshold needs long_context_input_weight or"
                " long_context_output_weight"
            )
        # Dearer, never cheaper: a hold at the tier of the estimate then covers a prompt
        # that turns out shorter than the threshold.
        if self.long_context_input_weight is not None and (
            self.long_context_input_weight < self.input_weight
        ):
            raise ValueError("long_context_input_weight must be at least input_weight")
        if self.long_context_output_weight is not None and (
            self.long_context_output_weight < self.output_weight
        ):
            raise ValueError("long_context_output_weight must be at least output_weight")
        return self

    @property
    def cached_weight(self) -> Decimal:
        return self.input_weight if self.cached_input_weight is None else self.cached_input_weight

    @property
    def write_weight(self) -> Decimal:
        return self.input_weight if self.cache_write_weight is None else self.cache_write_weight

    @property
    def thinking_weight(self) -> Decimal:
        return self.output_weight if self.reasoning_weight is None else self.reasoning_weight


DEFAULT_MODEL_POLICY = ModelPolicy()


WINDOW_HOURS_MAX = 31 * 24
CAPS_MAX = 16  # windows, and model caps, per plan: each is one sum in the reservation
CAP_PATTERN = re.compile(r"[A-Za-z0-9._:/@+*?-]{1,128}")  # a model name, with * and ? only


class UsageWindow(BaseModel):
    """At most `tokens` billable tokens per local day or week, or per rolling `hours`, whatever
    pays for them (allowance or credits)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: int = Field(gt=0)
    every: Literal["day", "week"] | None = None
    hours: int | None = Field(default=None, ge=1, le=WINDOW_HOURS_MAX)

    @model_validator(mode="after")
    def _one_span(self) -> UsageWindow:
        if (self.every is None) == (self.hours is None):
            raise ValueError("a window has `every: day|week` or `hours: N`, one of them")
        return self


class PlanConfig(BaseModel):
    """A plan as the operator writes it in YAML (`plans:`) or on the command line."""

    allowance_tokens: int = Field(ge=0)
    period: Literal["monthly", "weekly", "daily"] = "monthly"
    anchor: Literal["subscription", "calendar"] = "subscription"
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    models: list[str] = Field(default_factory=lambda: ["*"])  # fnmatch patterns
    weights: dict[str, ModelPolicy] = Field(default_factory=dict)
    rollover: bool = False  # unused allowance carries into the next period…
    rollover_max_tokens: int | None = Field(default=None, ge=0)  # …up to this many tokens
    rollover_max_percent: int | None = Field(default=None, ge=0, le=1000)  # …or this % of it
    windows: list[UsageWindow] = Field(default_factory=list, max_length=CAPS_MAX)
    # Billable tokens per period for the models matching each pattern (`*` and `?` only).
    model_caps: dict[str, int] = Field(default_factory=dict, max_length=CAPS_MAX)
    default: bool = False

    @field_validator("model_caps")
    @classmethod
    def _model_caps(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, tokens in value.items():
            if not CAP_PATTERN.fullmatch(pattern):
                raise ValueError(f"a model cap's pattern uses * and ? only: {pattern!r}")
            if tokens <= 0:
                raise ValueError(f"a model cap is a positive token count: {pattern}: {tokens}")
        return value

    @model_validator(mode="after")
    def _one_rollover_cap(self) -> PlanConfig:
        if problem := rollover_problem(
            self.rollover, self.rollover_max_tokens, self.rollover_max_percent
        ):
            raise ValueError(problem)
        return self


def rollover_problem(rollover: bool, max_tokens: int | None, max_percent: int | None) -> str | None:
    """What is wrong with a plan's rollover settings, if anything."""
    if max_tokens is not None and max_percent is not None:
        return "give rollover_max_tokens or rollover_max_percent, not both"
    if not rollover and (max_tokens is not None or max_percent is not None):
        return "a rollover cap needs rollover: true"
    return None


class CreditPack(BaseModel):
    """A credit pack the portal's purchase page sells (`credit_packs:` in YAML).

    The price is an integer in the currency's minor unit (centavos for BRL), never a float; an
    order keeps a copy of the pack as it was sold, so editing a pack changes no order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    tokens: int = Field(gt=0, le=10**12)
    price_cents: int = Field(gt=0, le=10**9)  # e.g. 2500 for R$ 25,00
    currency: str = Field(default="BRL", pattern=r"^[A-Z]{3}$")  # ISO 4217
    expires_in_days: int | None = Field(default=None, ge=1, le=3660)  # the credits', if any
    popular: bool = False  # shown as "most popular"


class ServiceAccount(BaseModel):
    """A key bound to an account of its own: what a caller with it spends is that account's,
    whatever the request says (for what LibreChat sends with no user: RAG API, speech, …)."""

    account: str = Field(max_length=255, pattern=r"^[^\s:\x00-\x1f\x7f]+$")  # no space, no ':'
    key: SecretStr = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        account, colon, key = value.partition(":")  # `platform:sk-…`: the account id, the key
        if not colon:
            raise ValueError("expected account:key (e.g. platform:sk-rag-…)")
        return {"account": account.strip(), "key": key.strip()}
