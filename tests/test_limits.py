"""Rate limits: GCRA on the real Redis (shared by limiters), in process, and the Redis fallback."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from solaris.limits import Limit, LocalLimiter, RateLimiter, Verdict
from solaris.limits.limiter import REDIS_RETRY_S, redis_keys
from tests.servers import free_port

READY_TIMEOUT_S = 10.0
# Redis runs on its own clock: a verdict's wait may be this much shorter than computed up front.
SLACK_S = 0.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def user_id() -> int:
    """A fresh user per test, so runs sharing one Redis never see each other's counts."""
    return uuid.uuid4().int >> 65


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _run(limiter: RateLimiter, user: int, limit: Limit, tokens: list[int]) -> list[Verdict]:
    return [await limiter.check(user, limit, n) for n in tokens]


# --- Redis, shared by limiters ---------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_rpm_allows_exactly_the_burst(redis_url: str, user_id: int) -> None:
    limiter = RateLimiter(redis_url)
    try:
        verdicts = await _run(limiter, user_id, Limit(rpm=5, tpm=None), [10] * 8)
    finally:
        await limiter.close()
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3
    for denied in verdicts[5:]:
        assert denied.reason == "rpm"
        # One request drips out every 60/5 s; the wait is until the next one does.
        assert 12.0 - SLACK_S < denied.retry_after_s <= 12.0
    assert verdicts[0] == Verdict(True, 0.0, "")


@pytest.mark.redis
@pytest.mark.anyio
async def test_tpm_allows_exactly_its_tokens(redis_url: str, user_id: int) -> None:
    limiter = RateLimiter(redis_url)
    limit = Limit(rpm=None, tpm=1000)
    try:
        first = await _run(limiter, user_id, limit, [300, 300, 300, 300])
        rest = await _run(limiter, user_id, limit, [100, 1])
    finally:
        await limiter.close()
    assert [v.allowed for v in first] == [True, True, True, False]
    # 900 tokens held = 54 s of backlog; 300 more need 18 s of it to drain to fit in 60 s.
    assert first[3].reason == "tpm"
    assert 12.0 - SLACK_S < first[3].retry_after_s <= 12.0
    # The denied request counted nothing: exactly 100 tokens are still left.
    assert rest[0].allowed
    assert not rest[1].allowed and rest[1].reason == "tpm"
    assert 0.06 - SLACK_S < rest[1].retry_after_s <= 0.06


@pytest.mark.redis
@pytest.mark.anyio
async def test_more_tokens_than_a_minute_holds_never_fits(redis_url: str, user_id: int) -> None:
    limiter = RateLimiter(redis_url)
    limit = Limit(rpm=1, tpm=100)
    try:
        too_large = await limiter.check(user_id, limit, 101)
        whole_minute = await limiter.check(user_id, limit, 100)
    finally:
        await limiter.close()
    assert too_large == Verdict(False, 0.0, "too_large")
    assert whole_minute.allowed  # and the refused one used none of rpm=1


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_refused_request_counts_against_neither_limit(redis_url: str, user_id: int) -> None:
    limiter = RateLimiter(redis_url)
    limit = Limit(rpm=2, tpm=100)
    try:
        verdicts = await _run(limiter, user_id, limit, [100, 50, 0, 0])
        keys_ttl_ms = [await _pttl(redis_url, key) for key in redis_keys(user_id)]
    finally:
        await limiter.close()
    assert [(v.allowed, v.reason) for v in verdicts] == [
        (True, ""),
        (False, "tpm"),  # did not use the second request of rpm=2 ...
        (True, ""),  # ... so this one gets it
        (False, "rpm"),
    ]
    # Idle keys expire once they no longer limit anyone: within the 60 s window.
    assert all(0 < ttl <= 60_000 for ttl in keys_ttl_ms)


@pytest.mark.redis
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("limit", "tokens", "reason"),
    [(Limit(rpm=10, tpm=None), 1, "rpm"), (Limit(rpm=None, tpm=1_000), 100, "tpm")],
)
async def test_two_processes_share_one_limit(
    redis_url: str, user_id: int, limit: Limit, tokens: int, reason: str
) -> None:
    errors: list[None] = []
    first, second = (
        RateLimiter(redis_url, on_redis_error=lambda: errors.append(None)) for _ in "ab"
    )
    in_flight = asyncio.Semaphore(8)  # concurrent, yet within what a busy machine's Redis answers

    async def check(limiter: RateLimiter) -> Verdict:
        async with in_flight:
            return await limiter.check(user_id, limit, tokens)

    try:
        verdicts = await asyncio.gather(*(check(first if i % 2 else second) for i in range(60)))
    finally:
        await first.close()
        await second.close()
    assert not errors, "Redis did not answer in time: the limiters fell back to their own"
    assert sum(v.allowed for v in verdicts) == 10
    assert {v.reason for v in verdicts if not v.allowed} == {reason}


@pytest.mark.redis
@pytest.mark.anyio
async def test_unlimited_plans_never_touch_redis(redis_url: str, user_id: int) -> None:
    limiter = RateLimiter(redis_url)
    try:
        verdicts = await _run(limiter, user_id, Limit(rpm=None, tpm=None), [10**9] * 3)
        keys = [await _pttl(redis_url, key) for key in redis_keys(user_id)]
    finally:
        await limiter.close()
    assert all(v.allowed for v in verdicts)
    assert keys == [-2, -2]  # no such keys


async def _pttl(url: str, key: str) -> int:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return int(await client.pttl(key))
    finally:
        await client.aclose()


# --- In process ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_in_process_rpm_refills_with_the_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock)
    limit = Limit(rpm=3, tpm=None)
    verdicts = await _run(limiter, 1, limit, [0, 0, 0, 0])
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[3] == Verdict(False, 20.0, "rpm")

    clock.advance(19.9)
    early = await limiter.check(1, limit, 0)
    assert (early.allowed, early.reason) == (False, "rpm")
    assert early.retry_after_s == pytest.approx(0.1, abs=1e-5)
    clock.advance(0.1)
    assert (await limiter.check(1, limit, 0)).allowed
    assert not (await limiter.check(1, limit, 0)).allowed

    clock.advance(60.0)  # a full minute refills the whole burst
    verdicts = await _run(limiter, 1, limit, [0, 0, 0, 0])
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert (await limiter.check(2, limit, 0)).allowed  # users are independent
    await limiter.close()


@pytest.mark.anyio
async def test_in_process_tpm_refills_with_the_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock)
    limit = Limit(rpm=100, tpm=600)  # 10 tokens a second
    assert (await limiter.check(1, limit, 600)).allowed
    assert await limiter.check(1, limit, 100) == Verdict(False, 10.0, "tpm")
    clock.advance(10.0)
    assert (await limiter.check(1, limit, 100)).allowed
    clock.advance(30.0)
    verdicts = await _run(limiter, 1, limit, [300, 1])
    assert verdicts[0].allowed
    assert verdicts[1].reason == "tpm"
    assert verdicts[1].retry_after_s == pytest.approx(0.1, abs=1e-5)
    assert await limiter.check(1, limit, 601) == Verdict(False, 0.0, "too_large")
    await limiter.close()


def test_local_limiter_tracks_a_bounded_number_of_users() -> None:
    clock = FakeClock()
    local = LocalLimiter(clock, users_max=2)
    limit = Limit(rpm=1, tpm=None)
    assert local.check(1, limit, 0).allowed
    assert local.check(2, limit, 0).allowed
    assert local.check(3, limit, 0).allowed  # evicts user 1, the least recently seen
    assert len(local) == 2
    assert not local.check(3, limit, 0).allowed
    assert local.check(1, limit, 0).allowed


def test_limits_are_positive() -> None:
    with pytest.raises(ValueError, match="rpm"):
        Limit(rpm=0, tpm=None)
    with pytest.raises(ValueError, match="tokens"):
        LocalLimiter().check(1, Limit(rpm=1, tpm=1), -1)


@settings(max_examples=200, deadline=None)
@given(
    rpm=st.integers(1, 50),
    tpm=st.integers(1, 5_000),
    steps=st.lists(st.tuples(st.floats(0, 5), st.integers(0, 600)), max_size=100),
)
def test_no_interval_lets_through_more_than_burst_plus_refill(
    rpm: int, tpm: int, steps: list[tuple[float, int]]
) -> None:
    """GCRA's promise: over any d seconds, at most rate * (1 + d / 60) gets through."""
    clock = FakeClock(0.0)
    local = LocalLimiter(clock)
    times: list[float] = []
    tokens_before = [0]  # prefix sums of allowed tokens
    for wait_s, tokens in steps:
        clock.advance(wait_s)
        verdict = local.check(1, Limit(rpm, tpm), tokens)
        if verdict.allowed:
            times.append(clock.now)
            tokens_before.append(tokens_before[-1] + tokens)
        else:
            assert verdict.retry_after_s > 0 or verdict.reason == "too_large"
    # Each step may round the clock and the TAT by a microsecond each, in the client's favour.
    slack_s = 2e-6 * (len(steps) + 1)
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            minutes = (times[j] - start + slack_s) / 60
            assert j - i + 1 <= rpm * (1 + minutes)
            assert tokens_before[j + 1] - tokens_before[i] <= tpm * (1 + minutes)


# --- Redis down ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_redis_down_falls_back_to_per_process_limits() -> None:
    clock = FakeClock()
    errors: list[None] = []
    limiter = RateLimiter(
        "redis://127.0.0.1:1/0", clock, on_redis_error=lambda: errors.append(None)
    )
    limit = Limit(rpm=2, tpm=None)
    started = time.monotonic()
    with capture_logs() as logs:
        verdicts = await _run(limiter, 1, limit, [0, 0, 0])
        assert len(errors) == 1  # tried once, then left alone while backing off
        clock.advance(REDIS_RETRY_S)
        verdicts += await _run(limiter, 1, limit, [0])
    await limiter.close()
    assert time.monotonic() - started < 2.0  # a dead Redis never stalls requests
    assert len(errors) == 2
    assert [v.allowed for v in verdicts] == [True, True, False, False]
    assert verdicts[2].reason == "rpm"
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["event"] for entry in warnings] == ["redis_unavailable"]


@pytest.mark.anyio
async def test_redis_restart_goes_back_to_redis() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    clock = FakeClock(time.time())  # the back-off runs on it; the Redis GCRA on Redis's own
    limiter = RateLimiter(url, clock)
    limit = Limit(rpm=2, tpm=None)
    user = 7
    try:
        with capture_logs() as logs:
            with _private_redis(port):
                assert [v.allowed for v in await _run(limiter, user, limit, [0, 0, 0])] == [
                    True,
                    True,
                    False,
                ]
            # Redis is gone: the local limiter, which has counted nothing yet, takes over.
            assert [v.allowed for v in await _run(limiter, user, limit, [0, 0, 0])] == [
                True,
                True,
                False,
            ]
            with _private_redis(port):
                clock.advance(REDIS_RETRY_S)
                verdict = await limiter.check(user, limit, 0)
                assert verdict.allowed  # a fresh Redis: its first request of the minute
                with redis.Redis(port=port) as client:
                    assert client.exists(*redis_keys(user)) == 1
    finally:
        await limiter.close()
    events = [(entry["log_level"], entry["event"]) for entry in logs]
    assert events == [("warning", "redis_unavailable"), ("info", "redis_recovered")]


@contextmanager
def _private_redis(port: int) -> Iterator[None]:
    """A throw-away redis-server, so that stopping it leaves the shared one alone."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_redis(port, process)
        yield
    finally:
        process.kill()
        process.wait()


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, "redis-server exited"
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise TimeoutError(f"redis-server on port {port} not ready")
    finally:
        client.close()
