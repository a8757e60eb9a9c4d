"""Users, their accounts and their API keys.

A user is created on first sight (a LibreChat id the gateway has not seen) together with an
account and a subscription to the default plan, whose allowance is written as a ledger entry
like every other credit.
Per-user API keys are random 256-bit secrets; only their sha256 is stored, which is enough for a
secret of that entropy and costs nothing on the request path.
A user's *standing* (plan and whether an admin blocked them) is read in one query, the one the
request path already makes every few seconds per user.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.errors import SolarisError
from solaris.ledger.ledger import Ledger
from solaris.ledger.plans import OwnCap, Plan, Plans, Subscription
from solaris.store.database import insert
from solaris.store.schema import accounts, api_keys, plans, subscriptions, users

__all__ = ["KEY_PREFIX", "Standing", "User", "Users", "hash_key"]

KEY_PREFIX = "sk-sol-"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    external_id: str
    email: str | None


@dataclass(frozen=True, slots=True)
class Standing:
    """What the request path needs to know about a user beyond who they are."""

    subscription: Subscription
    blocked: bool
    blocked_reason: str | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Users:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.database = ledger.database
        self.plans = Plans(ledger.database)

    async def find(self, external_id: str) -> User | None:
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(users.c.id, users.c.external_id, users.c.email).where(
                        users.c.external_id == external_id
                    )
                )
            ).first()
        return User(int(row.id), row.external_id, row.email) if row else None

    async def ensure(self, external_id: str, email: str | None = None) -> User:
        """The user with this external id, created with the default allowance if new."""
        assert external_id, "an external id is never empty"
        if (found := await self.find(external_id)) is not None:
            return found
        async with self.database.transaction() as conn:
            inserted = await conn.execute(
                insert(self.database.dialect, users)
                .values(external_id=external_id, email=email, created_at=self.ledger.clock())
                .on_conflict_do_nothing(index_elements=["external_id"])
                .returning(users.c.id)
            )
            user_id = inserted.scalar()
            if user_id is not None:  # we won the race to create it
                await self._open_account(conn, user_id)
        found = await self.find(external_id)
        assert found is not None
        return found

    async def set_email(self, user_id: int, email: str) -> bool:
        """Store the user's current e-mail (what LibreChat sends); False if it was already."""
        async with self.database.transaction() as conn:
            result = await conn.execute(
                update(users)
                .where(users.c.id == user_id, users.c.email.is_distinct_from(email))
                .values(email=email)
            )
        return bool(result.rowcount)

    async def _open_account(self, conn: AsyncConnection, user_id: int) -> None:
        """A new user's account, subscribed to the default plan with its first allowance."""
        now = self.ledger.clock()
        await conn.execute(accounts.insert().values(user_id=user_id, balance=0, reserved=0))
        plan_name = await self.plans.default_name(conn)
        await self.plans.subscribe(conn, user_id, plan_name, now, by="gateway")
        row = (await conn.execute(select(plans).where(plans.c.name == plan_name))).one()
        await self.ledger.refresh(conn, user_id, Plan.from_row(row), now, now)

    async def change_plan(
        self, conn: AsyncConnection, user_id: int, plan_name: str, by: str
    ) -> None:
        """Put the user on another plan at once: its allowance replaces the current one."""
        now = self.ledger.clock()
        row = (await conn.execute(select(plans).where(plans.c.name == plan_name))).first()
        if row is None:
            raise SolarisError(f"no plan {plan_name!r}")
        await self.plans.subscribe(conn, user_id, plan_name, now, by=by)
        await self.ledger.refresh(conn, user_id, Plan.from_row(row), now, now, new_plan=True)

    async def standing(self, user_id: int) -> Standing:
        """The user's plan and block in one round trip (the request path's per-user lookup)."""
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(
                        plans,
                        subscriptions.c.anchored_at,
                        users.c.blocked_at,
                        users.c.blocked_reason,
                        users.c.own_cap_tokens,
                        users.c.own_cap_period,
                    )
                    .join(subscriptions, subscriptions.c.plan_name == plans.c.name)
                    .join(users, users.c.id == subscriptions.c.user_id)
                    .where(subscriptions.c.user_id == user_id)
                )
            ).first()
        assert row is not None, f"user {user_id} has no subscription"
        anchored_at = row.anchored_at
        assert anchored_at is not None
        subscription = Subscription(Plan.from_row(row), anchored_at, OwnCap.from_row(row))
        return Standing(subscription, row.blocked_at is not None, row.blocked_reason)

    async def set_own_cap(
        self, conn: AsyncConnection, user_id: int, cap: OwnCap | None
    ) -> OwnCap | None:
        """Set the cap the user chose themselves (None: none), in the caller's transaction;
        returns the one it replaces."""
        values = (None, None) if cap is None else (cap.tokens, cap.period)
        before = (
            await conn.execute(
                select(users.c.own_cap_tokens, users.c.own_cap_period).where(users.c.id == user_id)
            )
        ).one()
        await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(own_cap_tokens=values[0], own_cap_period=values[1])
        )
        return OwnCap.from_row(before)

    async def set_blocked(
        self, conn: AsyncConnection, user_id: int, reason: str | None, now: datetime
    ) -> None:
        """Block the user (a reason given) or unblock them (None), in the caller's transaction."""
        await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(blocked_at=None if reason is None else now, blocked_reason=reason)
        )

    async def list(self, limit: int = 100) -> list[tuple[User, int]]:
        """Users with their balances, newest first."""
        async with self.database.transaction() as conn:
            rows = await conn.execute(
                select(users.c.id, users.c.external_id, users.c.email, accounts.c.balance)
                .join(accounts, accounts.c.user_id == users.c.id)
                .order_by(users.c.id.desc())
                .limit(limit)
            )
            return [(User(int(r.id), r.external_id, r.email), int(r.balance)) for r in rows]

    async def create_key(self, conn: AsyncConnection, user_id: int) -> str:
        """A new API key for the user; the only time the key itself is visible."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        await conn.execute(
            api_keys.insert().values(
                user_id=user_id,
                key_hash=hash_key(key),
                prefix=key[: len(KEY_PREFIX) + 4],
                created_at=self.ledger.clock(),
            )
        )
        return key

    async def user_for_key(self, key: str) -> User | None:
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(users.c.id, users.c.external_id, users.c.email)
                    .join(api_keys, api_keys.c.user_id == users.c.id)
                    .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
                )
            ).first()
        return User(int(row.id), row.external_id, row.email) if row else None

    async def revoke_keys(self, conn: AsyncConnection, user_id: int) -> tuple[str, ...]:
        """Revoke the user's live keys; returns their hashes (the identity cache's keys, to
        forget them)."""
        result = await conn.execute(
            update(api_keys)
            .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=self.ledger.clock())
            .returning(api_keys.c.key_hash)
        )
        return tuple(str(row.key_hash) for row in result)
