"""Signed, short-lived, single-use links that log a user into the portal (e.g. to buy credits).

A link carries an HS256 JWT: the user, the purpose, an expiry and a random id (`jti`). Verifying
checks signature, purpose and expiry; the portal also spends the id in the database when it
redeems a link (`portal.auth.redeem_link`), so a link works once even across gateway instances.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import jwt

from solaris.errors import SolarisError

__all__ = [
    "InvalidLink",
    "LinkClaims",
    "buy_url",
    "login_url",
    "sign_link",
    "verify_link",
]

ALGORITHM = "HS256"
PURPOSE = "portal"


class InvalidLink(SolarisError):
    """The link is forged, expired, meant for something else, or already used."""


@dataclass(frozen=True, slots=True)
class LinkClaims:
    user_id: int
    jti: str
    expires_at: datetime


def sign_link(key: bytes, user_id: int, ttl_s: int, now: datetime) -> str:
    claims = {
        "sub": str(user_id),
        "purpose": PURPOSE,
        "jti": uuid.uuid4().hex,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def buy_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url}/portal/buy?t={quote(token, safe='')}"


def login_url(public_base_url: str, token: str) -> str:
    """The e-mailed sign-in link: opens the portal's home page."""
    return f"{public_base_url}/portal/login?t={quote(token, safe='')}"


def verify_link(key: bytes, token: str) -> LinkClaims:
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "jti"]}
        )
    except jwt.InvalidTokenError as error:
        raise InvalidLink(str(error)) from None
    if claims.get("purpose") != PURPOSE:
        raise InvalidLink("not a portal link")
    return LinkClaims(
        user_id=int(claims["sub"]),
        jti=str(claims["jti"]),
        expires_at=datetime.fromtimestamp(claims["exp"]).astimezone(),
    )
