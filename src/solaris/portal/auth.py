"""Sessions of the web pages: which cookie each area uses, reading it, opening and closing it.

The dashboard's cookie (`solaris_admin`, Path=/admin) opens only admin sessions and the
portal's (`solaris_portal`, Path=/portal) only user sessions: `Sessions.get` checks the kind,
and the paths keep the browser from even sending one area's cookie to the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from solaris.admin.sessions import SessionKind, Sessions, WebSession
from solaris.portal.security import is_secure, set_cookie

__all__ = ["COOKIES", "Signed", "WebAuth"]

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
