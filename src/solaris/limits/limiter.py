"""Per-user RPM/TPM limits shared by every gateway process through Redis.

One Lua script checks and updates both limits atomically, on the Redis server's clock, so any
number of gateway hosts (with skewed clocks) agree. Without a Redis URL the limits are kept in
process. When Redis fails, requests keep flowing under per-process limits (one warning logged),
and Redis is tried again after `REDIS_RETRY_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from solaris.limits.gcra import Limit, LocalLimiter, Verdict, pre_check, verdict

__all__ = ["REDIS_RETRY_S", "REDIS_TIMEOUT_S", "RateLimiter", "redis_keys"]

if TYPE_CHECKING:  # redis-py (~6 MiB with what it imports) is loaded only when configured
    import redis.asyncio as aioredis

log = structlog.get_logger(__name__)

REDIS_TIMEOUT_S = 0.25
REDIS_RETRY_S = 1.0

# Mirrors solaris.limits.gcra.fit step for step (same µs integers, same rounding), so Redis and
# the in-process fallback give the same answers. TIME is the server's clock: one clock for all
# hosts. Redis ≥ 5 replicates a script's effects, so writing after TIME is allowed.
GCRA_LUA = """
local WINDOW_US = 60000000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local function fit(key, rate, cost)
  if rate == 0 then return 0, nil end
  local tat = tonumber(redis.call('GET', key)) or 0
  local after = math.max(tat - now, 0) + cost * WINDOW_US / rate
  if after > WINDOW_US then return math.ceil(after - WINDOW_US), nil end
  return 0, math.floor(after)
end

local function store(key, after)
  -- The key lives only while it limits anyone: past its TAT it is the same as no key.
  if after ~= nil and after > 0 then
    redis.call('SET', key, string.format('%.0f', now + after), 'PX', math.ceil(after / 1000))
  end
end

local rpm_wait, rpm_after = fit(KEYS[1], tonumber(ARGV[1]), 1)
local tpm_wait, tpm_after = fit(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
if rpm_wait > 0 or tpm_wait > 0 then return {rpm_wait, tpm_wait} end
store(KEYS[1], rpm_after)
store(KEYS[2], tpm_after)
return {0, 0}
"""


def redis_keys(user_id: int, namespace: str = "") -> tuple[str, str]:
    """The user's two keys, in the deployment's namespace (user ids are per database). The
    braces are a Redis Cluster hash tag: both keys share one slot, which a multi-key script needs."""
    prefix = f"solaris:{namespace}:rl" if namespace else "solaris:rl"
    return f"{prefix}:{{{user_id}}}:rpm", f"{prefix}:{{{user_id}}}:tpm"


class RateLimiter:
    """Counts each allowed request against both of the user's limits, or nothing if either is full."""

    def __init__(
        self,
        redis_url: str | None,
        clock: Callable[[], float] = time.time,
        on_redis_error: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_redis_error = on_redis_error
        self._local = LocalLimiter(clock)
        self._redis: aioredis.Redis | None = None
        # What a Redis call raises when Redis fails (redis-py's errors once it is imported).
        self._failures: tuple[type[Exception], ...] = (OSError,)
        if redis_url:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError

            self._failures = (RedisError, OSError)
            self._redis = aioredis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                # No retries (the client's default is 10, with back-off): re-running a script
                # that timed out could count a request twice, and a dead Redis costs one timeout.
                retry=Retry(NoBackoff(), 0),
            )
            self._script = self._redis.register_script(GCRA_LUA)
        self._redis_healthy = True
        self._redis_failed_at = 0.0
        self.namespace = ""  # the gateway sets its deployment's id at start-up

    async def check(self, user_id: int, limit: Limit, tokens: int) -> Verdict:
        """Atomically count one request of `tokens` tokens if both limits allow it; count nothing otherwise."""
        early = pre_check(limit, tokens)
        if early is not None:
            return early
        if self._redis is not None and self._redis_due():
            try:
                waits = await self._script(
                    keys=redis_keys(user_id, self.namespace),
                    args=(limit.rpm or 0, limit.tpm or 0, tokens),
                )
            except self._failures as error:
                self._redis_failed(error)
            else:
                self._redis_recovered()
                return verdict(int(waits[0]), int(waits[1]))
        return self._local.check(user_id, limit, tokens)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def _redis_due(self) -> bool:
        """While Redis is down, only one request per `REDIS_RETRY_S` probes it; the rest go local."""
        if self._redis_healthy:
            return True
        now = self._clock()
        # A clock stepped back past the failure would otherwise hold off the probe for that long.
        if self._redis_failed_at <= now < self._redis_failed_at + REDIS_RETRY_S:
            return False
        self._redis_failed_at = now  # claim the probe before awaiting it
        return True

    def _redis_failed(self, error: Exception) -> None:
        if self._on_redis_error is not None:
            self._on_redis_error()
        if self._redis_healthy:
            log.warning("redis_unavailable", error=str(error), effect="rate limits are per process")
            self._redis_healthy = False
            self._redis_failed_at = self._clock()

    def _redis_recovered(self) -> None:
        if not self._redis_healthy:
            log.info("redis_recovered", effect="rate limits are shared again")
            self._redis_healthy = True
