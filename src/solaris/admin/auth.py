"""Who is calling the admin API: an admin's short-lived access token, or an admin API key.

An admin signs in with e-mail and password and gets an HS256 JWT (`aud: "solaris-admin"`,
`SOLARIS_ADMIN_TOKEN_TTL_S`) plus a refresh cookie: an HttpOnly, SameSite=Strict cookie scoped
to /api/admin/, backed by an admin `web_sessions` row that sign-out revokes. Automation uses
an admin API key (`Bearer sk-adm-…`) instead. Anything else is refused with 401: a token with
another audience (a portal link, any user-scoped token), an expired or forged one, a disabled
admin's. Signing in is `solaris.operations.signin`'s, shared with the dashboard's form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from solaris.config import Settings
from solaris.errors import Unauthorized
from solaris.operations.admins import ADMIN_KEY_PREFIX, Admins
from solaris.operations.clients import is_secure
from solaris.operations.sessions import Sessions
from solaris.store.audit import Actor

__all__ = [
    "ALGORITHM",
    "AUDIENCE",
    "REFRESH_COOKIE",
    "REFRESH_PATH",
    "Admin",
    "AdminAuth",
    "Caller",
    "current_admin",
    "issue_token",
]

ALGORITHM = "HS256"
AUDIENCE = "solaris-admin"
TOKEN_TYPE = "admin-access"
REFRESH_COOKIE = "solaris_admin_refresh"
REFRESH_PATH = "/api/admin/"
BEARER_LENGTH_MAX = 4096


@dataclass(frozen=True, slots=True)
class Caller:
    admin_id: int
    actor: Actor


def issue_token(key: bytes, admin_id: int, ttl_s: int, now: datetime) -> str:
    claims = {
        "sub": str(admin_id),
        "aud": AUDIENCE,
        "typ": TOKEN_TYPE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _token_admin(key: bytes, token: str) -> int:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The admin token has expired: sign in or refresh.") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("Invalid admin token.") from None
    subject = claims.get("sub")
    if claims.get("typ") != TOKEN_TYPE or not isinstance(subject, str) or not subject.isdigit():
        raise Unauthorized("Invalid admin token.")
    return int(subject)


class AdminAuth:
    def __init__(self, settings: Settings, admins: Admins, sessions: Sessions) -> None:
        self.settings = settings
        self.admins = admins
        self.sessions = sessions
        self._key = settings.signing_key()

    def token(self, admin_id: int) -> str:
        return issue_token(
            self._key, admin_id, self.settings.admin_token_ttl_s, self.sessions.clock()
        )

    async def caller(self, request: Request) -> Caller:
        """The FastAPI dependency of every admin route: the caller, or 401."""
        value = request.headers.get("authorization", "")
        scheme, _, credential = value.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("Missing admin credentials: send `Authorization: Bearer <token>`.")
        if len(credential) > BEARER_LENGTH_MAX:
            raise Unauthorized("Invalid admin token.")
        if credential.startswith(ADMIN_KEY_PREFIX):
            found = await self.admins.resolve_api_key(credential)
            if found is None:
                raise Unauthorized("Invalid or revoked admin API key.")
            return Caller(found[0], Actor(f"apikey:{found[1]}"))
        admin_id = _token_admin(self._key, credential)
        if not await self.admins.is_active(admin_id):
            raise Unauthorized("This admin account is disabled.")
        return Caller(admin_id, Actor(f"admin:{admin_id}"))

    def is_secure(self, request: Request) -> bool:
        return is_secure(request, self.settings.public_base_url)


# Declares the scheme in the OpenAPI document (Swagger UI's "Authorize"); `AdminAuth.caller`
# reads the header itself.
bearer = HTTPBearer(
    auto_error=False,
    description="An `access_token` from POST /api/admin/login, or an admin API key (sk-adm-…).",
)


async def current_admin(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The dependency of every admin route (the app keeps its `AdminAuth` in its state)."""
    auth: AdminAuth = request.app.state.admin_auth
    return await auth.caller(request)


Admin = Annotated[Caller, Depends(current_admin)]
