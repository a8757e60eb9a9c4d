"""What the fakes' routes share: JSON answers, bodies read with a cap, Stripe's form encoding.

Stripe's SDK sends form bodies with nested keys (`line_items[0][price_data][currency]=brl`);
`decode_form` turns them back into the objects and lists they were written from.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "BODY_BYTES_MAX",
    "FormError",
    "Json",
    "decode_form",
    "json_response",
    "random_id",
    "read_body",
    "read_json",
]

Json = dict[str, Any]
BODY_BYTES_MAX = 256 * 1024
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_ALPHABET = string.ascii_letters + string.digits


class FormError(ValueError):
    """A body that is not what the route takes; the message says why."""


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def read_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_BYTES_MAX:
            raise FormError(f"the body is over {BODY_BYTES_MAX} bytes")
    return body


async def read_json(request: Request) -> Json:
    """The body as a JSON object; an empty body is an empty object."""
    raw = await read_body(request)
    if not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FormError(f"the body is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise FormError("the body must be a JSON object")
    return parsed


def decode_form(raw: bytes) -> Json:
    """A form body with bracketed keys, as nested dicts; dicts keyed 0, 1, … become lists."""
    root: Json = {}
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"the body is not a form: {exc}") from exc
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise FormError(f"Invalid parameter name: {key}")
        path = [match[1], *re.findall(r"\[([^\[\]]*)\]", match[2])]
        node = root
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FormError(f"Invalid parameter name: {key}")
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise FormError(f"Invalid parameter name: {key}")
        node[path[-1]] = value
    result = _lists(root)
    assert isinstance(result, dict)
    return result


def _lists(node: object) -> object:
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
