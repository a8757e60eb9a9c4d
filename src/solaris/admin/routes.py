"""The admin API's resources: users, credits, plans, usage, statements, alerts, audit log.

Each route is one `Operations` call; every input is bounded here (ids, amounts, page sizes),
so bad input is a 400 and never reaches the database as an overflow.
"""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from solaris.admin.auth import Admin, current_admin
from solaris.admin.inputs import (
    ID_MAX,
    BlockBody,
    DeductBody,
    GrantBody,
    Moment,
    NewKey,
    PlanBody,
    PlanChoice,
    Text,
)
from solaris.ledger.statement import Statement
from solaris.operations.core import DAYS_MAX, Operations
from solaris.operations.views import (
    AlertEntry,
    Overview,
    PlanSummary,
    UsageRow,
    UserDetail,
    UserSummary,
)
from solaris.store.audit import AuditEntry

__all__ = ["admin_routes"]

OFFSET_MAX = 1_000_000
UserId = Annotated[int, Path(ge=1, le=ID_MAX, description="The user's id (not the LibreChat id).")]
PlanName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX)]
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with `format=csv`."}
}


def admin_routes(operations: Operations) -> APIRouter:
    router = APIRouter(prefix="/admin", dependencies=[Depends(current_admin)])

    @router.get("/users", tags=["users"])
    async def list_users(
        q: Annotated[
            Text | None, Query(max_length=320, description="Part of id or e-mail.")
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[UserSummary]:
        """Users whose LibreChat id or e-mail contains `q`, newest first."""
        return await operations.find_users(q, limit, offset)

    @router.get("/users/{user_id}", tags=["users"])
    async def get_user(user_id: UserId) -> UserDetail:
        """One user: balance, held, period, lots, keys and latest usage."""
        return await operations.user(user_id)

    @router.post("/users/{user_id}/block", tags=["users"])
    async def block_user(user_id: UserId, body: BlockBody, admin: Admin) -> UserSummary:
        """Refuse the user's requests (403 `user_blocked`) until unblocked."""
        return await operations.block(admin.actor, user_id, body.reason)

    @router.post("/users/{user_id}/unblock", tags=["users"])
    async def unblock_user(user_id: UserId, admin: Admin) -> UserSummary:
        return await operations.unblock(admin.actor, user_id)

    @router.put("/users/{user_id}/plan", tags=["users"])
    async def set_user_plan(user_id: UserId, body: PlanChoice, admin: Admin) -> UserSummary:
        """Move the user to another plan at once; its allowance replaces the current one."""
        return await operations.set_plan(admin.actor, user_id, body.plan)

    @router.post("/users/{user_id}/credits/grant", tags=["credits"])
    async def grant_credits(user_id: UserId, body: GrantBody, admin: Admin) -> UserSummary:
        """Add credits (a `grant` entry and lot, optionally expiring)."""
        granted = await operations.grant(
            admin.actor, user_id, body.tokens, body.note, body.expires_at, key=body.idempotency_key
        )
        return granted.user

    @router.post("/users/{user_id}/credits/deduct", tags=["credits"])
    async def deduct_credits(user_id: UserId, body: DeductBody, admin: Admin) -> UserSummary:
        """Correct the balance downwards: an `adjustment` entry (entries are never edited)."""
        deducted = await operations.deduct(
            admin.actor, user_id, body.tokens, body.note, key=body.idempotency_key
        )
        return deducted.user

    @router.post("/users/{user_id}/keys/rotate", tags=["users"])
    async def rotate_user_key(user_id: UserId, admin: Admin) -> NewKey:
        """Revoke the user's API keys and issue a new one, shown once."""
        return NewKey(key=await operations.rotate_key(admin.actor, user_id))

    @router.get(
        "/users/{user_id}/statement", tags=["usage"], response_model=Statement, responses=CSV
    )
    async def user_statement(
        user_id: UserId,
        since: Annotated[Moment | None, Query(description="Default: the current period.")] = None,
        until: Annotated[Moment | None, Query()] = None,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
    ) -> Statement | Response:
        """The statement (extrato): entries with a running balance; `format=csv` for a file."""
        start, end = await operations.current_period(user_id)
        result = await operations.statement(user_id, since or start, until or end)
        if format == "json":
            return result
        stream = io.StringIO()
        result.write_csv(stream, operations.zone)
        filename = f"statement-{user_id}-{result.start:%Y%m%d}.csv"
        return Response(
            "\ufeff" + stream.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    @router.get("/users/{user_id}/usage/daily", tags=["usage"])
    async def user_daily_usage(
        user_id: UserId, days: Annotated[int, Query(ge=1, le=DAYS_MAX)] = 30
    ) -> list[UsageRow]:
        """One row per UTC day, days without usage as zeros (for charts)."""
        await operations.summary(user_id)
        return await operations.daily_usage(user_id, days)

    @router.get("/plans", tags=["plans"])
    async def list_plans() -> list[PlanSummary]:
        return await operations.plans()

    @router.put("/plans/{name}", tags=["plans"])
    async def save_plan(name: PlanName, body: PlanBody, admin: Admin) -> PlanSummary:
        """Create or replace a plan (`default: true` makes it the plan of new users)."""
        return await operations.save_plan(admin.actor, name, body.config())

    @router.get("/usage", tags=["usage"])
    async def usage(
        since: Annotated[Moment, Query()],
        until: Annotated[Moment, Query()],
        by: Annotated[Literal["user", "model", "hour", "day"], Query()] = "model",
        user_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    ) -> list[UsageRow]:
        """Tokens, requests and estimated USD cost grouped by user, model, hour or day (UTC)."""
        return await operations.usage(by, since, until, user_id)

    @router.get("/alerts", tags=["alerts"])
    async def alerts(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertEntry]:
        """Alerts sent, pending or failed, newest first."""
        return await operations.alerts(limit)

    @router.get("/audit", tags=["audit"])
    async def audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Offset = 0,
        target_type: Annotated[Text | None, Query(max_length=32)] = None,
        target_id: Annotated[Text | None, Query(max_length=255)] = None,
    ) -> list[AuditEntry]:
        """Every change made by an admin, API key or the CLI, newest first."""
        return await operations.audit(limit, offset, target_type, target_id)

    @router.get("/overview", tags=["status"])
    async def overview() -> Overview:
        """Tokens today and this month, active users, top users and models, latency, errors."""
        return await operations.overview()

    return router
