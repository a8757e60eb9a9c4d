"""Sessions of the web pages: which cookie each area uses, reading it, opening and closing it.

A signed link (`solaris.links`) is redeemed once: its id is spent in `used_links`.

The dashboard's cookie (`solaris_admin`, Path=/admin) opens only admin sessions and the
portal's (`solaris_portal`, Path=/portal) only user sessions: `Sessions.get` checks the kind,
and the paths keep the browser from even sending one area's cookie to the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from solaris.links import InvalidLink, LinkClaims, verify_link
from solaris.operations.clients import is_secure
from solaris.operations.sessions import SessionKind, Sessions, WebSession
from solaris.portal.security import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    LOGIN_CSRF_TTL_S,
    csrf_matches,
    login_csrf,
    set_cookie,
)
from solaris.store.database import Database
from solaris.store.schema import used_links

__all__ = ["COOKIES", "Signed", "WebAuth", "redeem_link"]

COOKIES: dict[SessionKind, tuple[str, str]] = {
    "admin": ("solaris_admin", "/admin"),
    "user": ("solaris_portal", "/portal"),
}


@dataclass(frozen=True, slots=True)
class Signed:
    """A signed-in request: its session and the cookie's token (for sign-out)."""

    session: WebSession
    token: str


class WebAuth:
    def __init__(self, sessions: Sessions, kind: SessionKind, public_base_url: str) -> None:
        self.sessions = sessions
        self.kind = kind
        self.cookie, self.path = COOKIES[kind]
        self.public_base_url = public_base_url

    async def current(self, request: Request) -> Signed | None:
        token = request.cookies.get(self.cookie)
        session = await self.sessions.get(token, self.kind)
        return Signed(session, token) if session is not None and token else None

    def login_page(self, request: Request, render: Callable[[str], Response]) -> Response:
        """The area's sign-in form: `render` draws it with a login-CSRF token, which is set
        here as the area's login cookie (the form must send it back)."""
        token = login_csrf(request)
        response = render(token)
        set_cookie(
            response,
            LOGIN_CSRF_COOKIE,
            token,
            path=self.path,
            max_age_s=LOGIN_CSRF_TTL_S,
            secure=is_secure(request, self.public_base_url),
            samesite="strict",
        )
        return response

    @staticmethod
    def login_form_sent_back(request: Request, form: Mapping[str, object]) -> bool:
        """Whether a sign-in form came from the form `login_page` drew (login CSRF)."""
        return csrf_matches(form.get(CSRF_FIELD), request.cookies.get(LOGIN_CSRF_COOKIE))

    async def sign_in(
        self, request: Request, response: Response, subject_id: int, ttl_s: int
    ) -> WebSession:
        """Open a session (closing the one the browser had) and set its cookie."""
        if (previous := request.cookies.get(self.cookie)) is not None:
            await self.sessions.close(previous)
        token, session = await self.sessions.open(self.kind, subject_id, ttl_s)
        set_cookie(
            response,
            self.cookie,
            token,
            path=self.path,
            max_age_s=ttl_s,
            secure=is_secure(request, self.public_base_url),
        )
        return session

    async def sign_out(self, request: Request, response: Response) -> None:
        """Revoke the cookie's session and clear the cookie: never one without the other."""
        if (token := request.cookies.get(self.cookie)) is not None:
            await self.sessions.close(token)
        set_cookie(
            response,
            self.cookie,
            "",
            path=self.path,
            max_age_s=0,
            secure=is_secure(request, self.public_base_url),
        )


async def redeem_link(database: Database, key: bytes, token: str, now: datetime) -> LinkClaims:
    """Verify and spend a link; a second redemption raises `InvalidLink`."""
    claims = verify_link(key, token)
    try:
        async with database.transaction() as conn:
            await conn.execute(used_links.insert().values(jti=claims.jti, used_at=now))
    except IntegrityError:
        raise InvalidLink("link already used") from None
    return claims
