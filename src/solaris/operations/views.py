"""What the admin operations return: pydantic models the API answers with as they are, and the
dashboard renders. Token amounts are integers (billable tokens); costs are USD estimates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from solaris.config import UsageWindow
from solaris.reports.usage import UsageRow, Usd

__all__ = [
    "AlertEntry",
    "ErrorBody",
    "KeyView",
    "LotView",
    "Overview",
    "PlanSummary",
    "RankedRow",
    "UsageEntry",
    "UsageRow",
    "UserDetail",
    "UserSummary",
]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class UserSummary(_View):
    id: int
    external_id: str  # LibreChat's user id
    email: str | None
    plan: str | None
    balance: int  # signed: below zero when the provider counted more than was held
    owed: int  # -balance when the balance is below zero, else 0
    reserved: int
    blocked: bool
    blocked_reason: str | None
    blocked_at: datetime | None
    created_at: datetime


class LotView(_View):
    """A credit the balance is made of (allowance, grant, purchase, refund)."""

    id: int
    kind: str
    amount: int
    remaining: int
    expires_at: datetime | None
    created_at: datetime


class KeyView(_View):
    """A per-user API key, by its prefix (the key itself is never shown again)."""

    id: int
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class UsageEntry(_View):
    """One served request."""

    created_at: datetime
    request_id: str
    endpoint: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    billable: int
    estimated: bool
    status: str
    latency_ms: int


class UserDetail(UserSummary):
    held: int  # reserved by requests in flight (not expired)
    available: int
    period_start: datetime
    period_end: datetime
    allowance_tokens: int  # the plan's allowance per period
    period_used: int
    lots: list[LotView]
    keys: list[KeyView]
    recent_usage: list[UsageEntry]


class PlanSummary(_View):
    name: str
    allowance_tokens: int
    period: str
    anchor: str
    rpm: int | None
    tpm: int | None
    models: list[str]
    rollover: bool
    rollover_max_tokens: int | None
    rollover_max_percent: int | None
    windows: list[UsageWindow]
    model_caps: dict[str, int]
    default: bool
    users: int  # subscribed now


class AlertEntry(_View):
    id: int
    kind: str
    channel: str
    recipient: str
    state: str
    attempts: int
    payload: dict[str, Any]
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class RankedRow(_View):
    key: str
    billable: int
    requests: int


class Overview(_View):
    """The dashboard's first page. Day and month are UTC. Counts of blocked and failed requests
    come from this process's metrics (since `process_started_at`): the database keeps no row
    of a request it did not serve."""

    generated_at: datetime
    tokens_today: int
    tokens_this_month: int
    requests_today: int
    cost_today_usd: Usd | None
    active_users_today: int
    users_total: int
    users_blocked: int
    top_users: list[RankedRow]  # this month
    top_models: list[RankedRow]  # this month
    latency_p50_ms: int | None  # served requests today, whole request
    latency_p95_ms: int | None
    process_started_at: datetime
    process_requests: int
    process_blocked_requests: int  # refused for balance
    process_limited_requests: int  # refused for RPM/TPM
    process_error_rate: float | None  # upstream errors and unavailability / requests


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error of the gateway, in OpenAI's shape."""

    error: ErrorDetail
