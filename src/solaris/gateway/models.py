"""GET /v1/models: the models the caller's plan allows, from the operator's list (`models:`)
or the upstream's. The LibreChat key without a user sees the whole catalogue (LibreChat fetches
it with the service key alone, to fill its model menu)."""

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
from solaris.gateway.identity import Identity
from solaris.gateway.responses import JSON, send_bytes, send_error
from solaris.gateway.upstream import Upstream
from solaris.ledger.plans import Plan

__all__ = ["Models"]


class Models:
    def __init__(self, catalogue: list[str], identity: Identity, upstream: Upstream) -> None:
        self.catalogue = catalogue
        self.identity = identity
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /v1/models: the models the caller's plan allows, from the operator's list or
        the upstream's. The LibreChat key without a user sees the whole catalogue."""
        headers: dict[bytes, bytes] = dict(scope["headers"])
        plan: Plan | None = None
        try:
            try:
                plan = (await self.identity.resolve(headers)).plan
            except MissingUser:  # the service key without a user: the whole catalogue
                await self.identity.authenticate(headers)
        except ApiError as error:
            await send_error(send, error)
            return
        except StoreUnavailable:
            await send_error(send, ServiceUnavailable("The gateway's database is unavailable."))
            return
        if self.catalogue:
            names = self.catalogue
        else:
            try:
                names = await self._upstream_models()
            except ApiError as error:
                await send_error(send, error)
                return
        listing = {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "solaris"}
                for name in names
                if plan is None or plan.allows(name)
            ],
        }
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
