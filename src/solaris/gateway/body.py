"""Reading, checking and preparing request bodies: the only place a body is parsed.

The body is parsed once (orjson) and forwarded as received unless the gateway must change it
(the endpoint says how): `stream_options.include_usage` on chat streams, an operator's model
alias, or a completion cap (`max_tokens`, `max_output_tokens`…) when the balance covers less
than the client asked for. Unknown fields always pass through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import Receive

from solaris.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from solaris.gateway.endpoints import Endpoint

__all__ = ["parse_json", "read_body", "upstream_body"]


async def read_body(receive: Receive, headers: Mapping[bytes, bytes], limit: int) -> bytes:
    """The whole request body, refusing more than `limit` bytes before reading them all."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("The client went away before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


MODEL_NAME_LENGTH_MAX = 128  # the usage row's `model` column


def parse_json(raw: bytes, headers: Mapping[bytes, bytes], endpoint: Endpoint) -> dict[str, Any]:
    content_type = headers.get(b"content-type")
    if content_type is not None and not content_type.lower().startswith(b"application/json"):
        raise UnsupportedMediaType(
            "Send the request body as JSON (Content-Type: application/json)."
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    if "model" not in body and endpoint.default_model is not None:
        body["model"] = endpoint.default_model  # as the upstream would (and it is told so)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("You must provide a model parameter.", param="model")
    if len(model) > MODEL_NAME_LENGTH_MAX or not model.isprintable():
        # The usage row keeps the name: refused now rather than unrecordable after the answer.
        raise BadRequest(
            f"'model' must be printable text of at most {MODEL_NAME_LENGTH_MAX} characters.",
            param="model",
        )
    endpoint.check(body)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("'stream' must be a boolean.", param="stream")
    return body


def upstream_body(
    raw: bytes,
    body: dict[str, Any],
    endpoint: Endpoint,
    upstream_model: str | None,
    completion_cap: int | None,
    tool_calls_cap: int | None = None,
) -> bytes:
    """The bytes to forward: `raw` itself unless the endpoint says something must change, or
    the hosted tool calls must be capped to what is held."""
    changes = endpoint.upstream_changes(body, upstream_model, completion_cap)
    if tool_calls_cap is not None:
        changes |= endpoint.tool_calls_cap(body, tool_calls_cap)
    if not changes:
        return raw
    return orjson.dumps({**body, **changes})
