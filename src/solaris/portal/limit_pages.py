"""The portal's limits page: the plan's usage windows and caps with what is used of each and
when each reopens, and the cap a user sets themselves (lower than the plan allows, or none).

The form names no user: the cap is the signed-in user's. A change is recorded (`user.own_cap`,
actor `user:<id>`) and in force on every gateway within seconds, as the CLI's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from solaris.errors import BadRequest
from solaris.ledger.caps import Cap, plan_caps, reopens_at, spent
from solaris.ledger.plans import OwnCap, Subscription
from solaris.operations.core import Operations
from solaris.operations.resources import Running
from solaris.portal.account import PortalUser
from solaris.portal.routing import error_page, page_route, read_form, redirect
from solaris.portal.security import CSRF_FIELD, csrf_matches
from solaris.portal.templating import Renderer
from solaris.store.audit import Actor

__all__ = ["LimitPages"]

SignedIn = Callable[[Request], Awaitable[tuple[PortalUser, str] | None]]
PATH = "/portal/limit"


@dataclass(frozen=True, slots=True)
class CapLine:
    """One cap as the page shows it."""

    cap: Cap
    used: int
    reopens: datetime | None  # when full: when it has room again

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.cap.tokens))


class LimitPages:
    def __init__(self, gateway: Running, renderer: Renderer, signed_in: SignedIn) -> None:
        self.gateway = gateway
        self.renderer = renderer
        self.signed_in = signed_in
        self.operations = Operations(gateway)

    def routes(self) -> list[BaseRoute]:
        return [page_route(PATH, self.page, ("GET", "POST"))]

    async def page(self, request: Request) -> Response:
        if (signed := await self.signed_in(request)) is None:
            return redirect("/portal/login")
        user, csrf = signed
        problem = ""
        if request.method == "POST":
            form = await read_form(request)
            if not csrf_matches(form.get(CSRF_FIELD), csrf):
                return error_page(self.renderer, request, 403, "error.csrf")
            try:
                cap = _own_cap(str(form.get("action", "")), form.get("period"), form.get("tokens"))
                await self.operations.set_own_cap(Actor(f"user:{user.id}"), user.id, cap)
            except (BadRequest, ValueError):
                problem = "limit.invalid"
            else:
                return redirect(PATH + "?done=1")
        subscription = (await self.gateway.users.standing(user.id)).subscription
        context = {
            "section": "limit",
            "lines": await self._lines(user.id, subscription),
            "own": subscription.own_cap,
            "done": request.query_params.get("done") == "1",
            "problem": problem,
        }
        status = 400 if problem else 200
        return self.renderer.page(
            request, "portal/limit.html", context, csrf=csrf, status_code=status
        )

    async def _lines(self, user_id: int, subscription: Subscription) -> list[CapLine]:
        database, ledger = self.gateway.database, self.gateway.ledger
        now = ledger.clock()
        caps = plan_caps(subscription, now, ledger.zone)
        lines = []
        for cap in caps:
            async with database.transaction() as conn:
                used = await spent(conn, user_id, cap)
            full = used >= cap.tokens
            reopens = await reopens_at(database, user_id, cap, 1, now) if full else None
            lines.append(CapLine(cap, used, reopens))
        return lines


def _own_cap(action: str, period: object, tokens: object) -> OwnCap | None:
    """The form's cap: `remove`, or `set` with a period and a whole number of tokens (the
    period and the bounds are `Operations.set_own_cap`'s to check)."""
    if action == "remove":
        return None
    if action != "set":
        raise ValueError("set or remove")
    text = str(tokens or "").strip().replace(".", "").replace(",", "")
    if not text.isdigit():
        raise ValueError("tokens: a whole number")
    return OwnCap(int(text), str(period))
