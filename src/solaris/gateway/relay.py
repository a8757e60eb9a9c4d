"""Reading usage out of upstream answers, streamed (SSE) or not, without buffering the stream.

`SseRelay.feed` takes the bytes as they arrive and returns what can go to the client now: every
complete event, as received, except the usage chunk that the gateway itself asked for, which is
removed for clients that did not ask, and the answer's closing events (`[DONE]`, or what the
endpoint names in `closes_stream`), which are held until the request is settled so a notice can
go before them. Only events that carry a usage object (or others the
endpoint names, `parsed_events`) are parsed; the other
payloads are kept (by reference) and parsed only if the stream ends without usage, to count what
was generated with the offline tokenizer.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson
from starlette.types import Receive

from solaris.gateway.endpoints import Endpoint, Usage
from solaris.gateway.endpoints.base import event_data

__all__ = ["ClientWatch", "SseRelay"]

DONE_EVENT = re.compile(rb"data: ?\[DONE\]\n\n")
KEPT_BYTES_MAX = 4 * 1024 * 1024  # beyond this, kept payloads are folded into their text


class SseRelay:
    """One upstream stream: forwards events, finds usage, remembers what was generated."""

    def __init__(self, endpoint: Endpoint, hide_usage: bool) -> None:
        self.endpoint = endpoint
        self.hide_usage = hide_usage
        self.usage: Usage | None = None
        self.tool_calls: dict[str, int] = {}  # hosted tool calls finished, by item type
        self.finish: str | None = None  # the stream said it ended short (endpoint's word)
        self._parsed = endpoint.parsed_events
        self.done = False  # the upstream said [DONE]; held back until the request is settled
        self.closing = b""  # the closing events (`closes_stream` on), held back as [DONE] is
        self.parts = 0  # output parts the stream opened (`opens_output`)
        self._closed = False
        self.events = 0
        self._tail = b""
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._texts: list[str] = []

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk if self._tail else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._tail = data
            return b""
        complete, self._tail = data[: end + 2], data[end + 2 :]
        if b"[DONE]" in complete and DONE_EVENT.search(complete):
            complete = DONE_EVENT.sub(b"", complete)
            self.done = True
        if self._parsed.search(complete) is None:
            self._keep_payloads(complete)
            return self._hold(complete)
        events = complete[:-2].split(b"\n\n")
        return b"".join([self._hold(self._event(event + b"\n\n")) for event in events])

    def text(self) -> str:
        """Everything generated so far (only called when the stream reported no usage)."""
        self._fold()
        return "".join(self._texts)

    def _event(self, event: bytes) -> bytes:
        if self._parsed.search(event) is None:
            self._keep_payloads(event)
            return event
        payload = orjson.loads(event_data(event))
        self._closed = self._closed or self.endpoint.closes_stream(payload)
        self.parts += self.endpoint.opens_output(payload)
        self.usage = self.endpoint.stream_usage(self.usage, payload)
        self.tool_calls = self.endpoint.stream_tool_calls(self.tool_calls, payload)
        self.finish = self.endpoint.finish_status(payload) or self.finish
        self._texts.extend(self.endpoint.generated_text(payload))
        if not self.hide_usage:
            return event
        if not payload.get("choices"):
            return b""  # the usage-only chunk the client did not ask for
        payload.pop("usage", None)
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def _hold(self, events: bytes) -> bytes:
        if not self._closed:
            return events
        self.closing += events
        return b""

    def _keep_payloads(self, events: bytes) -> None:
        self.events += events.count(b"data:")
        self._kept.append(events)
        self._kept_bytes += len(events)
        if self._kept_bytes > KEPT_BYTES_MAX:
            self._fold()

    def _fold(self) -> None:
        for block in self._kept:
            for line in block.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data and data != b"[DONE]":
                    try:
                        self._texts.extend(self.endpoint.generated_text(orjson.loads(data)))
                    except orjson.JSONDecodeError:
                        continue  # a broken line from a cut stream counts as nothing
        self._kept.clear()
        self._kept_bytes = 0


class ClientWatch:
    """Notices the client hanging up mid-stream and closes the upstream so the relay stops."""

    def __init__(self, receive: Receive, response: aiohttp.ClientResponse) -> None:
        self.gone = False
        self._task = asyncio.create_task(self._watch(receive, response))

    async def _watch(self, receive: Receive, response: aiohttp.ClientResponse) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        response.close()

    def stop(self) -> None:
        self._task.cancel()
