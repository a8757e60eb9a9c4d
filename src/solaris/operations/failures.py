"""Failed sign-ins, remembered for `MEMORY_S` per account and per (account, client address).

The sign-in policy (`solaris.operations.signin`) needs to ask "how many recent failures?" without
counting anything, which the GCRA limiter cannot do (it counts whatever it allows). So this is
a plain counter per key that every failure increments and renews: it is forgotten `MEMORY_S`
after the last failure. In Redis when configured (one script per call, so every gateway process
sees the same counts), else, and while Redis fails, in this process.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

__all__ = ["MEMORY_S", "Failures", "SignInFailures"]

if TYPE_CHECKING:  # redis-py (~6 MiB with what it imports) is loaded only when configured
    import redis.asyncio as aioredis

log = structlog.get_logger(__name__)

MEMORY_S = 900
LOCAL_KEYS_MAX = 100_000
REDIS_TIMEOUT_S = 0.25

# KEYS: the account's counter, the (account, address) counter; ARGV: memory in ms.
ADD_LUA = """
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('PEXPIRE', key, ARGV[1])
end
return 0
"""
READ_LUA = """
local pttl = redis.call('PTTL', KEYS[2])
return {tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0'),
        pttl}
"""


@dataclass(frozen=True, slots=True)
class Failures:
    """Recent failed sign-ins of one account: in all, and from one address."""

    account: int
    address: int
    address_forgotten_in_s: float  # when the address's count goes (0 when it has none)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SignInFailures:
    def __init__(
        self,
        redis_url: str | None,
        memory_s: float = MEMORY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert memory_s > 0
        self.memory_s = memory_s
        self._clock = clock
        self._local: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (n, until)
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
                retry=Retry(NoBackoff(), 0),  # a repeated script would count a failure twice
            )
            self._add = self._redis.register_script(ADD_LUA)
            self._read = self._redis.register_script(READ_LUA)
        self._redis_healthy = True
        self.namespace = ""  # the deployment's id, set at start-up like the limiter's

    def _keys(self, account: str, address: str) -> tuple[str, str]:
        # The braces are a Redis Cluster hash tag: both keys of one account share a slot.
        prefix = f"solaris:{self.namespace}:signin" if self.namespace else "solaris:signin"
        tag = _digest(account)
        return f"{prefix}:{{{tag}}}", f"{prefix}:{{{tag}}}:{_digest(address)}"

    async def read(self, account: str, address: str) -> Failures:
        keys = self._keys(account, address)
        if self._redis is not None:
            try:
                found = await self._read(keys=keys)
            except self._failures as error:
                self._redis_failed(error)
            else:
                self._redis_recovered()
                wait_ms = int(found[2])
                return Failures(int(found[0]), int(found[1]), max(wait_ms, 0) / 1000)
        (account_count, _), (address_count, until) = (self._local_get(key) for key in keys)
        return Failures(account_count, address_count, max(0.0, until - self._clock()))

    async def add(self, account: str, address: str) -> None:
        """One more failure of the account from the address; both are remembered afresh."""
        keys = self._keys(account, address)
        if self._redis is not None:
            try:
                await self._add(keys=keys, args=(round(self.memory_s * 1000),))
            except self._failures as error:
                self._redis_failed(error)
            else:
                self._redis_recovered()
                return
        until = self._clock() + self.memory_s
        for key in keys:
            self._local[key] = (self._local_get(key)[0] + 1, until)
            self._local.move_to_end(key)
        while len(self._local) > LOCAL_KEYS_MAX:
            self._local.popitem(last=False)

    async def forget_address(self, account: str, address: str) -> None:
        """The right password came from this address: its failures no longer count against
        it. The account's count stays, so an attack on it is not reset by its owner."""
        key = self._keys(account, address)[1]
        self._local.pop(key, None)
        if self._redis is not None:
            try:
                await self._redis.delete(key)
            except self._failures as error:
                self._redis_failed(error)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def _local_get(self, key: str) -> tuple[int, float]:
        count, until = self._local.get(key, (0, 0.0))
        if until <= self._clock():
            self._local.pop(key, None)
            return 0, 0.0
        return count, until

    def _redis_failed(self, error: Exception) -> None:
        if self._redis_healthy:
            log.warning(
                "redis_unavailable", error=str(error), effect="sign-in failures per process"
            )
            self._redis_healthy = False

    def _redis_recovered(self) -> None:
        if not self._redis_healthy:
            log.info("redis_recovered", effect="sign-in failures are shared again")
            self._redis_healthy = True
