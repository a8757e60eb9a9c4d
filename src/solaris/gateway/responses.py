"""Sending whole responses on a raw ASGI `send`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.types import Send

from solaris.errors import ApiError

__all__ = ["JSON", "SSE", "send_bytes", "send_error"]

JSON = b"application/json"
SSE = b"text/event-stream; charset=utf-8"

Headers = Sequence[tuple[bytes, bytes]]


async def send_bytes(
    send: Send, status: int, body: bytes, content_type: bytes, headers: Headers = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(
    send: Send,
    error: ApiError,
    headers: Headers = (),
    render: Callable[[ApiError], bytes] = ApiError.body,
) -> None:
    """`error` answered with its status; `render` gives its body (an endpoint's error shape)."""
    await send_bytes(send, error.status, render(error), JSON, headers)
