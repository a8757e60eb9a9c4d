"""Admitting a request: read → parse → identify → limit → estimate → reserve.

Everything up to the reservation happens here, and the request leaves as a `Ticket`: who asked,
for what, and how many billable tokens are held for it (none: it is refused for want of them).
A refusal on the way is an `ApiError`, in the endpoint's shape, and nothing is held.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from starlette.types import Receive, Scope

from solaris.config import ModelPolicy, Settings
from solaris.errors import (
    BadRequest,
    Forbidden,
    RateLimited,
    ServiceUnavailable,
    StoreUnavailable,
)
from solaris.gateway.body import parse_json, read_body
from solaris.gateway.endpoints import ENDPOINTS, Endpoint
from solaris.gateway.identity import Caller, Identity
from solaris.ledger.caps import Cap, caps_for
from solaris.ledger.ledger import Ledger
from solaris.limits import Limit, RateLimiter
from solaris.metering import billing, tokenizer
from solaris.metering.billing import ToolCharge
from solaris.observability.metrics import Metrics
from solaris.observability.requests import Exchange
from solaris.texts.chat import refusal

__all__ = ["Admission", "Ticket"]

log = structlog.get_logger(__name__)

ESTIMATE_INLINE_BYTES_MAX = 64 * 1024
EXACT = Decimal(1)


@dataclass(slots=True)
class Ticket:
    """An admitted request: who, what, and how many billable tokens are held for it."""

    exchange: Exchange
    endpoint: Endpoint
    caller: Caller
    body: dict[str, Any]
    raw: bytes
    model: str
    policy: ModelPolicy
    prompt_tokens: int  # our estimate
    held_prompt: int  # the estimate with the model's margin, as reserved
    completion_cap: int
    minimum: int  # the least hold the request could be served with
    held: int  # 0: refused
    balance: int  # the account's balance at the reservation, holds aside
    refused_by: Cap | None  # the cap that refused it (a window, a model cap, the user's own)
    caps: tuple[Cap, ...]  # what it was reserved under (their alerts follow its settle)
    upstream_headers: dict[str, str]  # client headers the upstream needs too (API version)
    tools_held: int = 0  # of `held`: for the hosted tool calls the request may make
    tool_calls_cap: int | None = None  # hosted tool calls the upstream may run, if changed
    priced: ToolCharge | None = None  # the configured price, held whole (images, speech, …)

    @property
    def tokens_held(self) -> int:
        """What the hold has for tokens, the hosted tool calls' share aside."""
        return self.held - self.tools_held

    @property
    def request_id(self) -> str:
        return self.exchange.request_id

    @property
    def stream(self) -> bool:
        return self.endpoint.generates and self.body.get("stream") is True

    @property
    def in_chat(self) -> bool:
        """A LibreChat stream whose refusal can be an assistant message in the chat."""
        return self.caller.via_librechat and self.stream and self.endpoint.in_chat_block


class Admission:
    def __init__(
        self,
        settings: Settings,
        identity: Identity,
        ledger: Ledger,
        limiter: RateLimiter,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.ledger = ledger
        self.limiter = limiter
        self.metrics = metrics
        self.language = settings.language

    async def __call__(self, scope: Scope, receive: Receive, exchange: Exchange) -> Ticket:
        endpoint = ENDPOINTS[scope["path"]]
        headers: dict[bytes, bytes] = dict(scope["headers"])
        raw = await read_body(receive, headers, self.settings.body_bytes_max)
        body = parse_json(raw, headers, endpoint)
        model: str = body["model"]
        exchange.model = model
        try:
            caller = await self.identity.resolve(headers, endpoint.body_user(body))
            subscription = caller.subscription
            await self.ledger.refresh_if_due(
                caller.user_id, subscription.plan, subscription.anchored_at
            )
        except StoreUnavailable as error:
            raise self._database_down(exchange, error) from None
        exchange.user_id = caller.user_id
        exchange.external_id = caller.external_id or None
        if not caller.plan.allows(model):
            message = refusal(self.language, "model", model=model, plan=caller.plan.name)
            raise Forbidden(message, param="model")
        policy = caller.plan.policy(model, self.settings)
        priced = endpoint.priced(body, policy)
        await tokenizer.prepare(model)
        if len(raw) > ESTIMATE_INLINE_BYTES_MAX:  # tokenizing megabytes would stall the loop
            prompt_tokens = await asyncio.to_thread(endpoint.prompt_tokens, body)
        else:
            prompt_tokens = endpoint.prompt_tokens(body)
        prompt_tokens += self._stored_context(endpoint, body)
        cap = endpoint.completion_cap(body, self.settings.default_max_completion_tokens)
        await self._check_rate(caller, prompt_tokens + cap, exchange)
        # A stand-in tokenizer's estimate is held with a margin: the provider's own count
        # then rarely passes the hold (what does is still charged, and is debt).
        margin = EXACT if tokenizer.is_exact(model) else self.settings.unknown_tokenizer_margin
        held_prompt = billing.held_prompt_tokens(prompt_tokens, policy, margin)
        tokens_wanted = billing.billable(held_prompt, cap, policy)
        least = min(cap, self.settings.min_completion_tokens)
        tokens_least = billing.billable(held_prompt, least, policy)
        price, calls, asked = self._tool_calls(endpoint, body, policy)
        wanted, minimum = (
            tokens_wanted + price * calls,
            max(1, tokens_least + price * min(calls, 1)),
        )
        if priced is not None:  # known before it is forwarded: all of it, or a refusal
            wanted = minimum = max(1, priced.amount)
        caps = caps_for(subscription, model, self.ledger.clock, self.ledger.zone)
        try:
            hold = await self.ledger.reserve(
                caller.user_id,
                exchange.request_id,
                wanted,
                minimum,
                self.settings.reservation_timeout_s,
                caps,
            )
        except StoreUnavailable as error:
            raise self._database_down(exchange, error) from None
        if hold.amount:
            self.metrics.reservations_open.inc()
        ticket = Ticket(
            exchange, endpoint, caller, body, raw, model, policy, prompt_tokens, held_prompt,
            cap, minimum, hold.amount, hold.balance,
            None if hold.refused_by is None else caps[hold.refused_by], caps,
            endpoint.upstream_headers(headers), priced=priced,
        )  # fmt: skip
        if hold.amount and price and calls:
            held_calls = billing.tool_calls_held(hold.amount, tokens_wanted, price, calls)
            ticket.tools_held = price * held_calls
            if held_calls != asked:
                ticket.tool_calls_cap = held_calls  # the provider runs no more than are held
        return ticket

    def _tool_calls(
        self, endpoint: Endpoint, body: dict[str, Any], policy: ModelPolicy
    ) -> tuple[int, int, int | None]:
        """Hosted tool calls (web search, …) cost a price each, and a limit the provider keeps
        (`max_tool_calls`, a tool's `max_uses`) bounds them: a request offering a priced one
        wants the dearest offered price for each call it allows (its own limit, else
        `hosted_tool_calls_max`, sent upstream), and needs at least one. The price, the calls
        wanted (0, 0: nothing priced offered) and the request's own limit."""
        offered, asked = endpoint.hosted_tools_offered(body)
        price = billing.tool_call_price(offered, policy)
        if not price:
            return 0, 0, asked
        return price, self.settings.hosted_tool_calls_max if asked is None else asked, asked

    def _stored_context(self, endpoint: Endpoint, body: dict[str, Any]) -> int:
        """Tokens held for input the provider keeps and the body does not carry (a Responses
        `previous_response_id` or `conversation`): the configured amount, or a refusal when
        none is configured, since an unbounded input cannot be held against a balance."""
        field = endpoint.stored_context(body)
        if field is None:
            return 0
        tokens = self.settings.stored_context_tokens
        if tokens is None:
            raise BadRequest(refusal(self.language, "stored_context"), param=field)
        return tokens

    async def _check_rate(self, caller: Caller, tokens: int, exchange: Exchange) -> None:
        plan = caller.plan
        if plan.rpm is None and plan.tpm is None:
            return
        verdict = await self.limiter.check(caller.user_id, Limit(plan.rpm, plan.tpm), tokens)
        if verdict.allowed:
            return
        exchange.outcome = "limited"
        limit = plan.rpm if verdict.reason == "rpm" else plan.tpm
        message = refusal(
            self.language,
            verdict.reason,
            plan=plan.name,
            limit=limit,
            tokens=tokens,
            seconds=verdict.retry_after_s,
        )
        raise RateLimited(message, retry_after_s=verdict.retry_after_s)

    def _database_down(self, exchange: Exchange, error: BaseException) -> ServiceUnavailable:
        self.metrics.store_errors.labels("database").inc()
        log.error("database_unavailable", request_id=exchange.request_id, error=str(error))
        return ServiceUnavailable(refusal(self.language, "unavailable"))
