"""GET /v1/models: the models the caller's plan allows, from the operator's list (`models:`)
or the upstream's. The LibreChat key without a user sees the whole catalogue (LibreChat fetches
it with the service key alone, to fill its model menu). A request with an `anthropic-version`
header (Anthropic's SDKs, LibreChat's Anthropic endpoint) gets Anthropic's list shape and
error shape; each entry has its `id` in both shapes."""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from solaris.errors import (
    ApiError,
    MissingUser,
    ServiceUnavailable,
    StoreUnavailable,
    UpstreamUnreachable,
)
from solaris.gateway.endpoints import ENDPOINTS
from solaris.gateway.identity import Identity
from solaris.gateway.responses import JSON, send_bytes, send_error
from solaris.gateway.upstream import Upstream
from solaris.ledger.plans import Plan

__all__ = ["Models"]

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


class Models:
    def __init__(self, catalogue: list[str], identity: Identity, upstream: Upstream) -> None:
        self.catalogue = catalogue
        self.identity = identity
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /v1/models: the models the caller's plan allows, from the operator's list or
        the upstream's. The LibreChat key without a user sees the whole catalogue."""
        headers: dict[bytes, bytes] = dict(scope["headers"])
        anthropic = b"anthropic-version" in headers
        render = ENDPOINTS[ANTHROPIC_PATH if anthropic else OPENAI_PATH].error_body
        plan: Plan | None = None
        try:
            try:
                plan = (await self.identity.resolve(headers)).plan
            except MissingUser:  # the service key without a user: the whole catalogue
                await self.identity.authenticate(headers)
        except ApiError as error:
            await send_error(send, error, (), render)
            return
        except StoreUnavailable:
            down = ServiceUnavailable("The gateway's database is unavailable.")
            await send_error(send, down, (), render)
            return
        if self.catalogue:
            names = self.catalogue
        else:
            try:
                names = await self._upstream_models()
            except ApiError as error:
                await send_error(send, error, (), render)
                return
        allowed = [name for name in names if plan is None or plan.allows(name)]
        listing = _anthropic_listing(allowed) if anthropic else _openai_listing(allowed)
        await send_bytes(send, 200, orjson.dumps(listing), JSON)

    async def _upstream_models(self) -> list[str]:
        response = await self.upstream.request("GET", "/models", None, "models")
        async with response:
            payload = await response.read()
        try:
            data = orjson.loads(payload)["data"]
            return [str(item["id"]) for item in data]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise UpstreamUnreachable("The model provider's model list is unreadable.") from None


def _openai_listing(names: list[str]) -> dict[str, object]:
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "solaris"} for name in names]
    return {"object": "list", "data": data}


def _anthropic_listing(names: list[str]) -> dict[str, object]:
    """Anthropic's `GET /v1/models` page: every model on one page."""
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
        for name in names
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": names[0] if names else None,
        "last_id": names[-1] if names else None,
    }
