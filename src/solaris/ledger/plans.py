"""Plans and subscriptions: what a user may spend per period, how fast, on which models.

Plans live in the database. Those named in the YAML config (`plans:`) are written there at
`solaris migrate` and at start-up (the YAML wins for the plans it names); others are managed with
`solaris plans`. With no plan configured at all, an implicit plan named "default" offers
`SOLARIS_DEFAULT_ALLOWANCE_TOKENS` with no rate limits and every model. Each user has exactly one
subscription; changing it is immediate and recorded in `plan_changes`.

The implicit plan follows its setting: when `SOLARIS_DEFAULT_ALLOWANCE_TOKENS` differs from the
value it last seeded (kept in that seeding's audit row, `plan.seed`), migrate and start-up write
the new allowance and an audit row saying so. An admin's later edit of the plan (dashboard, API,
`solaris plans set`) stays until the setting changes again: a setting that is unchanged says
nothing new, an explicit edit does.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.config import ModelPolicy, PlanConfig, Settings, UsageWindow
from solaris.store.audit import Actor, record
from solaris.store.database import Database, insert
from solaris.store.schema import audit_log, plan_changes, plans, subscriptions

__all__ = [
    "DEFAULT_PLAN",
    "SEED_ACTION",
    "SEED_ACTOR",
    "OwnCap",
    "Plan",
    "PlanConfig",
    "Plans",
    "Subscription",
]

log = structlog.get_logger(__name__)

DEFAULT_PLAN = "default"
SEED_ACTOR = Actor("setting:SOLARIS_DEFAULT_ALLOWANCE_TOKENS")
SEED_ACTION = "plan.seed"
# Gateways starting together must not both seed: one PostgreSQL advisory lock serialises them
# (SQLite's BEGIN IMMEDIATE already does).
SEED_LOCK_KEY = 0x501A_0D5E


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    allowance_tokens: int
    period: str
    anchor: str
    rpm: int | None
    tpm: int | None
    models: tuple[str, ...]
    weights: dict[str, ModelPolicy] = field(default_factory=dict)
    rollover: bool = False
    rollover_max_tokens: int | None = None
    rollover_max_percent: int | None = None
    windows: tuple[UsageWindow, ...] = ()
    model_caps: tuple[tuple[str, int], ...] = ()  # (fnmatch pattern, tokens per period)

    def rollover_cap(self) -> int | None:
        """At most how much unused allowance a new period carries; None: all of it."""
        if self.rollover_max_percent is not None:
            return self.allowance_tokens * self.rollover_max_percent // 100
        return self.rollover_max_tokens

    def allows(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def policy(self, model: str, settings: Settings) -> ModelPolicy:
        """The plan's weights for a model, else the operator's global ones."""
        return self.weights.get(model) or settings.model_policy(model)

    @classmethod
    def from_row(cls, row: Any) -> Plan:
        weights = {k: ModelPolicy(**v) for k, v in orjson.loads(row.weights).items()}
        return cls(
            name=row.name,
            allowance_tokens=int(row.allowance_tokens),
            period=row.period,
            anchor=row.anchor,
            rpm=row.rpm,
            tpm=row.tpm,
            models=tuple(orjson.loads(row.models)),
            weights=weights,
            rollover=bool(row.rollover),
            rollover_max_tokens=row.rollover_max_tokens,
            rollover_max_percent=row.rollover_max_percent,
            windows=tuple(UsageWindow(**w) for w in orjson.loads(row.windows or "[]")),
            model_caps=tuple(orjson.loads(row.model_caps or "{}").items()),
        )


@dataclass(frozen=True, slots=True)
class OwnCap:
    """The cap a user set in the portal: `tokens` per local "day" or calendar "month"."""

    tokens: int
    period: str

    @classmethod
    def from_row(cls, row: Any) -> OwnCap | None:
        tokens, period = row.own_cap_tokens, row.own_cap_period
        return None if tokens is None or period is None else cls(int(tokens), str(period))


@dataclass(frozen=True, slots=True)
class Subscription:
    plan: Plan
    anchored_at: datetime  # periods anchored at the subscription count from here
    own_cap: OwnCap | None = None


def _row(name: str, config: PlanConfig, now: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "allowance_tokens": config.allowance_tokens,
        "period": config.period,
        "anchor": config.anchor,
        "rpm": config.rpm,
        "tpm": config.tpm,
        "models": orjson.dumps(config.models).decode(),
        "weights": orjson.dumps(
            {k: v.model_dump(mode="json") for k, v in config.weights.items()}
        ).decode(),
        "rollover": config.rollover,
        "rollover_max_tokens": config.rollover_max_tokens,
        "rollover_max_percent": config.rollover_max_percent,
        "windows": _json_or_null([w.model_dump(exclude_none=True) for w in config.windows]),
        "model_caps": _json_or_null(config.model_caps),
        "is_default": config.default,
        "updated_at": now,
    }


def _json_or_null(value: list[Any] | dict[str, Any]) -> str | None:
    return orjson.dumps(value).decode() if value else None


class Plans:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def save(
        self, conn: AsyncConnection, name: str, config: PlanConfig, now: datetime
    ) -> None:
        """Create or replace a plan; a plan marked default takes the mark from the others."""
        row = _row(name, config, now)
        if config.default:
            await conn.execute(update(plans).values(is_default=False))
        statement = insert(self.database.dialect, plans).values(row)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["name"], set_={k: v for k, v in row.items() if k != "name"}
            )
        )

    async def sync_from_settings(self, settings: Settings, now: datetime) -> None:
        """Write the YAML's plans (or the implicit default plan) into the database."""
        if not settings.plans:
            await self._follow_default_allowance(settings.default_allowance_tokens, now)
        async with self.database.transaction() as conn:
            for name, config in settings.plans.items():
                await self.save(conn, name, config, now)

    async def _follow_default_allowance(self, allowance: int, now: datetime) -> None:
        """Create the implicit plan, or give it the setting's allowance if the setting changed
        since it last seeded; each seeding leaves its audit row."""
        async with self.database.transaction() as conn:
            if self.database.dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEED_LOCK_KEY}
                )
            current = await conn.scalar(
                select(plans.c.allowance_tokens).where(plans.c.name == DEFAULT_PLAN)
            )
            if current is None:
                await self._insert_default(conn, allowance, now)
                await _seeded(conn, None, allowance, allowance, now)
                return
            seeded = await _last_seeded(conn)
            if seeded == allowance:
                return  # the setting did not change: an admin's edit, if any, stays
            if seeded is None and current != allowance and await _edited_by_admin(conn):
                # Seeded before seedings were recorded, then edited: the edit is the newer
                # decision. Remember the setting, so that changing it later applies.
                log.warning(
                    "default_plan_kept",
                    plan=DEFAULT_PLAN,
                    allowance_tokens=int(current),
                    setting=allowance,
                    change_with=f"solaris plans set {DEFAULT_PLAN} --allowance {allowance}",
                )
                await _seeded(conn, int(current), int(current), allowance, now)
                return
            await conn.execute(
                update(plans)
                .where(plans.c.name == DEFAULT_PLAN)
                .values(allowance_tokens=allowance, updated_at=now)
            )
            await _seeded(conn, int(current), allowance, allowance, now)
        if int(current) != allowance:
            log.info(
                "default_plan_follows_setting",
                plan=DEFAULT_PLAN,
                allowance_tokens_before=int(current),
                allowance_tokens=allowance,
            )

    async def _insert_default(self, conn: AsyncConnection, allowance: int, now: datetime) -> None:
        # The implicit plan is the default of a database without YAML plans (as it always was).
        await conn.execute(update(plans).values(is_default=False))
        row = _row(DEFAULT_PLAN, PlanConfig(allowance_tokens=allowance, default=True), now)
        await conn.execute(plans.insert().values(row))  # absent, and we hold the lock

    async def get(self, name: str) -> Plan | None:
        async with self.database.transaction() as conn:
            row = (await conn.execute(select(plans).where(plans.c.name == name))).first()
        return Plan.from_row(row) if row else None

    async def all(self) -> list[tuple[Plan, bool]]:
        """Every plan with whether it is the default."""
        async with self.database.transaction() as conn:
            rows = await conn.execute(select(plans).order_by(plans.c.name))
            return [(Plan.from_row(row), bool(row.is_default)) for row in rows]

    async def default_name(self, conn: AsyncConnection) -> str:
        name = await conn.scalar(select(plans.c.name).where(plans.c.is_default.is_(True)))
        return str(name) if name else DEFAULT_PLAN

    async def of_user(self, user_id: int) -> Subscription:
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(plans, subscriptions.c.anchored_at)
                    .join(subscriptions, subscriptions.c.plan_name == plans.c.name)
                    .where(subscriptions.c.user_id == user_id)
                )
            ).first()
        assert row is not None, f"user {user_id} has no subscription"
        return Subscription(Plan.from_row(row), row.anchored_at)

    async def subscribe(
        self, conn: AsyncConnection, user_id: int, plan_name: str, now: datetime, by: str
    ) -> None:
        """Put the user on a plan at once (inside the caller's transaction) and record it."""
        previous = await conn.scalar(
            select(subscriptions.c.plan_name).where(subscriptions.c.user_id == user_id)
        )
        if previous is None:
            await conn.execute(
                subscriptions.insert().values(
                    user_id=user_id, plan_name=plan_name, anchored_at=now, changed_at=now
                )
            )
        else:
            await conn.execute(
                update(subscriptions)
                .where(subscriptions.c.user_id == user_id)
                .values(plan_name=plan_name, anchored_at=now, changed_at=now)
            )
        await conn.execute(
            plan_changes.insert().values(
                user_id=user_id,
                from_plan=previous,
                to_plan=plan_name,
                changed_at=now,
                changed_by=by,
            )
        )


async def _last_seeded(conn: AsyncConnection) -> int | None:
    """The setting's value at the implicit plan's last seeding (None: never recorded)."""
    after = await conn.scalar(
        select(audit_log.c.after)
        .where(
            audit_log.c.action == SEED_ACTION,
            audit_log.c.target_type == "plan",
            audit_log.c.target_id == DEFAULT_PLAN,
        )
        .order_by(audit_log.c.id.desc())
        .limit(1)
    )
    return None if after is None else int(orjson.loads(after)["setting"])


async def _edited_by_admin(conn: AsyncConnection) -> bool:
    found = await conn.scalar(
        select(audit_log.c.id)
        .where(
            audit_log.c.action == "plan.save",
            audit_log.c.target_type == "plan",
            audit_log.c.target_id == DEFAULT_PLAN,
        )
        .limit(1)
    )
    return found is not None


async def _seeded(
    conn: AsyncConnection, before: int | None, after: int, setting: int, now: datetime
) -> None:
    """The seeding's audit row: the plan's allowance before and after, and the setting's value
    (what the next start compares with)."""
    await record(
        conn, SEED_ACTOR, SEED_ACTION, "plan", DEFAULT_PLAN,
        None if before is None else {"allowance_tokens": before},
        {"allowance_tokens": after, "setting": setting}, now,
    )  # fmt: skip
