"""A finished request's usage row, from what the provider reported and what the gateway knew.

The provider's numbers where it reported them, the gateway's own count where it reported none
(never a zero for an unknown: the row says it was estimated), each part at its weight, and the
hosted tool calls of the answer at their prices. A request with a configured price (an image,
speech, a moderation) whose answer reports no token usage is charged that price, as a line of
its own (`tool_calls`), and its row has no `weights`: no token of it was billed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from solaris.gateway.admission import Ticket
from solaris.gateway.endpoints import Usage
from solaris.ledger.ledger import UsageRecord
from solaris.metering import billing, tokenizer

__all__ = ["usage_record"]


def usage_record(
    ticket: Ticket, usage: Usage | None, generated: Callable[[], str], status: str,
    tool_calls: Mapping[str, int], log_content: bool,
) -> UsageRecord:  # fmt: skip
    reported = usage or Usage(prompt_tokens=None, completion_tokens=None)
    prompt, completion = reported.prompt_tokens, reported.completion_tokens
    estimated = prompt is None or completion is None
    if prompt is None:
        prompt = ticket.prompt_tokens
    if completion is None:
        completion = (
            tokenizer.count_tokens(ticket.model, generated()) if ticket.endpoint.generates else 0
        )
    counts = billing.TokenCounts(
        prompt, completion, reported.cached_tokens, reported.cache_write_tokens,
        reported.reasoning_tokens,
    )  # fmt: skip
    weights: str | None = billing.weights_json(ticket.policy, prompt)
    if usage is None and ticket.priced is not None:
        charged, weights = ticket.priced.amount, None
        tools: tuple[billing.ToolCharge, ...] = (ticket.priced,) if charged else ()
    else:
        charged, tools = billing.charge(counts, tool_calls, ticket.policy)
    record = UsageRecord(
        request_id=ticket.request_id,
        user_id=ticket.caller.user_id,
        endpoint=ticket.endpoint.name,
        model=ticket.model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=reported.cached_tokens,
        reasoning_tokens=reported.reasoning_tokens,
        billable=charged,
        estimated=estimated,
        status=status,
        latency_ms=int((time.perf_counter() - ticket.exchange.started) * 1000),
        conversation_id=ticket.caller.conversation_id,
        cache_write_tokens=reported.cache_write_tokens,
        weights=weights,
        tool_charges=tools,
    )
    ticket.exchange.record = record
    if log_content:  # off by default: logs never hold what users wrote
        field = ticket.endpoint.input_field
        ticket.exchange.content = {"input": ticket.body.get(field), "output": generated()}
    return record
