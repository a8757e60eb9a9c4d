"""What an admin can do, shared by the admin API, the dashboard and the CLI.

Every change runs in one transaction with its audit row (who, what, before, after): both commit
or neither does. Changes reuse the ledger's own steps (`Ledger.credit` / `deduct`,
`Users.change_plan`, `Plans.save`) so the API, the pages and `solaris …` behave the same.
A change that the request path caches (block, plan) is dropped from this process's cache at
once; other gateway processes see it within `PLAN_CACHE_TTL_S`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import recent_days
from solaris.config import PlanConfig, Settings
from solaris.errors import BadRequest, NotFound
from solaris.ledger.plans import OwnCap, Plans, Subscription
from solaris.ledger.statement import Statement, statement
from solaris.operations import reads
from solaris.operations.overview import overview
from solaris.operations.resources import Resources, Standalone
from solaris.operations.views import (
    AlertEntry,
    Overview,
    PlanSummary,
    UsageRow,
    UserDetail,
    UserSummary,
)
from solaris.reports.usage import usage_report
from solaris.store.audit import CLI_ACTOR, Actor, AuditEntry, audit_entries, record
from solaris.store.database import Database
from solaris.store.outbox import list_alerts

__all__ = [
    "CLI_ACTOR",
    "TOKENS_MAX",
    "Actor",
    "Applied",
    "Operations",
    "Resources",
]

TOKENS_MAX = 10**12  # one grant or deduction; far beyond any real one, far below BIGINT
OWN_PERIODS = ("day", "month")  # what a user's own cap may count
NOTE_LENGTH_MAX = 500
REASON_LENGTH_MAX = 500
DAYS_MAX = 366
RECENT_USAGE_ROWS = 20
UsageGrouping = Literal["user", "model", "hour", "day"]


class Applied(NamedTuple):
    """A credit change's outcome: `done` is False when its idempotency key was used already."""

    done: bool
    user: UserSummary


def _check_tokens(tokens: int) -> None:
    if not 0 < tokens <= TOKENS_MAX:
        raise BadRequest(f"tokens must be between 1 and {TOKENS_MAX}", param="tokens")


def _check_text(value: str, name: str, length_max: int, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise BadRequest(f"{name} is required", param=name)
    if len(value) > length_max:
        raise BadRequest(f"{name} is longer than {length_max} characters", param=name)
    return value


class Operations:
    def __init__(self, gateway: Resources) -> None:
        self.gateway = gateway
        self.database = gateway.database
        self.ledger = gateway.ledger
        self.users = gateway.users
        self.clock = gateway.ledger.clock
        self.zone = gateway.ledger.zone
        self.started_at = self.clock()

    @classmethod
    def standalone(cls, settings: Settings, database: Database) -> Operations:
        """Operations for the CLI, on a database it opened."""
        return cls(Standalone(settings, database))

    # Reads.

    async def find_users(
        self, query: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[UserSummary]:
        async with self.database.transaction() as conn:
            return await reads.find_users(conn, query, limit, offset)

    async def user(self, user_id: int) -> UserDetail:
        """One user in full; raises NotFound. Applies what time has done first (period
        renewal, expired credits), so the balance shown is the one the next request sees."""
        async with self.database.transaction() as conn:
            await reads.user_summary(conn, user_id)
        subscription = await self._refreshed(user_id)
        plan = subscription.plan
        _balance, held = await self.ledger.balance(user_id)
        start, end = self.ledger.period(plan, subscription.anchored_at, self.clock())
        async with self.database.transaction() as conn:
            summary = await reads.user_summary(conn, user_id)
            period_used = await reads.period_used(conn, user_id)
            return UserDetail(
                **summary.model_dump(),
                held=held,
                available=summary.balance - held,
                period_start=start,
                period_end=end,
                allowance_tokens=plan.allowance_tokens,
                period_used=period_used,
                lots=await reads.lots_of(conn, user_id),
                keys=await reads.keys_of(conn, user_id),
                recent_usage=await reads.recent_usage(conn, user_id, RECENT_USAGE_ROWS),
            )

    async def plans(self) -> list[PlanSummary]:
        async with self.database.transaction() as conn:
            return await reads.plan_summaries(conn)

    async def usage(
        self,
        by: UsageGrouping,
        since: datetime,
        until: datetime,
        user_id: int | None = None,
    ) -> list[UsageRow]:
        """Usage totals with USD cost, from `since` to `until` (excluded); days and hours in
        the operator's zone."""
        if since >= until:
            raise BadRequest("`since` must be before `until`", param="since")
        external_id = None
        if user_id is not None:
            async with self.database.transaction() as conn:
                external_id = (await reads.user_summary(conn, user_id)).external_id
        report = await usage_report(
            self.database, by=by, since=since, until=until, user_external_id=external_id,
            zone=self.zone,
        )  # fmt: skip
        return list(report)

    async def daily_usage(self, user_id: int | None, days: int) -> list[UsageRow]:
        """One row per local day, the last `days` days up to today, days without usage as
        zeros."""
        if not 0 < days <= DAYS_MAX:
            raise BadRequest(f"days must be between 1 and {DAYS_MAX}", param="days")
        keys, since, until = recent_days(self.clock(), self.zone, days)
        rows = {r.key: r for r in await self.usage("day", since, until, user_id)}
        return [rows.get(key) or _empty_row(key) for key in keys]

    async def summary(self, user_id: int) -> UserSummary:
        """One user's line of the users list; raises NotFound."""
        async with self.database.transaction() as conn:
            return await reads.user_summary(conn, user_id)

    async def current_period(self, user_id: int) -> tuple[datetime, datetime]:
        """The user's allowance period now; raises NotFound."""
        await self.summary(user_id)
        subscription = await self.users.plans.of_user(user_id)
        plan = subscription.plan
        return self.ledger.period(plan, subscription.anchored_at, self.clock())

    async def statement(self, user_id: int, since: datetime, until: datetime) -> Statement:
        """The user's entries from `since` to `until` with a running balance; NotFound."""
        if since >= until:
            raise BadRequest("`since` must be before `until`", param="since")
        async with self.database.transaction() as conn:
            summary = await reads.user_summary(conn, user_id)
        await self._refreshed(user_id)
        return await statement(self.database, user_id, summary.external_id, since, until)

    async def alerts(self, limit: int = 100) -> list[AlertEntry]:
        async with self.database.transaction() as conn:
            rows = await list_alerts(conn, limit=limit)
        return [AlertEntry.model_validate(row, from_attributes=True) for row in rows]

    async def audit(
        self,
        limit: int = 100,
        offset: int = 0,
        target_type: str | None = None,
        target_id: str | None = None,
    ) -> list[AuditEntry]:
        async with self.database.transaction() as conn:
            return await audit_entries(conn, limit, offset, target_type, target_id)

    async def overview(self) -> Overview:
        async with self.database.snapshot() as conn:  # the month from the usage rollup
            return await overview(
                conn, self.gateway.metrics, self.clock(), self.zone, self.started_at
            )

    # Changes: each in one transaction with its audit row.

    async def grant(
        self,
        actor: Actor,
        user_id: int,
        tokens: int,
        note: str,
        expires_at: datetime | None = None,
        *,
        key: str | None = None,
    ) -> Applied:
        """Credit `tokens` (a `grant` lot, expiring at `expires_at` if given)."""
        _check_tokens(tokens)
        note = _check_text(note, "note", NOTE_LENGTH_MAX, required=False)
        if expires_at is not None and expires_at.astimezone(UTC) <= self.clock():
            raise BadRequest("expires_at must be in the future", param="expires_at")

        async def write(conn: AsyncConnection) -> bool:
            return await self.ledger.credit(
                conn, user_id, "grant", tokens, key or f"grant:{uuid.uuid4().hex}",
                actor.label, note or None, expires_at,
            )  # fmt: skip

        change: dict[str, Any] = {"tokens": tokens, "note": note}
        if expires_at is not None:
            change["expires_at"] = expires_at.isoformat()
        return await self._move_credits(actor, user_id, "credits.grant", change, write)

    async def deduct(
        self, actor: Actor, user_id: int, tokens: int, note: str, *, key: str | None = None
    ) -> Applied:
        """A correction downwards: an `adjustment` entry (never an edit); `note` required."""
        _check_tokens(tokens)
        note = _check_text(note, "note", NOTE_LENGTH_MAX, required=True)

        async def write(conn: AsyncConnection) -> bool:
            return await self.ledger.deduct(
                conn, user_id, tokens, key or f"adjustment:{uuid.uuid4().hex}", actor.label, note
            )

        change = {"tokens": tokens, "note": note}
        return await self._move_credits(actor, user_id, "credits.deduct", change, write)

    async def _move_credits(
        self,
        actor: Actor,
        user_id: int,
        action: str,
        change: dict[str, Any],
        write: Callable[[AsyncConnection], Awaitable[bool]],
    ) -> Applied:
        """One ledger entry and its audit row in one transaction; nothing audited when the
        idempotency key was used already (the entry was not written again)."""
        now = self.clock()
        async with self.database.transaction() as conn:
            before = await reads.user_summary(conn, user_id)
            done = await write(conn)
            after = await reads.user_summary(conn, user_id)
            if done:
                await record(
                    conn, actor, action, "user", user_id,
                    {"balance": before.balance}, {"balance": after.balance, **change}, now,
                )  # fmt: skip
        return Applied(done, after)

    async def set_plan(self, actor: Actor, user_id: int, plan: str) -> UserSummary:
        """Move the user to `plan` at once (its allowance replaces the current one)."""
        now = self.clock()
        async with self.database.transaction() as conn:
            before = await reads.user_summary(conn, user_id)
            if not await reads.plan_summaries(conn, plan):
                raise NotFound(f"No plan named {plan!r}.", param="plan")
            await self.users.change_plan(conn, user_id, plan, by=actor.label)
            after = await reads.user_summary(conn, user_id)
            await record(
                conn, actor, "user.plan", "user", user_id,
                {"plan": before.plan, "balance": before.balance},
                {"plan": after.plan, "balance": after.balance}, now,
            )  # fmt: skip
        self._forget(user_id)
        return after

    async def block(self, actor: Actor, user_id: int, reason: str) -> UserSummary:
        """Refuse the user's requests (403 `user_blocked`) until unblocked; `reason` required."""
        reason = _check_text(reason, "reason", REASON_LENGTH_MAX, required=True)
        return await self._set_blocked(actor, user_id, reason)

    async def unblock(self, actor: Actor, user_id: int) -> UserSummary:
        return await self._set_blocked(actor, user_id, None)

    async def _set_blocked(self, actor: Actor, user_id: int, reason: str | None) -> UserSummary:
        now = self.clock()
        async with self.database.transaction() as conn:
            before = await reads.user_summary(conn, user_id)
            await self.users.set_blocked(conn, user_id, reason, now)
            after = await reads.user_summary(conn, user_id)
            await record(
                conn, actor, "user.block" if reason is not None else "user.unblock", "user",
                user_id, {"blocked": before.blocked, "reason": before.blocked_reason},
                {"blocked": after.blocked, "reason": after.blocked_reason}, now,
            )  # fmt: skip
        self._forget(user_id)
        return after

    async def set_own_cap(self, actor: Actor, user_id: int, cap: OwnCap | None) -> None:
        """The cap a user sets themselves: at most `tokens` per local day or calendar month
        (None lifts it); recorded, and in force on every gateway within seconds."""
        if cap is not None and not (0 < cap.tokens <= TOKENS_MAX and cap.period in OWN_PERIODS):
            raise BadRequest(f"a limit is 1..{TOKENS_MAX} tokens a day or a month", param="tokens")
        async with self.database.transaction() as conn:
            await reads.user_summary(conn, user_id)  # NotFound
            before = await self.users.set_own_cap(conn, user_id, cap)
            await record(
                conn, actor, "user.own_cap", "user", user_id,
                None if before is None else asdict(before), None if cap is None else asdict(cap),
                self.clock(),
            )  # fmt: skip
        self._forget(user_id)

    async def create_key(self, actor: Actor, user_id: int) -> str:
        """Issue one more API key for the user (returned, shown once); others stay valid."""
        now = self.clock()
        async with self.database.transaction() as conn:
            await reads.user_summary(conn, user_id)
            key = await self.users.create_key(conn, user_id)
            await record(
                conn, actor, "user.create_key", "user", user_id, None, {"prefix": key[:11]}, now
            )
        return key

    async def rotate_key(self, actor: Actor, user_id: int) -> str:
        """Revoke the user's API keys and issue a new one (returned, shown once)."""
        now = self.clock()
        async with self.database.transaction() as conn:
            await reads.user_summary(conn, user_id)
            revoked = await self.users.revoke_keys(conn, user_id)
            key = await self.users.create_key(conn, user_id)
            await record(
                conn, actor, "user.rotate_key", "user", user_id,
                {"live_keys": len(revoked)}, {"live_keys": 1, "prefix": key[:11]}, now,
            )  # fmt: skip
        if self.gateway.cache is not None and revoked:
            await self.gateway.cache.forget(*(f"key:{digest}" for digest in revoked))
        return key

    async def save_plan(self, actor: Actor, name: str, config: PlanConfig) -> PlanSummary:
        """Create or replace a plan. Plans named in the YAML config are written again at start."""
        name = _check_text(name, "name", 64, required=True)
        now = self.clock()
        async with self.database.transaction() as conn:
            before = await reads.plan_summaries(conn, name)
            await Plans(self.database).save(conn, name, config, now)
            after = (await reads.plan_summaries(conn, name))[0]
            await record(
                conn, actor, "plan.save", "plan", name,
                before[0].model_dump(mode="json") if before else None,
                after.model_dump(mode="json"), now,
            )  # fmt: skip
        return after

    async def _refreshed(self, user_id: int) -> Subscription:
        """Apply what time has done to the user (period renewal, expired credits)."""
        subscription = await self.users.plans.of_user(user_id)
        async with self.database.transaction() as conn:
            await self.ledger.refresh(
                conn, user_id, subscription.plan, subscription.anchored_at, self.clock()
            )
        return subscription

    def _forget(self, user_id: int) -> None:
        if self.gateway.identity is not None:
            self.gateway.identity.forget(user_id)


def _empty_row(key: str) -> UsageRow:
    return UsageRow(
        key=key, requests=0, prompt_tokens=0, completion_tokens=0, cached_tokens=0,
        reasoning_tokens=0, billable=0, estimated_requests=0, cost_usd=None, unpriced_requests=0,
    )  # fmt: skip
