"""Browser sessions of admins (dashboard, the API's refresh cookie) and portal users.

The cookie carries a random token; the database keeps only its sha256, so a leaked table opens
no session. Each session has its own CSRF token for the forms of the pages it signs in to. A
session is refused when missing, unknown, expired, revoked, or of the other kind: an admin
cookie never opens the portal and a user's never opens the dashboard.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update

from solaris.clock import Clock
from solaris.store.database import Database
from solaris.store.schema import web_sessions

__all__ = ["SESSION_TTL_S_MAX", "SessionKind", "Sessions", "WebSession", "token_digest"]

SessionKind = Literal["admin", "user"]
SESSION_TTL_S_MAX = 30 * 86400
TOKEN_LENGTH_MAX = 128  # token_urlsafe(32) is 43 characters; anything far longer is not ours


@dataclass(frozen=True, slots=True)
class WebSession:
    kind: SessionKind
    subject_id: int  # admins.id or users.id, by kind
    csrf: str
    expires_at: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    async def open(self, kind: SessionKind, subject_id: int, ttl_s: int) -> tuple[str, WebSession]:
        """A new session; returns the token for the cookie (shown once) and the session."""
        assert kind in ("admin", "user"), kind
        assert 0 < ttl_s <= SESSION_TTL_S_MAX, ttl_s
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = WebSession(
            kind, subject_id, secrets.token_urlsafe(32), now + timedelta(seconds=ttl_s)
        )
        async with self.database.transaction() as conn:
            # Expired sessions are swept by whoever opens one: the table stays bounded by the
            # sessions alive in one TTL, with no scheduler.
            await conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
            await conn.execute(
                web_sessions.insert().values(
                    token_sha256=token_digest(token),
                    kind=kind,
                    subject_id=subject_id,
                    csrf=session.csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    async def get(self, token: str | None, kind: SessionKind) -> WebSession | None:
        """The live session of this kind for the token, else None."""
        if not token or len(token) > TOKEN_LENGTH_MAX:
            return None
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(web_sessions).where(web_sessions.c.token_sha256 == token_digest(token))
                )
            ).first()
        if row is None or row.kind != kind or row.revoked_at is not None:
            return None
        expires_at = row.expires_at
        assert expires_at is not None
        if expires_at <= self.clock():
            return None
        return WebSession(kind, int(row.subject_id), row.csrf, expires_at)

    async def close(self, token: str) -> None:
        """Revoke the session (sign-out); unknown tokens are ignored."""
        if not token or len(token) > TOKEN_LENGTH_MAX:
            return
        async with self.database.transaction() as conn:
            await conn.execute(
                update(web_sessions)
                .where(
                    web_sessions.c.token_sha256 == token_digest(token),
                    web_sessions.c.revoked_at.is_(None),
                )
                .values(revoked_at=self.clock())
            )
