"""Identity lookups cached in process, and in Redis when configured (shared by instances).

The cache only ever saves a database read: every miss falls through to the database, and a Redis
failure is logged once and treated as a miss, so the gateway keeps serving without Redis.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import structlog

from solaris.observability.metrics import Metrics

if TYPE_CHECKING:  # redis-py (~6 MiB with what it imports) is loaded only when configured
    import redis.asyncio as aioredis

__all__ = ["IdentityCache"]

log = structlog.get_logger(__name__)

LOCAL_ENTRIES_MAX = 100_000
REDIS_TIMEOUT_S = 0.25


class IdentityCache:
    """Maps a lookup key (an external user id or a key hash) to a user id, with a TTL."""

    def __init__(self, redis_url: str | None, ttl_s: float, metrics: Metrics) -> None:
        self.ttl_s = ttl_s
        self._hits = metrics.identity_cache.labels("hit")
        self._misses = metrics.identity_cache.labels("miss")
        self._redis_errors = metrics.store_errors.labels("redis")
        self._local: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._redis: aioredis.Redis | None = None
        # What a Redis call raises when Redis fails (redis-py's errors once it is imported).
        self._failures: tuple[type[Exception], ...] = (OSError,)
        if redis_url:
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError

            self._redis = aioredis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                decode_responses=True,
            )
            self._failures = (RedisError, OSError)
        self._redis_healthy = True
        # Set at start-up to the deployment's id: other deployments may share this Redis.
        self.namespace = ""

    async def get(self, key: str) -> int | None:
        entry = self._local.get(key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            self._hits.inc()
            return entry[1]
        value = await self._redis_get(key)
        if value is None:
            self._misses.inc()
            return None
        self._hits.inc()
        self._remember(key, value, now)
        return value

    async def _redis_get(self, key: str) -> int | None:
        if self._redis is None:
            return None
        try:
            value = await self._redis.get(self._key(key))
        except self._failures as error:
            self._redis_failed(error)
            return None
        self._redis_recovered()
        return None if value is None else int(value)

    async def set(self, key: str, user_id: int) -> None:
        self._remember(key, user_id, time.monotonic())
        if self._redis is None:
            return
        try:
            await self._redis.set(self._key(key), user_id, ex=max(1, int(self.ttl_s)))
        except self._failures as error:
            self._redis_failed(error)
        else:
            self._redis_recovered()

    async def forget(self, *keys: str) -> None:
        """Drop entries that no longer hold (e.g. revoked keys): here and in Redis. Other
        processes' local copies live out their TTL."""
        for key in keys:
            self._local.pop(key, None)
        if self._redis is None or not keys:
            return
        try:
            await self._redis.delete(*(self._key(key) for key in keys))
        except self._failures as error:
            self._redis_failed(error)
        else:
            self._redis_recovered()

    async def ping(self) -> str:
        """ "ok", "not configured", or what is wrong (for /readyz)."""
        if self._redis is None:
            return "not configured"
        try:
            await self._redis.ping()
        except self._failures as error:
            return f"unreachable: {error}"
        return "ok"

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def _key(self, key: str) -> str:
        assert self.namespace, "the namespace is set at start-up"
        return f"solaris:{self.namespace}:identity:{key}"

    def _remember(self, key: str, user_id: int, now: float) -> None:
        self._local[key] = (now + self.ttl_s, user_id)
        self._local.move_to_end(key)
        if len(self._local) > LOCAL_ENTRIES_MAX:
            self._local.popitem(last=False)

    def _redis_failed(self, error: Exception) -> None:
        self._redis_errors.inc()
        if self._redis_healthy:
            log.warning(
                "redis_unavailable", error=str(error), effect="identity cache is local only"
            )
        self._redis_healthy = False

    def _redis_recovered(self) -> None:
        if not self._redis_healthy:
            log.info("redis_recovered")
        self._redis_healthy = True
