"""What the admin API accepts: request bodies and parameter types, every one bounded.

Text is refused when it holds NUL or lone surrogates (PostgreSQL and UTF-8 cannot store them),
numbers stay inside what the database's columns hold, dates inside years that period
arithmetic cannot overflow. So bad input is always a 400, never a database error.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from solaris.clock import as_utc
from solaris.config import (
    LONG_CONTEXT_TOKENS_MAX,
    TOOL_PRICE_MAX,
    HostedTool,
    ModelPolicy,
    PlanConfig,
    UsageWindow,
    rollover_problem,
)
from solaris.config.items import CAPS_MAX
from solaris.operations.core import TOKENS_MAX

__all__ = [
    "ID_MAX",
    "BlockBody",
    "Credentials",
    "DeductBody",
    "GrantBody",
    "Moment",
    "NewKey",
    "PlanBody",
    "PlanChoice",
    "Text",
    "to_utc",
]

ID_MAX = 2**62  # a BIGINT id, with room
YEARS = (1970, 9000)


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode") from None
    return value


def to_utc(moment: datetime) -> datetime:
    """Datetimes without a zone are UTC; the year must be within YEARS."""
    try:
        moment = as_utc(moment)
    except OverflowError:
        raise ValueError("the date is out of range") from None
    if not YEARS[0] <= moment.year <= YEARS[1]:
        raise ValueError(f"the year must be between {YEARS[0]} and {YEARS[1]}")
    return moment


Text = Annotated[str, AfterValidator(_storable)]
Moment = Annotated[datetime, AfterValidator(to_utc)]
Idempotency = Annotated[
    Text | None,
    Field(default=None, min_length=1, max_length=100, description="A repeat applies once."),
]


class Credentials(BaseModel):
    email: Annotated[Text, Field(min_length=3, max_length=320)]
    password: Annotated[Text, Field(min_length=1, max_length=1024)]


class GrantBody(BaseModel):
    tokens: int = Field(ge=1, le=TOKENS_MAX, description="Billable tokens to add.")
    note: Annotated[Text, Field(max_length=500, description="Why; kept in the ledger.")] = ""
    expires_at: Moment | None = Field(default=None, description="The credit expires then.")
    idempotency_key: Idempotency = None


class DeductBody(BaseModel):
    tokens: int = Field(ge=1, le=TOKENS_MAX, description="Billable tokens to take away.")
    note: Annotated[Text, Field(min_length=1, max_length=500, description="Why (required).")]
    idempotency_key: Idempotency = None


class BlockBody(BaseModel):
    reason: Annotated[Text, Field(min_length=1, max_length=500, description="For the audit.")]


class PlanChoice(BaseModel):
    plan: Annotated[Text, Field(min_length=1, max_length=64)]


class NewKey(BaseModel):
    key: str = Field(description="The user's new API key: shown this once.")


PartWeight = Annotated[Decimal, Field(ge=0, le=1000, allow_inf_nan=False)]
ToolPrice = Annotated[int, Field(ge=0, le=TOOL_PRICE_MAX)]


class Weights(BaseModel):
    """A model's weights in a plan; unset part weights follow input or output (README, "What a
    request costs")."""

    input_weight: Decimal = Field(default=Decimal(1), gt=0, le=1000, allow_inf_nan=False)
    output_weight: Decimal = Field(default=Decimal(1), gt=0, le=1000, allow_inf_nan=False)
    cached_input_weight: PartWeight | None = None
    cache_write_weight: PartWeight | None = None
    reasoning_weight: PartWeight | None = None
    tool_prices: dict[HostedTool, ToolPrice] = Field(default_factory=dict)
    # The priced routes (README, "Images, speech and moderation: priced routes").
    image_price: ToolPrice | None = None
    speech_price: Decimal | None = Field(default=None, ge=0, le=TOOL_PRICE_MAX, allow_inf_nan=False)
    moderation_price: ToolPrice = 0
    # The long-context tier (README, "Long-context tiers").
    long_context_threshold: int | None = Field(default=None, ge=1, le=LONG_CONTEXT_TOKENS_MAX)
    long_context_input_weight: Decimal | None = Field(
        default=None, gt=0, le=1000, allow_inf_nan=False
    )
    long_context_output_weight: Decimal | None = Field(
        default=None, gt=0, le=1000, allow_inf_nan=False
    )

    @model_validator(mode="after")
    def _as_configured(self) -> Weights:
        ModelPolicy(**self.model_dump())  # the YAML's checks (a tier needs a threshold, …): 422
        return self


ModelName = Annotated[Text, Field(min_length=1, max_length=128)]


class PlanBody(BaseModel):
    """A plan; a plan named in the YAML config is written again from there at start-up."""

    allowance_tokens: int = Field(ge=0, le=TOKENS_MAX)
    period: Literal["monthly", "weekly", "daily"] = "monthly"
    anchor: Literal["subscription", "calendar"] = "subscription"
    rpm: int | None = Field(default=None, ge=1, le=10**9)
    tpm: int | None = Field(default=None, ge=1, le=10**9)
    models: list[ModelName] = Field(default_factory=lambda: ["*"], min_length=1, max_length=200)
    weights: dict[ModelName, Weights] = Field(default_factory=dict, max_length=200)
    rollover: bool = False
    rollover_max_tokens: int | None = Field(default=None, ge=0, le=TOKENS_MAX)
    rollover_max_percent: int | None = Field(default=None, ge=0, le=1000)
    windows: list[UsageWindow] = Field(default_factory=list, max_length=CAPS_MAX)
    model_caps: dict[ModelName, int] = Field(default_factory=dict, max_length=CAPS_MAX)
    default: bool = False

    @model_validator(mode="after")
    def _one_rollover_cap(self) -> PlanBody:
        if problem := rollover_problem(
            self.rollover, self.rollover_max_tokens, self.rollover_max_percent
        ):
            raise ValueError(problem)
        return self

    def config(self) -> PlanConfig:
        weights = {model: ModelPolicy(**w.model_dump()) for model, w in self.weights.items()}
        return PlanConfig(
            **self.model_dump(exclude={"weights", "windows"}), weights=weights, windows=self.windows
        )
