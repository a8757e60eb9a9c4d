"""The admin API's orders: lists with filters, one order in full, revenue, refunds.

Each route is one `solaris.operations.orders.Orders` call, the same the dashboard and
`solaris orders …` make; inputs are bounded here, so bad input is a 400 before any query.
A refund is asked of the provider and audited as the caller; the ledger changes when the
provider confirms it (its event, or the next reconciliation).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from solaris.admin.auth import Admin, current_admin
from solaris.admin.inputs import Moment, Text
from solaris.operations.order_views import OrderDetail, OrderLine, RefundRequested, RevenueRow
from solaris.operations.orders import LISTED_MAX, OrderFilter, Orders

__all__ = ["RefundBody", "order_routes"]

AMOUNT_MAX = 10**12
OrderId = Annotated[
    str, Path(pattern=r"^ord_[0-9a-f]{32}$", description="The order's id (`ord_…`).")
]
Status = Literal["open", "pending", "paid", "failed", "expired", "refunded", "disputed"]
ProviderName = Literal["stripe", "mercadopago"]
REFUND_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"description": "The payment provider did not answer or refused: nothing changed"}
}


class RefundBody(BaseModel):
    amount_cents: int | None = Field(
        default=None,
        ge=1,
        le=AMOUNT_MAX,
        description="In the currency's minor unit; all that is left when absent.",
    )


def order_routes(orders: Orders) -> APIRouter:
    router = APIRouter(prefix="/admin", dependencies=[Depends(current_admin)], tags=["orders"])

    @router.get("/orders")
    async def list_orders(
        status: Annotated[Status | None, Query()] = None,
        provider: Annotated[ProviderName | None, Query()] = None,
        user: Annotated[
            Text | None, Query(min_length=1, max_length=255, description="LibreChat's user id.")
        ] = None,
        since: Annotated[Moment | None, Query(description="Created at or after.")] = None,
        until: Annotated[Moment | None, Query(description="Created before.")] = None,
        limit: Annotated[int, Query(ge=1, le=LISTED_MAX)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> list[OrderLine]:
        """Credit orders, newest first."""
        wanted = OrderFilter(status, provider, user, since, until, limit, offset)
        return await orders.find(wanted)

    @router.get("/orders/{order_id}")
    async def get_order(order_id: OrderId) -> OrderDetail:
        """One order: its provider events and every audited change, newest first."""
        return await orders.detail(order_id)

    @router.post("/orders/{order_id}/refund", status_code=202, responses=REFUND_ERRORS)
    async def refund_order(
        order_id: OrderId, admin: Admin, body: RefundBody | None = None
    ) -> RefundRequested:
        """Ask the provider to refund the order, in full or in part (202: requested). The
        tokens are taken back, in proportion, when the provider confirms the refund."""
        amount = None if body is None else body.amount_cents
        return await orders.refund(order_id, amount, admin.actor)

    @router.get("/revenue")
    async def revenue(
        since: Annotated[Moment, Query()],
        until: Annotated[Moment, Query()],
        by: Annotated[Literal["day", "pack"], Query()] = "day",
    ) -> list[RevenueRow]:
        """Orders paid in the range, per UTC day or per pack, per currency (minor units)."""
        return await orders.revenue(by, since, until)

    return router
