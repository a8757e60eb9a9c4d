"""The dashboard's orders (/admin/orders): the list with its filters and the revenue of the last
30 days per day and per pack (charts), one order with its provider events and audit lines, and
its refund form.

The same `Orders` as the admin API and the CLI: a refund is asked of the provider and audited
as the signed-in admin; the page then says it was asked, and the balance changes when the
provider confirms. Every page wants the dashboard's admin session, the refund its CSRF token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from solaris.clock import local_midnight, recent_days
from solaris.errors import ApiError, ServiceUnavailable
from solaris.operations.orders import OrderFilter, OrderNotFound, Orders
from solaris.portal import charts
from solaris.portal.auth import Signed
from solaris.portal.dashboard import Dashboard, page_number, pager
from solaris.portal.routing import error_page, page_route, read_form, redirect
from solaris.portal.security import CSRF_FIELD, csrf_matches
from solaris.store.audit import Actor
from solaris.store.schema import ORDER_STATES, PAYMENT_PROVIDERS
from solaris.texts.pages import Translator

__all__ = ["OrderPages"]

ORDERS_PAGE = 50
CHART_DAYS = 30
ORDER_PATH = "/admin/orders/{order:str}"
FILTERS = ("status", "provider", "user", "since", "until")
AMOUNT_DIGITS_MAX = 12


class OrderPages:
    def __init__(self, dashboard: Dashboard, orders: Orders) -> None:
        self.dashboard = dashboard
        self.renderer = dashboard.renderer
        self.orders = orders

    def routes(self) -> list[BaseRoute]:
        return [
            page_route("/admin/orders", self.listing),
            page_route(ORDER_PATH, self.order),
            page_route(ORDER_PATH + "/refund", self.refund, ("POST",)),
        ]

    async def listing(self, request: Request) -> Response:
        if (signed := await self.dashboard.admin(request)) is None:
            return self.dashboard.to_login(request)
        t = self.renderer.translator(request)
        chosen = {name: request.query_params.get(name, "").strip()[:255] for name in FILTERS}
        zone = self.orders.zone
        since, until = _day(chosen["since"], zone), _day(chosen["until"], zone)
        bad_date = (chosen["since"] and since is None) or (chosen["until"] and until is None)
        if since and until and since >= until:
            since = until = None
            bad_date = True
        page = page_number(request)
        wanted = OrderFilter(
            status=chosen["status"] if chosen["status"] in ORDER_STATES else None,
            provider=chosen["provider"] if chosen["provider"] in PAYMENT_PROVIDERS else None,
            user=chosen["user"] or None,
            since=since,
            until=until,
            limit=ORDERS_PAGE + 1,
            offset=(page - 1) * ORDERS_PAGE,
        )
        found = await self.orders.find(wanted)
        previous_url, next_url = pager("/admin/orders", chosen, page, len(found) > ORDERS_PAGE)
        return self.dashboard.page(
            request,
            signed,
            "admin/orders.html",
            section="orders",
            orders=found[:ORDERS_PAGE],
            chosen=chosen,
            states=ORDER_STATES,
            providers=PAYMENT_PROVIDERS,
            problem=t("orders.bad_date") if bad_date else "",
            charts=await self._charts(t),
            previous_url=previous_url,
            next_url=next_url,
        )

    async def _charts(self, t: Translator) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """Per currency sold lately: (currency, net per day, net per pack)."""
        days = await self.orders.daily_revenue(CHART_DAYS)
        if not days:
            return []
        _keys, since, until = recent_days(self.orders.clock(), self.orders.zone, CHART_DAYS)
        packs = await self.orders.revenue("pack", since, until)
        drawn = []
        for currency, rows in days.items():
            name = t("orders.minor_units", currency=currency)
            labels = [row.key[5:] for row in rows]
            per_day = charts.bar(t("orders.chart_days"), labels, name, [r.net_cents for r in rows])
            sold = [row for row in packs if row.currency == currency]
            per_pack = charts.doughnut(
                t("orders.chart_packs"), [row.key for row in sold], [row.net_cents for row in sold]
            )
            drawn.append((currency, per_day, per_pack))
        return drawn

    async def order(self, request: Request) -> Response:
        if (signed := await self.dashboard.admin(request)) is None:
            return self.dashboard.to_login(request)
        done = request.query_params.get("done") == "refund"
        return await self._order_page(request, signed, request.path_params["order"], done=done)

    async def _order_page(
        self,
        request: Request,
        signed: Signed,
        public_id: str,
        *,
        done: bool = False,
        problem: str = "",
        status_code: int = 200,
    ) -> Response:
        try:
            order = await self.orders.detail(public_id)
        except OrderNotFound:
            return error_page(self.renderer, request, 404, "error.not_found_text")
        return self.dashboard.page(
            request,
            signed,
            "admin/order.html",
            section="orders",
            order=order,
            done=done,
            problem=problem,
            status_code=status_code,
        )

    async def refund(self, request: Request) -> Response:
        """POST /admin/orders/{order}/refund: ask the provider, audited as this admin."""
        signed = await self.dashboard.admin(request)
        form = await read_form(request)
        if signed is None or not csrf_matches(form.get(CSRF_FIELD), signed.session.csrf):
            return error_page(self.renderer, request, 403, "error.csrf")
        public_id: str = request.path_params["order"]
        t = self.renderer.translator(request)
        raw = str(form.get("amount_cents", "")).strip()
        if raw and not (raw.isdigit() and len(raw) <= AMOUNT_DIGITS_MAX and int(raw) > 0):
            problem = t("form.invalid", problem="amount_cents")
            return await self._order_page(
                request, signed, public_id, problem=problem, status_code=400
            )
        actor = Actor(f"admin:{signed.session.subject_id}")
        try:
            await self.orders.refund(public_id, int(raw) if raw else None, actor)
        except OrderNotFound:
            return error_page(self.renderer, request, 404, "error.not_found_text")
        except ServiceUnavailable:
            problem = t("order.provider_down")
            return await self._order_page(
                request, signed, public_id, problem=problem, status_code=503
            )
        except ApiError as error:
            problem = t("form.invalid", problem=error.message)
            return await self._order_page(
                request, signed, public_id, problem=problem, status_code=400
            )
        return redirect(f"/admin/orders/{public_id}?done=refund")


def _day(value: str, zone: ZoneInfo) -> datetime | None:
    """A YYYY-MM-DD date as the moment that local day starts; None when empty or not a date."""
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None
    return local_midnight(day, zone) if 1970 <= day.year <= 9000 else None
