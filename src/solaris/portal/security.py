"""What keeps the web pages safe: cookies, CSRF tokens, sign-in rate limits, response headers.

- Session cookies are HttpOnly, SameSite=Lax, scoped to their area's path, and Secure when the
  request came over HTTPS or the public base URL is https (a TLS proxy in front).
- Every POST form carries a CSRF token: the session's own (`WebSession.csrf`), or before
  sign-in a random one doubled in a short-lived cookie, so a foreign site cannot sign a
  victim in to the attacker's account either.
- Sign-in attempts are counted per client address with the gateway's GCRA limiter (Redis
  when configured, so all instances share the count); what a limit per account may do without
  becoming a way to lock its owner out is the sign-in's own business (`solaris.operations.signin`,
  and the portal's link form, which sends an inbox no more than its share of links). A client's
  address is the connection's, or what a trusted proxy says (`SOLARIS_FORWARDED_ALLOW_IPS`).
- Pages get a strict Content-Security-Policy (scripts only from /static; forms post to this
  site only, and the purchase page's also to the providers' hosted checkout it redirects to), no
  caching, no referrer (a link's token never leaks) and no framing.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Callable, Iterable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSRF_FIELD",
    "LOGIN_CSRF_COOKIE",
    "LOGIN_CSRF_TTL_S",
    "SecurityHeaders",
    "content_security_policy",
    "csrf_matches",
    "login_csrf",
    "safe_next",
    "set_cookie",
    "too_many",
]

CSRF_FIELD = "csrf"
LOGIN_CSRF_COOKIE = "solaris_login_csrf"
LOGIN_CSRF_TTL_S = 3600


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """The pages' policy; `form_targets` are other origins a form may lead to (a browser checks
    the redirect that answers a form against `form-action` too)."""
    form_action = " ".join(("'self'", *form_targets))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action {form_action}; "
        "frame-ancestors 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()
PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


def set_cookie(
    response: Response,
    name: str,
    value: str,
    *,
    path: str,
    max_age_s: int | None,
    secure: bool,
    samesite: str = "lax",
) -> None:
    """A cookie scripts cannot read; `max_age_s=0` deletes it."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=path,
        secure=secure,
        httponly=True,
        samesite=samesite,  # type: ignore[arg-type]
    )


def csrf_matches(sent: object, expected: str | None) -> bool:
    """The form's token equals the expected one (constant time); missing never matches."""
    if not isinstance(sent, str) or not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def login_csrf(request: Request) -> str:
    """The pre-sign-in CSRF token: the cookie's when the browser has one, else a new one
    (the caller sets it with `set_cookie(LOGIN_CSRF_COOKIE, ...)`)."""
    current = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return current if len(current) == 43 else secrets.token_urlsafe(32)


def too_many(t: Callable[..., str], wait_s: float) -> str:
    """The sign-in pages' "too many attempts", in seconds or, past two minutes, minutes."""
    if wait_s < 120:
        return t("login.too_many", seconds=max(1, round(wait_s)))
    return t("login.too_many_minutes", minutes=math.ceil(wait_s / 60))


def safe_next(value: str | None, prefix: str, default: str) -> str:
    """A redirect target inside `prefix` on this site (never `//host` or a scheme)."""
    if not value or not value.startswith(prefix) or value.startswith("//") or "\\" in value:
        return default
    return value


class SecurityHeaders:
    """Pure ASGI: adds `PAGE_HEADERS` to every response of the wrapped app."""

    def __init__(self, app: ASGIApp, extra: Mapping[bytes, bytes] | None = None) -> None:
        self.app = app
        self.headers = [*PAGE_HEADERS, *(extra or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in self.headers if n not in names]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, send_with_headers)
