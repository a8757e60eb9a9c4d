"""Admin accounts: argon2id password hashes, and API keys for automation.

Passwords are hashed with argon2-cffi's defaults (argon2id, 64 MiB, t=3), in a thread so a
login never stalls the event loop. Signing in with an unknown e-mail still verifies against a
dummy hash, so the answer takes as long as for a wrong password and does not reveal which
e-mails are admins. A hash made with older parameters is redone at the next good sign-in.
Admin API keys (`sk-adm-…`) are random 256-bit secrets shown once; only their sha256 is kept.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from solaris.clock import Clock
from solaris.errors import BadRequest, SolarisError
from solaris.store.audit import CLI_ACTOR, Actor, record
from solaris.store.database import Database
from solaris.store.schema import admin_api_keys, admins

__all__ = [
    "ADMIN_KEY_PREFIX",
    "PASSWORD_LENGTH_MIN",
    "AdminAccount",
    "AdminKey",
    "Admins",
    "normalize_email",
]

ADMIN_KEY_PREFIX = "sk-adm-"
PASSWORD_LENGTH_MIN = 10
PASSWORD_LENGTH_MAX = 1024  # argon2 takes any length; a megabyte "password" is an attack
EMAIL_LENGTH_MAX = 320
KEY_LENGTH_MAX = 128
LAST_USED_PRECISION = timedelta(minutes=1)  # a key's last use is written at most this often

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """What an unknown e-mail is checked against; made on first use (a hash costs ~0.1 s,
    which every CLI command would pay at import)."""
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class AdminAccount:
    id: int
    email: str
    created_at: datetime
    disabled: bool


@dataclass(frozen=True, slots=True)
class AdminKey:
    id: int
    admin_id: int
    name: str
    created_at: datetime
    revoked: bool
    last_used_at: datetime | None


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class Admins:
    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    async def create(self, email: str, password: str, actor: Actor = CLI_ACTOR) -> int:
        """A new admin; raises BadRequest for a bad e-mail or short password, or a taken e-mail."""
        email = normalize_email(email)
        if "@" not in email or len(email) > EMAIL_LENGTH_MAX:
            raise BadRequest(f"not an e-mail address: {email!r}", param="email")
        if not PASSWORD_LENGTH_MIN <= len(password) <= PASSWORD_LENGTH_MAX:
            raise BadRequest(
                f"the password needs at least {PASSWORD_LENGTH_MIN} characters", param="password"
            )
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        now = self.clock()
        try:
            async with self.database.transaction() as conn:
                admin_id = await conn.scalar(
                    admins.insert()
                    .values(email=email, password_hash=password_hash, created_at=now)
                    .returning(admins.c.id)
                )
                assert admin_id is not None
                await record(
                    conn, actor, "admin.create", "admin", admin_id, None, {"email": email}, now
                )
        except IntegrityError:
            raise BadRequest(
                f"an admin with e-mail {email} exists already", param="email"
            ) from None
        return int(admin_id)

    async def authenticate(self, email: str, password: str) -> int | None:
        """The admin's id when the password is right and the account enabled, else None."""
        email = normalize_email(email)
        if len(email) > EMAIL_LENGTH_MAX or len(password) > PASSWORD_LENGTH_MAX:
            return None
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(admins.c.id, admins.c.password_hash, admins.c.disabled_at).where(
                        admins.c.email == email
                    )
                )
            ).first()
        if row is None:
            await asyncio.to_thread(_verify, _dummy_hash(), password)
            return None
        if not await asyncio.to_thread(_verify, row.password_hash, password):
            return None
        if row.disabled_at is not None:
            return None
        if _hasher.check_needs_rehash(row.password_hash):
            new_hash = await asyncio.to_thread(_hasher.hash, password)
            async with self.database.transaction() as conn:
                await conn.execute(
                    update(admins).where(admins.c.id == row.id).values(password_hash=new_hash)
                )
        return int(row.id)

    async def get(self, admin_id: int) -> AdminAccount | None:
        async with self.database.transaction() as conn:
            row = (await conn.execute(select(admins).where(admins.c.id == admin_id))).first()
        return _account(row) if row else None

    async def find(self, email: str) -> AdminAccount | None:
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(select(admins).where(admins.c.email == normalize_email(email)))
            ).first()
        return _account(row) if row else None

    async def all(self) -> list[AdminAccount]:
        async with self.database.transaction() as conn:
            rows = await conn.execute(select(admins).order_by(admins.c.id))
            return [_account(row) for row in rows]

    async def is_active(self, admin_id: int) -> bool:
        found = await self.get(admin_id)
        return found is not None and not found.disabled

    async def create_api_key(self, admin_id: int, name: str, actor: Actor = CLI_ACTOR) -> str:
        """A new admin API key; the only time the key itself is visible."""
        name = name.strip()
        if not 0 < len(name) <= 120:
            raise BadRequest("a key needs a name of 1 to 120 characters", param="name")
        key = ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        async with self.database.transaction() as conn:
            if await conn.scalar(select(admins.c.id).where(admins.c.id == admin_id)) is None:
                raise SolarisError(f"no admin {admin_id}")
            key_id = await conn.scalar(
                admin_api_keys.insert()
                .values(admin_id=admin_id, name=name, key_sha256=_key_digest(key), created_at=now)
                .returning(admin_api_keys.c.id)
            )
            after = {"admin_id": admin_id, "name": name}
            await record(conn, actor, "admin.key.create", "admin_api_key", key_id, None, after, now)
        return key

    async def revoke_api_key(self, key_id: int, actor: Actor = CLI_ACTOR) -> bool:
        """Revoke one admin API key; False when it was unknown or revoked already."""
        now = self.clock()
        async with self.database.transaction() as conn:
            done = await conn.execute(
                update(admin_api_keys)
                .where(admin_api_keys.c.id == key_id, admin_api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if not done.rowcount:
                return False
            await record(
                conn,
                actor,
                "admin.key.revoke",
                "admin_api_key",
                key_id,
                None,
                {"revoked": True},
                now,
            )
        return True

    async def api_keys(self, admin_id: int) -> list[AdminKey]:
        async with self.database.transaction() as conn:
            rows = await conn.execute(
                select(admin_api_keys)
                .where(admin_api_keys.c.admin_id == admin_id)
                .order_by(admin_api_keys.c.id)
            )
            return [
                AdminKey(
                    int(row.id),
                    int(row.admin_id),
                    row.name,
                    row.created_at,
                    row.revoked_at is not None,
                    row.last_used_at,
                )
                for row in rows
            ]

    async def by_api_key(self, key: str) -> int | None:
        """The admin id of a live key of an enabled admin, else None."""
        found = await self.resolve_api_key(key)
        return None if found is None else found[0]

    async def resolve_api_key(self, key: str) -> tuple[int, int] | None:
        """(admin id, key id) of a live key of an enabled admin, else None."""
        if not key.startswith(ADMIN_KEY_PREFIX) or len(key) > KEY_LENGTH_MAX:
            return None
        now = self.clock()
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(
                        admin_api_keys.c.id,
                        admin_api_keys.c.admin_id,
                        admin_api_keys.c.last_used_at,
                    )
                    .join(admins, admins.c.id == admin_api_keys.c.admin_id)
                    .where(
                        admin_api_keys.c.key_sha256 == _key_digest(key),
                        admin_api_keys.c.revoked_at.is_(None),
                        admins.c.disabled_at.is_(None),
                    )
                )
            ).first()
            if row is None:
                return None
            last_used = row.last_used_at
            if last_used is None or now - last_used >= LAST_USED_PRECISION:
                await conn.execute(
                    update(admin_api_keys)
                    .where(admin_api_keys.c.id == row.id)
                    .values(last_used_at=now)
                )
        return int(row.admin_id), int(row.id)


def _account(row: object) -> AdminAccount:
    created_at = row.created_at  # type: ignore[attr-defined]
    assert created_at is not None
    return AdminAccount(
        int(row.id),  # type: ignore[attr-defined]
        row.email,  # type: ignore[attr-defined]
        created_at,
        row.disabled_at is not None,  # type: ignore[attr-defined]
    )
