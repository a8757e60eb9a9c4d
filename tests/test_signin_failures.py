"""The counter of failed sign-ins behind the admin sign-in policy: in Redis (shared by every
gateway process) and in process, forgotten a while after the last failure, and still counting
when Redis does not answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from solaris.operations.failures import Failures, SignInFailures
from tests.servers import free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def account() -> str:
    return f"admin-login:{uuid.uuid4().hex}@example.com"


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[tuple[SignInFailures, SignInFailures]]:
    """Two processes' counters on one Redis."""
    first, second = SignInFailures(redis_url, memory_s=2), SignInFailures(redis_url, memory_s=2)
    yield first, second
    await first.close()
    await second.close()


@pytest.mark.redis
@pytest.mark.anyio
async def test_failures_are_shared_through_redis(
    shared: tuple[SignInFailures, SignInFailures], account: str
) -> None:
    first, second = shared
    for _ in range(3):
        await first.add(account, "203.0.113.1")
    await second.add(account, "203.0.113.2")
    seen = await second.read(account, "203.0.113.1")
    assert (seen.account, seen.address) == (4, 3) and 1 < seen.address_forgotten_in_s <= 2
    assert await first.read(account, "198.51.100.1") == Failures(4, 0, 0.0)
    await first.forget_address(account, "203.0.113.1")  # its right password came from there
    assert (await second.read(account, "203.0.113.1")).address == 0
    assert (await second.read(account, "203.0.113.1")).account == 4  # the attack still shows


@pytest.mark.anyio
async def test_in_process_failures_are_forgotten_after_the_last_one(account: str) -> None:
    clock = FakeClock()
    failures = SignInFailures(None, memory_s=900, clock=clock)
    await failures.add(account, "203.0.113.1")
    clock.now += 600
    await failures.add(account, "203.0.113.2")  # renews the account's memory, not .1's
    clock.now += 400
    assert await failures.read(account, "203.0.113.1") == Failures(2, 0, 0.0)
    assert await failures.read(account, "203.0.113.2") == Failures(2, 1, 500.0)
    clock.now += 500
    assert await failures.read(account, "203.0.113.2") == Failures(0, 0, 0.0)


@pytest.mark.anyio
async def test_failures_still_count_while_redis_does_not_answer(account: str) -> None:
    failures = SignInFailures(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        await failures.add(account, "203.0.113.1")
        await failures.add(account, "203.0.113.1")
        seen = await failures.read(account, "203.0.113.1")
        assert (seen.account, seen.address) == (2, 2)
    finally:
        await failures.close()
