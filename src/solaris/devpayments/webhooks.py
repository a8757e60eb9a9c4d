"""The fakes' webhook deliveries: every event they emit, signed as each provider signs it.

An `Event` holds exactly the bytes that are signed and sent. It is delivered when emitted, or
kept back while the log is held (`hold`, then `release` in the order sent or reversed); `send`
delivers any logged event again, any number of times, optionally `Tamper`ed for negative tests.
Each attempt is recorded on the event as a `Delivery`.

Stripe:        POST <url>, `Stripe-Signature: t=<unix s>,v1=HMAC-SHA256(secret, "<t>.<body>")`.
Mercado Pago:  POST <url>?data.id=<id>&type=payment, `x-request-id: <uuid>`,
               `x-signature: ts=<unix ms>,v1=HMAC-SHA256(secret, manifest)` with the manifest
               `id:<data.id, lowercased>;request-id:<x-request-id>;ts:<ts>;`. Real deliveries carry
               `ts` in milliseconds (the documentation's example shows seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from yarl import URL

from solaris.clock import utcnow

__all__ = [
    "EVENTS_KEPT",
    "Delivery",
    "Endpoints",
    "Event",
    "Provider",
    "Tamper",
    "Webhooks",
    "mercadopago_manifest",
    "mercadopago_signature",
    "stripe_signature",
]

Provider = Literal["stripe", "mercadopago"]
EVENTS_KEPT = 2_000  # the log forgets the oldest beyond this
SENDS_MAX = 10  # `send` repeats a delivery at most this many times per call
DELIVERY_TIMEOUT_S = 10.0
_STRIPE_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Stripe-Signature` header for `body` signed at `timestamp` (Unix seconds)."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def mercadopago_manifest(data_id: str, request_id: str, ts: int) -> str:
    """What Mercado Pago signs: the notification's data.id (lowercased), x-request-id and ts."""
    return f"id:{data_id.lower()};request-id:{request_id};ts:{ts};"


def mercadopago_signature(secret: str, data_id: str, request_id: str, ts: int) -> str:
    """The `x-signature` header of a Mercado Pago notification."""
    manifest = mercadopago_manifest(data_id, request_id, ts).encode()
    digest = hmac.new(secret.encode(), manifest, hashlib.sha256).hexdigest()
    return f"ts={ts},v1={digest}"


@dataclass(slots=True)
class Endpoints:
    """Where each provider's events go and the secret they are signed with (None: not sent)."""

    stripe_url: str | None = None
    stripe_secret: str = "whsec_dev"
    mercadopago_url: str | None = None
    mercadopago_secret: str = "dev-mercadopago-secret"


@dataclass(frozen=True, slots=True)
class Tamper:
    """How to spoil a delivery, for the receiver's negative tests.

    secret     sign with this secret instead of the configured one
    timestamp  sign as of this Unix time in seconds (a stale one), instead of now
    body       change what is sent after signing: Stripe's body gains a field, Mercado Pago's
               query names another data.id
    unsigned   send no signature header at all
    """

    secret: str | None = None
    timestamp: int | None = None
    body: bool = False
    unsigned: bool = False

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Tamper:
        unknown = value.keys() - {"secret", "timestamp", "body", "unsigned"}
        if unknown:
            raise ValueError(f"unknown tamper option(s): {', '.join(sorted(unknown))}")
        secret, timestamp = value.get("secret"), value.get("timestamp")
        body, unsigned = value.get("body", False), value.get("unsigned", False)
        if secret is not None and not isinstance(secret, str):
            raise ValueError("secret must be a string")
        if timestamp is not None and (
            not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0
        ):
            raise ValueError("timestamp must be Unix seconds")
        if not isinstance(body, bool) or not isinstance(unsigned, bool):
            raise ValueError("body and unsigned must be booleans")
        return cls(secret, timestamp, body, unsigned)


@dataclass(slots=True)
class Delivery:
    """One attempt: when, where, what the receiver answered (status) or why nothing came back."""

    at: str
    url: str | None
    status: int | None
    error: str | None
    headers: dict[str, str]
    tamper: dict[str, Any] | None


@dataclass(slots=True)
class Event:
    """An event as sent: `body` is signed byte for byte. `id` is Stripe's evt_… or Mercado
    Pago's notification id; `object_id` the payment object it is about."""

    seq: int
    provider: Provider
    id: str
    type: str
    object_id: str
    body: bytes
    target: str | None = None  # Mercado Pago: the payment's notification_url, when it gave one
    deliveries: list[Delivery] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "provider": self.provider,
            "id": self.id,
            "type": self.type,
            "object_id": self.object_id,
            "body": orjson.loads(self.body),
            "deliveries": [asdict(delivery) for delivery in self.deliveries],
        }


class Webhooks:
    """The log of emitted events and their delivery. Serve it from one event loop."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self.held: list[Event] | None = None  # a list while holding
        self._seq = 0
        self._session: aiohttp.ClientSession | None = None
        self._order = asyncio.Lock()  # emits deliver one after the other, in the order emitted
        self._background: set[asyncio.Task[None]] = set()

    def new_event(
        self,
        provider: Provider,
        id: str,
        type: str,
        object_id: str,
        body: bytes,
        target: str | None,
    ) -> Event:
        self._seq += 1
        event = Event(self._seq, provider, id, type, object_id, body, target)
        self.events.append(event)
        return event

    def find(self, seq: int) -> Event | None:
        return next((event for event in self.events if event.seq == seq), None)

    async def emit(self, events: list[Event]) -> None:
        """Deliver each in turn, or keep them back while held."""
        async with self._order:
            for event in events:
                if self.held is not None:
                    self.held.append(event)
                else:
                    await self.deliver(event, Tamper())

    def emit_soon(self, events: list[Event]) -> None:
        """`emit` after the answer, as the providers do: a receiver that calls the API back
        while its own request to the API is still open must not wait on its webhook."""
        if not events:
            return
        task = asyncio.get_running_loop().create_task(self.emit(events))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the deliveries `emit_soon` started."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def hold(self) -> None:
        if self.held is None:
            self.held = []

    async def release(self, reverse: bool = False) -> list[Event]:
        """Stop holding; deliver what was held, in the order emitted or reversed."""
        held, self.held = self.held or [], None
        async with self._order:
            for event in reversed(held) if reverse else held:
                await self.deliver(event, Tamper())
        return held

    async def send(
        self, event: Event, tamper: Tamper, times: int = 1, urls: list[str] | None = None
    ) -> list[Delivery]:
        """Deliver `event` again, `times` over; or, given `urls`, one signed request (the same
        bytes) posted to each of them at the same instant, as one delivery reaching two
        replicas of the receiver would."""
        assert 1 <= times <= SENDS_MAX, times
        if not urls:
            return [await self.deliver(event, tamper) for _ in range(times)]
        assert len(urls) <= SENDS_MAX, urls
        headers, body = self._signed(event, tamper)
        posts = (
            self._post(event, self._url(event, tamper, url), headers, body, tamper) for url in urls
        )
        return list(await asyncio.gather(*posts))

    async def deliver(self, event: Event, tamper: Tamper) -> Delivery:
        headers, body = self._signed(event, tamper)
        return await self._post(event, self._url(event, tamper), headers, body, tamper)

    async def _post(
        self, event: Event, url: str | None, headers: dict[str, str], body: bytes, tamper: Tamper
    ) -> Delivery:
        status: int | None = None
        error: str | None = None
        if url is None:
            error = f"no {event.provider} webhook URL configured"
        else:
            try:
                session = self._client()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        tampered = None if tamper == Tamper() else asdict(tamper)
        delivery = Delivery(utcnow().isoformat(), url, status, error, headers, tampered)
        event.deliveries.append(delivery)
        return delivery

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    def _signed(self, event: Event, tamper: Tamper) -> tuple[dict[str, str], bytes]:
        """The headers and body, signed as of now or as of tamper.timestamp."""
        now_ms = time.time_ns() // 1_000_000
        if tamper.timestamp is not None:
            now_ms = tamper.timestamp * 1000
        if event.provider == "stripe":
            secret = self.endpoints.stripe_secret if tamper.secret is None else tamper.secret
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": _STRIPE_USER_AGENT,
            }
            if not tamper.unsigned:
                headers["Stripe-Signature"] = stripe_signature(secret, now_ms // 1000, event.body)
            body = event.body
            if tamper.body:
                body = orjson.dumps({**orjson.loads(body), "tampered": True})
            return headers, body
        secret = self.endpoints.mercadopago_secret if tamper.secret is None else tamper.secret
        request_id = str(uuid.uuid4())  # a new one for each delivery
        headers = {"Content-Type": "application/json", "x-request-id": request_id}
        if not tamper.unsigned:
            signature = mercadopago_signature(secret, event.object_id, request_id, now_ms)
            headers["x-signature"] = signature
        return headers, event.body

    def _url(self, event: Event, tamper: Tamper, given: str | None = None) -> str | None:
        """Where the event goes: `given`, else Stripe's configured endpoint, else the payment's
        notification_url or Mercado Pago's configured one, with the notification's query."""
        if event.provider == "stripe":
            return given or self.endpoints.stripe_url
        base = given or event.target or self.endpoints.mercadopago_url
        if base is None:
            return None
        data_id = str(int(event.object_id) + 1) if tamper.body else event.object_id
        query = {"data.id": data_id, "type": "payment"}
        if given is None and event.target is not None:
            query = {"source_news": "webhooks", **query}
        return str(URL(base).update_query(query))
