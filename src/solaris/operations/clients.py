"""Who a web client is: its address (the connection's, or what a trusted proxy says, see
`SOLARIS_FORWARDED_ALLOW_IPS`), whether it came over HTTPS, and how many sign-in attempts an
address gets (the gateway's GCRA limiter: Redis when configured, so all instances share the
count). Shared by the admin API and the web pages.
"""

from __future__ import annotations

import hashlib
import ipaddress

from starlette.requests import Request

from solaris.limits import Limit, RateLimiter

__all__ = ["address_bucket", "attempt_wait_s", "client_address", "is_secure"]


def is_secure(request: Request, public_base_url: str) -> bool:
    """HTTPS as the browser sees it: this request's scheme (uvicorn honours a trusted proxy's
    X-Forwarded-Proto) or, behind a TLS proxy that does not say so, the public URL."""
    return request.url.scheme == "https" or public_base_url.startswith("https://")


def client_address(request: Request) -> str:
    """The client's address, as uvicorn has it (a trusted proxy's X-Forwarded-For applied)."""
    return request.client.host if request.client else "unknown"


def address_bucket(address: str) -> str:
    """What per-address counts are kept by: the address, or an IPv6 address's /64 (the block
    one subscriber gets; one host could otherwise use a fresh address for every try)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _bucket(key: str) -> int:
    """A limiter id for a non-user key: negative, so it never meets a user's id."""
    digest = hashlib.sha256(key.encode()).digest()
    return -(int.from_bytes(digest[:7], "big") + 1)


async def attempt_wait_s(limiter: RateLimiter, per_minute: int, keys: list[str]) -> float:
    """Count one sign-in attempt against each key; 0 when all allow it, else seconds to wait."""
    assert keys and per_minute > 0
    limit = Limit(rpm=per_minute, tpm=None)
    for key in keys:
        verdict = await limiter.check(_bucket(key), limit, 0)
        if not verdict.allowed:
            return max(1.0, verdict.retry_after_s)
    return 0.0
