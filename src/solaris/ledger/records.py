"""What the ledger's request path takes and gives: a finished request's usage, a hold, and
what a settle did. Plain values: the journal stores them, the log and the metrics read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from solaris.metering.billing import ToolCharge

__all__ = ["Hold", "SettleOutcome", "UsageRecord"]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one finished request consumed; becomes one immutable usage row.

    `billable` is all of it: the tokens at their weights plus each hosted tool's calls at its
    price (`tool_charges`, each its own ledger entry, so its own statement line). `weights`
    (JSON) are the weights the tokens were billed at, kept on the row with the counts."""

    request_id: str
    user_id: int
    endpoint: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    billable: int
    estimated: bool
    status: str  # "ok" | "client_disconnected" | "upstream_cut" | "incomplete" | "failed"
    latency_ms: int
    conversation_id: str | None = None
    finished_at: datetime | None = None  # set when journaled: the replay keeps the real time
    cache_write_tokens: int = 0
    weights: str | None = None
    tool_charges: tuple[ToolCharge, ...] = ()

    def __post_init__(self) -> None:
        assert self.request_id, "a usage record needs its request id"
        assert self.billable >= 0, "billable tokens are never negative"
        assert min(self.prompt_tokens, self.completion_tokens, self.cache_write_tokens) >= 0
        assert self.tool_billable <= self.billable, (self.tool_billable, self.billable)
        assert len({charge.tool for charge in self.tool_charges}) == len(self.tool_charges)

    @property
    def tool_billable(self) -> int:
        """What the hosted tool calls cost, of `billable`."""
        return sum(charge.amount for charge in self.tool_charges)

    @property
    def token_billable(self) -> int:
        """What the tokens cost, of `billable`."""
        return self.billable - self.tool_billable


@dataclass(frozen=True, slots=True)
class Hold:
    """What a reservation got: `amount` tokens held (0: refused), and the account's balance
    then, holds aside (a refusal with a balance of at least the minimum is the user's other
    requests still holding it, not a balance used up). `refused_by`: the index of the cap that
    refused it, if one did (`caps.Cap`)."""

    amount: int
    balance: int
    refused_by: int | None = None


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    charged: int
    already_settled: bool
    crossed: tuple[int, ...] = ()  # thresholds (percent of the period) this settle crossed
    balance: int | None = None  # after the settle, when a threshold was crossed
    journaled: bool = False  # the database was away: written to the journal, replayed later
