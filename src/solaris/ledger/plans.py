"""Plans and subscriptions: what a user may spend per period, how fast, on which models.

Plans live in the database. Those named in the YAML config (`plans:`) are written there at
`solaris migrate` and at start-up (the YAML wins for the plans it names); others are managed with
`solaris plans`. With no plan configured at all, an implicit plan named "default" offers
`SOLARIS_DEFAULT_ALLOWANCE_TOKENS` with no rate limits and every model. Each user has exactly one
subscription; changing it is immediate and recorded in `plan_changes`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.config import ModelPolicy, PlanConfig, Settings
from solaris.store.database import Database
from solaris.store.schema import plan_changes, plans, subscriptions

__all__ = ["DEFAULT_PLAN", "Plan", "PlanConfig", "Plans", "Subscription"]

DEFAULT_PLAN = "default"


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
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    plan: Plan
    anchored_at: datetime  # periods anchored at the subscription count from here


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
        "is_default": config.default,
        "updated_at": now,
    }


class Plans:
    def __init__(self, database: Database) -> None:
        self.database = database
        dialect = postgresql if database.dialect == "postgresql" else sqlite
        self._insert = dialect.insert

    async def save(self, name: str, config: PlanConfig, now: datetime) -> None:
        """Create or replace a plan; a plan marked default takes the mark from the others."""
        row = _row(name, config, now)
        async with self.database.transaction() as conn:
            if config.default:
                await conn.execute(update(plans).values(is_default=False))
            statement = self._insert(plans).values(row)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"], set_={k: v for k, v in row.items() if k != "name"}
                )
            )

    async def sync_from_settings(self, settings: Settings, now: datetime) -> None:
        """Write the YAML's plans (or the implicit default plan) into the database."""
        configured = dict(settings.plans)
        if not configured and await self.get(DEFAULT_PLAN) is None:
            configured = {
                DEFAULT_PLAN: PlanConfig(
                    allowance_tokens=settings.default_allowance_tokens, default=True
                )
            }
        for name, config in configured.items():
            await self.save(name, config, now)

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
        anchored_at = row.anchored_at
        if anchored_at.tzinfo is None:  # SQLite keeps no zone; it was written in UTC
            anchored_at = anchored_at.replace(tzinfo=UTC)
        return Subscription(Plan.from_row(row), anchored_at)

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
