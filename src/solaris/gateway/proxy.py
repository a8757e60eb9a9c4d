"""The metered proxy for every API shape in `gateway/endpoints` (chat, completions, embeddings,
responses, messages, images, speech, moderations); what differs between shapes the endpoint
says (a byte answer is relayed as it comes, `binary_answer`), never a branch on a shape here.

One request flows one way: read → parse → identify → estimate → reserve → forward → relay →
settle. `admit` does everything up to the reservation; `serve` forwards and relays, and settles in
a `finally` so that a disconnect, a broken upstream or a shutdown still leaves exactly one usage
row (or a release when the upstream failed and nothing was generated). Each request's story is
kept in an `Exchange` and logged and measured once, at the end — whatever happened, a bug
included (answered 500 in the endpoint's error shape, with its traceback in the log).

When the database cannot take a settlement it goes to the local journal (`ledger/settlements`);
a non-streamed answer whose settlement reached neither is not sent (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from starlette.types import Receive, Scope, Send

from solaris.config import Settings
from solaris.errors import (
    ApiError,
    InternalError,
    RateLimited,
    ServiceUnavailable,
    SettlementLost,
    StoreUnavailable,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from solaris.gateway.admission import Admission, Ticket
from solaris.gateway.block import Refusals
from solaris.gateway.body import upstream_body
from solaris.gateway.endpoints import ENDPOINTS, Usage
from solaris.gateway.identity import Identity
from solaris.gateway.recording import usage_record
from solaris.gateway.relay import ClientWatch, SseRelay
from solaris.gateway.responses import SSE, send_bytes, send_error
from solaris.gateway.upstream import Upstream
from solaris.ledger.cap_alerts import CapAlerts, CapReached
from solaris.ledger.ledger import Ledger, SettleOutcome, UsageRecord
from solaris.ledger.settlements import Settlements
from solaris.limits import RateLimiter
from solaris.metering import billing
from solaris.observability.requests import Exchange, RequestLog
from solaris.texts.caps import cap_notice
from solaris.texts.chat import chat_notice, refusal

__all__ = ["Proxy"]

log = structlog.get_logger(__name__)

# How a relayed stream ends for the client: an error event (in the endpoint's shape) tells SDKs
# the stream broke.
DONE = b"data: [DONE]\n\n"
STREAM_ENDINGS: dict[str, ApiError] = {
    "upstream_cut": UpstreamUnreachable("The model provider's stream broke off."),
    "unrecorded": ServiceUnavailable("The gateway could not record this answer's usage."),
}


class Proxy:
    def __init__(
        self,
        settings: Settings,
        identity: Identity,
        ledger: Ledger,
        settlements: Settlements,
        upstream: Upstream,
        signing_key: bytes,
        requests: RequestLog,
        limiter: RateLimiter,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.settlements = settlements
        self.upstream = upstream
        self.language = settings.language
        self.signing_key = signing_key
        self.requests = requests
        self.metrics = requests.metrics
        self.admit = Admission(settings, identity, ledger, limiter, requests.metrics)
        self.block = Refusals(settings, ledger, signing_key)
        self.cap_alerts = CapAlerts(
            ledger.database, ledger.thresholds, settings.language, settings.timezone,
            settings.public_base_url,
        )  # fmt: skip
        self._settling: set[asyncio.Task[SettleOutcome]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = ENDPOINTS[scope["path"]]
        exchange = Exchange("req_" + uuid.uuid4().hex, endpoint.name, time.perf_counter())
        try:
            ticket = await self.admit(scope, receive, exchange)
            if ticket.held == 0:
                await self.block(ticket, send)
            else:
                await self.serve(ticket, receive, send)
        except ApiError as error:
            exchange.status = error.status
            if not exchange.outcome:
                exchange.outcome = "unavailable" if error.status == 503 else "rejected"
            exchange.error = error.code or error.type
            headers = [(b"x-request-id", exchange.request_id.encode())]
            if isinstance(error, RateLimited) and error.retry_after_s > 0:
                headers.append((b"retry-after", str(math.ceil(error.retry_after_s)).encode()))
            await send_error(send, error, headers, endpoint.error_body)
        except Exception:
            log.exception("request_failed", request_id=exchange.request_id)
            exchange.status, exchange.outcome, exchange.error = 500, "error", "internal_error"
            # If the answer had started, the client sees it cut short instead.
            with contextlib.suppress(RuntimeError):
                failed = InternalError("The gateway failed on this request.")
                await send_error(send, failed, (), endpoint.error_body)
        finally:
            self.requests.finish(exchange, time.perf_counter())

    async def serve(self, ticket: Ticket, receive: Receive, send: Send) -> None:
        exchange = ticket.exchange
        endpoint = ticket.endpoint
        cap = self._capped_completion(ticket)
        alias, calls = ticket.policy.upstream_name, ticket.tool_calls_cap
        data = upstream_body(ticket.raw, ticket.body, endpoint, alias, cap, calls)
        exchange.upstream_sent = time.perf_counter()
        try:
            response = await self.upstream.request(
                "POST", endpoint.upstream_path, data, ticket.request_id, ticket.upstream_headers
            )
        except ApiError as error:
            exchange.upstream_done = time.perf_counter()
            exchange.outcome = "upstream_error"
            await self._release(ticket)
            raise error from None
        exchange.upstream_first_byte = time.perf_counter()
        try:
            if response.status >= 400:
                await self._pass_error(ticket, response, send)
            elif endpoint.binary_answer:
                await self._relay_bytes(ticket, response, receive, send)
            elif ticket.stream and response.content_type == "text/event-stream":
                await self._relay_stream(ticket, response, receive, send)
            else:
                await self._relay_whole(ticket, response, send)
        finally:
            response.release()

    async def drain(self, timeout_s: float) -> None:
        """Wait for settlements still running (at shutdown), up to `timeout_s`."""
        if self._settling:
            await asyncio.wait(self._settling, timeout=timeout_s)

    def _capped_completion(self, ticket: Ticket) -> int | None:
        """A lower completion limit when the balance covers less than the client asked for."""
        if not ticket.endpoint.generates:
            return None
        wanted = billing.billable(ticket.held_prompt, ticket.completion_cap, ticket.policy)
        if ticket.tokens_held >= wanted:
            return None
        affordable = billing.completion_tokens_affordable(
            ticket.tokens_held, ticket.held_prompt, ticket.policy
        )
        return max(1, affordable // ticket.endpoint.choices(ticket.body))

    async def _pass_error(
        self, ticket: Ticket, response: aiohttp.ClientResponse, send: Send
    ) -> None:
        """Upstream 4xx/5xx: its status and body go back as they are; nothing is charged."""
        try:
            payload = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            payload = UpstreamUnreachable("The model provider failed.").body()
        ticket.exchange.upstream_done = time.perf_counter()
        ticket.exchange.status = response.status
        ticket.exchange.outcome = "upstream_error"
        await self._release(ticket)
        content_type = response.headers.get("Content-Type", "application/json").encode()
        await send_bytes(
            send,
            response.status,
            payload,
            content_type,
            [(b"x-request-id", ticket.request_id.encode())],
        )

    async def _relay_whole(
        self, ticket: Ticket, response: aiohttp.ClientResponse, send: Send
    ) -> None:
        exchange = ticket.exchange
        try:
            payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            exchange.upstream_done = time.perf_counter()
            exchange.outcome = "upstream_error"
            await self._release(ticket)
            if isinstance(error, TimeoutError):
                raise UpstreamTimeout("The model provider did not answer in time.") from None
            raise UpstreamUnreachable("The model provider's answer broke off.") from None
        exchange.upstream_done = time.perf_counter()
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError:
            answer = None
        parsed: Mapping[str, Any] = answer if isinstance(answer, dict) else {}
        endpoint = ticket.endpoint
        status = endpoint.finish_status(parsed) or "ok"
        record = self._record(
            ticket, endpoint.usage(parsed), lambda: "".join(endpoint.generated_text(parsed)),
            status, endpoint.tool_calls(parsed),
        )  # fmt: skip
        # Settled (or journaled) before the answer leaves: a crash can then cost the user an
        # answer they paid for, but never give one away unrecorded.
        try:
            settled = await self._settle(record)
        except SettlementLost:
            exchange.record = None
            raise ServiceUnavailable(refusal(self.language, "unavailable")) from None
        exchange.status, exchange.outcome = response.status, "served"
        content_type = response.headers.get("Content-Type", "application/json").encode()
        id_header = [(b"x-request-id", ticket.request_id.encode())]
        await send_bytes(send, response.status, payload, content_type, id_header)
        await self._alert_caps(ticket, settled)  # after the answer: no line to add to it

    async def _relay_stream(
        self, ticket: Ticket, response: aiohttp.ClientResponse, receive: Receive, send: Send
    ) -> None:
        exchange = ticket.exchange
        exchange.status, exchange.outcome = response.status, "served"
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", SSE),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", ticket.request_id.encode()),
                ],
            }
        )
        endpoint = ticket.endpoint
        relay = SseRelay(endpoint, hide_usage=endpoint.hides_usage(ticket.body))
        client = ClientWatch(receive, response)
        status = "interrupted"  # stays so only if the server itself cancels us (shutdown)
        try:
            async for chunk in response.content.iter_any():
                if forward := relay.feed(chunk):
                    await send({"type": "http.response.body", "body": forward, "more_body": True})
            status = "ok"
        except (aiohttp.ClientError, TimeoutError):  # our own close when the client left, too
            status = "ok" if client.gone else "upstream_cut"
        finally:
            exchange.upstream_done = time.perf_counter()
            client.stop()
            if client.gone and (relay.usage is None or relay.usage.completion_tokens is None):
                # Not for one leaving after the usage had it all; a prompt-only usage (Anthropic's
                # message_start) is not all.
                status = "client_disconnected"
            if status != "ok":
                response.close()  # stop the provider generating for nobody
            if status == "ok" and relay.finish is not None:
                status = relay.finish  # the answer itself said it ended short
            if status == "upstream_cut":
                exchange.outcome, exchange.error = "upstream_error", "cut"
            record = self._record(ticket, relay.usage, relay.text, status, relay.tool_calls)
            try:
                settled: SettleOutcome | None = await self._settle(record)  # before the end
            except SettlementLost:
                settled, status = None, "unrecorded"
                exchange.record, exchange.error = None, "settlement_lost"
            broke = STREAM_ENDINGS.get(status)
            ending = relay.closing + (b"" if broke is None else endpoint.stream_error(broke))
            reached = await self._alert_caps(ticket, settled) if status == "ok" else []
            if status == "ok" and settled is not None and (settled.crossed or reached):
                ending = self._notice(ticket, settled, relay, reached)
            if relay.done and status != "unrecorded":
                ending += DONE
            await send({"type": "http.response.body", "body": ending})

    async def _relay_bytes(
        self, ticket: Ticket, response: aiohttp.ClientResponse, receive: Receive, send: Send
    ) -> None:
        """An answer of bytes (speech's audio) goes to the client as it comes, never buffered;
        its price was known and held before it was forwarded, so it is charged whole however
        the stream ends (the provider billed the characters it was sent)."""
        exchange = ticket.exchange
        exchange.status, exchange.outcome = response.status, "served"
        kind = response.headers.get("Content-Type", "application/octet-stream").encode()
        headers = [(b"content-type", kind), (b"x-request-id", ticket.request_id.encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        client = ClientWatch(receive, response)
        status = "interrupted"  # stays so only if the server itself cancels us (shutdown)
        try:
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            status = "ok"
        except (aiohttp.ClientError, TimeoutError):  # our own close when the client left, too
            status = "client_disconnected" if client.gone else "upstream_cut"
        finally:
            exchange.upstream_done = time.perf_counter()
            client.stop()
            if status != "ok":
                response.close()
            if status == "upstream_cut":
                exchange.outcome, exchange.error = "upstream_error", "cut"
            try:
                await self._settle(self._record(ticket, None, lambda: "", status, {}))
            except SettlementLost:
                exchange.record, exchange.error = None, "settlement_lost"
            await send({"type": "http.response.body", "body": b""})

    def _notice(
        self, ticket: Ticket, settled: SettleOutcome, relay: SseRelay, reached: list[CapReached]
    ) -> bytes:
        """The held closing events, with the in-chat line for a reply that crossed a threshold
        of the balance or of a cap before them (shapes that have room)."""
        if not (self.settings.alert_chat_notice and ticket.endpoint.in_chat_block):
            return relay.closing
        language = self.settings.language
        lines = [cap_notice(language, data) for data in reached]
        if settled.crossed:
            lines.insert(0, chat_notice(language, max(settled.crossed), settled.balance or 0))
        line = "\n\n".join(lines)
        endpoint = ticket.endpoint
        return endpoint.with_notice(
            line, ticket.model, ticket.request_id, relay.closing, relay.parts
        )

    def _record(
        self, ticket: Ticket, usage: Usage | None, generated: Callable[[], str], status: str,
        tool_calls: Mapping[str, int],
    ) -> UsageRecord:  # fmt: skip
        return usage_record(ticket, usage, generated, status, tool_calls, self.settings.log_content)

    async def _alert_caps(self, ticket: Ticket, settled: SettleOutcome | None) -> list[CapReached]:
        """The alerts of the caps the request was reserved under; those it was first to reach."""
        if not ticket.caps or settled is None or settled.already_settled:
            return []
        try:
            user, plan = ticket.caller.user_id, ticket.caller.plan.name
            return await self.cap_alerts.after_settle(
                user, plan, ticket.caps, settled.charged, self.ledger.clock()
            )
        except StoreUnavailable as error:  # the next settle in the window raises it
            log.warning("cap_alerts_failed", request_id=ticket.request_id, error=str(error))
            return []

    async def _settle(self, record: UsageRecord) -> SettleOutcome:
        """Settle in a task of its own: a cancelled request (shutdown) still settles, and
        `drain` waits for it before the pools close. Raises `SettlementLost` when the usage
        reached neither the database nor the journal."""
        task = asyncio.create_task(self._settle_once(record))
        self._settling.add(task)
        task.add_done_callback(self._settled)
        return await asyncio.shield(task)

    def _settled(self, task: asyncio.Task[SettleOutcome]) -> None:
        self._settling.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a loss is logged where it happens, not by asyncio

    async def _settle_once(self, record: UsageRecord) -> SettleOutcome:
        try:
            return await self.settlements.settle(record)
        finally:
            self.metrics.reservations_open.dec()

    async def _release(self, ticket: Ticket) -> None:
        self.metrics.reservations_open.dec()
        try:
            await self.ledger.release(ticket.caller.user_id, ticket.request_id)
        except StoreUnavailable as error:  # the reservation expires by itself
            self.metrics.store_errors.labels("database").inc()
            log.warning("release_failed", request_id=ticket.request_id, error=str(error))
