"""GCRA (the generic cell rate algorithm, "leaky bucket as a meter") and the in-process limiter.

Each limit keeps one number per user: the theoretical arrival time (TAT), the instant at which the
user's bucket would be empty again. A request of `cost` cells moves it `cost * 60 s / rate` into
the future and fits while that stays within one window (60 s) of now, so a fresh user gets a burst
of `rate` cells and then `rate` per minute. Times are integer microseconds so that the Redis script
(Lua numbers are doubles) and this module compute the very same answers.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "LOCAL_USERS_MAX",
    "WINDOW_US",
    "Limit",
    "LocalLimiter",
    "Verdict",
    "fit",
    "pre_check",
    "verdict",
]

WINDOW_US = 60_000_000
LOCAL_USERS_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Limit:
    """A user's plan limits; None is unlimited."""

    rpm: int | None
    tpm: int | None

    def __post_init__(self) -> None:
        # 0 would divide by zero in the emission interval; plans validate this (`gt=0`) too.
        for name, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or at least 1, got {value}")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may go on; if not, which limit stopped it and how long to wait."""

    allowed: bool
    retry_after_s: float  # 0 when allowed, and for "too_large" (waiting never helps)
    reason: str  # "" | "rpm" | "tpm" | "too_large"


ALLOWED = Verdict(True, 0.0, "")
TOO_LARGE = Verdict(False, 0.0, "too_large")


def fit(tat_us: int, now_us: int, rate: int, cost: int) -> tuple[int, int]:
    """One GCRA step: (wait_us, new_tat_us). wait_us > 0 means denied, and the TAT is unchanged.

    The new TAT is rounded down to a whole microsecond: at most 1 µs of credit per request, in the
    client's favour, and it keeps a burst of exactly `rate` cells exact (no float drift).
    """
    backlog_us = max(tat_us - now_us, 0)
    after_us = backlog_us + cost * WINDOW_US / rate
    if after_us > WINDOW_US:
        return math.ceil(after_us - WINDOW_US), tat_us
    return 0, now_us + math.floor(after_us)


def pre_check(limit: Limit, tokens: int) -> Verdict | None:
    """The verdict that needs no state (unlimited, or more tokens than a whole minute holds)."""
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    if limit.tpm is not None and tokens > limit.tpm:
        return TOO_LARGE
    if limit.rpm is None and limit.tpm is None:
        return ALLOWED
    return None


def verdict(rpm_wait_us: int, tpm_wait_us: int) -> Verdict:
    """Both limits' waits → one verdict; the request fits once the longer wait has passed."""
    if rpm_wait_us <= 0 and tpm_wait_us <= 0:
        return ALLOWED
    reason = "rpm" if rpm_wait_us >= tpm_wait_us else "tpm"
    return Verdict(False, max(rpm_wait_us, tpm_wait_us) / 1_000_000, reason)


class LocalLimiter:
    """The same GCRA in process memory: for one process, or while Redis is unreachable.

    Tracks at most `users_max` users, least recently seen evicted first. A user unseen for 60 s
    has an empty bucket anyway, so eviction only forgets state that no longer limits anyone
    unless more than `users_max` users are active within one minute.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, users_max: int = LOCAL_USERS_MAX
    ) -> None:
        assert users_max > 0
        self._clock = clock
        self._users_max = users_max
        # user id -> [rpm TAT, tpm TAT] in µs; 0 is "empty" since it is always in the past.
        self._tats: OrderedDict[int, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def check(self, user_id: int, limit: Limit, tokens: int) -> Verdict:
        early = pre_check(limit, tokens)
        if early is not None:
            return early
        now_us = round(self._clock() * 1_000_000)
        tats = self._tats.get(user_id) or [0, 0]
        rpm_wait_us, rpm_tat = (
            (0, tats[0]) if limit.rpm is None else fit(tats[0], now_us, limit.rpm, 1)
        )
        tpm_wait_us, tpm_tat = (
            (0, tats[1]) if limit.tpm is None else fit(tats[1], now_us, limit.tpm, tokens)
        )
        result = verdict(rpm_wait_us, tpm_wait_us)
        if result.allowed:
            self._remember(user_id, [rpm_tat, tpm_tat])
        return result

    def _remember(self, user_id: int, tats: list[int]) -> None:
        self._tats[user_id] = tats
        self._tats.move_to_end(user_id)
        if len(self._tats) > self._users_max:
            self._tats.popitem(last=False)
