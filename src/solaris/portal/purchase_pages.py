"""The portal's purchase pages: start an order for a pack (the signed-in user's only: no form
names a user), and follow it until the provider confirms the payment.

The order page refreshes itself while the payment is pending; it only *shows* the order, which
changes when the provider's event (or a reconciliation) says so — coming back from the checkout
page credits nothing by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from solaris.errors import BadRequest, NotFound
from solaris.operations.clients import attempt_wait_s
from solaris.operations.purchases import Purchases
from solaris.operations.resources import Running
from solaris.payments.base import ProviderUnavailable
from solaris.portal.account import PortalUser
from solaris.portal.routing import error_page, page_route, read_form, redirect
from solaris.portal.security import CSRF_FIELD, csrf_matches, too_many
from solaris.portal.templating import Renderer

__all__ = ["PurchasePages"]

SignedIn = Callable[[Request], Awaitable[tuple[PortalUser, str] | None]]
REFRESH_S = 3  # the order page, while the payment is pending


class PurchasePages:
    def __init__(
        self, gateway: Running, purchases: Purchases, renderer: Renderer, signed_in: SignedIn
    ) -> None:
        self.gateway = gateway
        self.purchases = purchases
        self.renderer = renderer
        self.signed_in = signed_in
        self.base_url = gateway.settings.public_base_url.rstrip("/")

    def routes(self) -> list[BaseRoute]:
        return [
            page_route("/portal/orders", self.orders),
            page_route("/portal/orders/{order}", self.order),
        ]

    async def start(self, request: Request) -> Response:
        """POST /portal/buy: an order for the pack, then the provider's checkout page."""
        if (signed := await self.signed_in(request)) is None:
            return redirect("/portal/login")
        user, csrf = signed
        t = self.renderer.translator(request)
        form = await read_form(request)
        if not csrf_matches(form.get(CSRF_FIELD), csrf):
            return error_page(self.renderer, request, 403, "error.csrf")
        per_minute = self.gateway.settings.orders_per_minute
        if wait_s := await attempt_wait_s(self.gateway.limiter, per_minute, [f"order:{user.id}"]):
            refused = too_many(t, wait_s)
            return error_page(self.renderer, request, 429, "order.refused_text", message=refused)
        try:
            order = await self.purchases.start(
                user.id,
                str(form.get("pack", "")),
                str(form.get("provider", "")),
                self.renderer.language(request),
                self._return_urls,
            )
        except ProviderUnavailable:
            return error_page(self.renderer, request, 503, "order.provider_down_text")
        except BadRequest:
            return error_page(self.renderer, request, 400, "order.refused_text")
        return redirect(order.pay_url or f"/portal/orders/{order.public_id}")

    async def orders(self, request: Request) -> Response:
        if (signed := await self.signed_in(request)) is None:
            return redirect("/portal/login")
        user, csrf = signed
        found = await self.purchases.orders_of(user.id)
        context = {"section": "orders", "orders": found}
        return self.renderer.page(request, "portal/orders.html", context, csrf=csrf)

    async def order(self, request: Request) -> Response:
        public_id = request.path_params["order"]
        if (signed := await self.signed_in(request)) is None:
            return redirect("/portal/login?next=" + quote(f"/portal/orders/{public_id}"))
        user, csrf = signed
        try:
            order = await self.purchases.order_of(user.id, public_id)
        except NotFound:
            return error_page(self.renderer, request, 404, "error.not_found_text")
        balance, held = await self.gateway.ledger.balance(user.id)
        context = {
            "section": "orders",
            "order": order,
            "available": max(0, balance - held),
            "refresh_s": REFRESH_S if order.status in ("open", "pending") else None,
            "cancelled": request.query_params.get("cancelled") == "1",
            "chat_url": self.gateway.settings.chat_url,
        }
        return self.renderer.page(request, "portal/order.html", context, csrf=csrf)

    def _return_urls(self, public_id: str) -> tuple[str, str]:
        page = f"{self.base_url}/portal/orders/{public_id}"
        return page, page + "?cancelled=1"
