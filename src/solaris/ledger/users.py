"""Users, their accounts and their API keys.

A user is created on first sight (a LibreChat id the gateway has not seen) together with an
account holding the default allowance, written as a ledger entry like every other credit.
Per-user API keys are random 256-bit secrets; only their sha256 is stored, which is enough for a
secret of that entropy and costs nothing on the request path.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from solaris.ledger.ledger import Ledger
from solaris.store.schema import accounts, api_keys, users

__all__ = ["KEY_PREFIX", "User", "Users", "hash_key"]

KEY_PREFIX = "sk-sol-"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    external_id: str
    email: str | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Users:
    def __init__(self, ledger: Ledger, default_allowance: int) -> None:
        self.ledger = ledger
        self.database = ledger.database
        self.default_allowance = default_allowance
        dialect = postgresql if self.database.dialect == "postgresql" else sqlite
        self._insert = dialect.insert

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
                self._insert(users)
                .values(external_id=external_id, email=email, created_at=self.ledger.clock())
                .on_conflict_do_nothing(index_elements=["external_id"])
                .returning(users.c.id)
            )
            user_id = inserted.scalar()
            if user_id is not None:  # we won the race to create it
                await conn.execute(accounts.insert().values(user_id=user_id, balance=0, reserved=0))
                if self.default_allowance:
                    await self.ledger.credit(
                        conn,
                        user_id,
                        "allowance",
                        self.default_allowance,
                        idempotency_key=f"allowance:{user_id}:initial",
                        created_by="gateway",
                        note="default allowance for a new user",
                    )
        found = await self.find(external_id)
        assert found is not None
        return found

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

    async def create_key(self, user_id: int) -> str:
        """A new API key for the user; the only time the key itself is visible."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self.database.transaction() as conn:
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

    async def revoke_keys(self, user_id: int) -> int:
        async with self.database.transaction() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self.ledger.clock())
            )
            return int(result.rowcount)
