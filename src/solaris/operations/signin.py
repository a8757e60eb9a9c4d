"""Admin sign-in (the dashboard's form and the admin API's login): brute force is slowed down,
but nobody can use that to keep an admin out.

- **Per client address**: every attempt counts against `SOLARIS_LOGIN_ATTEMPTS_PER_MINUTE`
  (the GCRA limiter, shared through Redis): one address cannot guess fast, at any account.
- **Per account**: failures are remembered for `failures.MEMORY_S` after the last one. Once an
  account has had `SOLARIS_LOGIN_ATTEMPTS_PER_MINUTE` of them, an address that failed on it
  recently is refused without its password being checked (so a guess there tells nothing),
  while an address without failures on it still has its password checked: the admin, from
  their own network, signs in with the right password during an attack. Guessing from many
  addresses then costs one address per guess and window, each under its own limit.
- **What happened**: each failure on an existing admin and each sign-in is an audit row
  (`admin.sign_in_failed`, `admin.sign_in`), and the admin is shown how many attempts failed
  since their previous sign-in.

IPv6 clients count per /64 (`address_bucket`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from solaris.limits import RateLimiter
from solaris.operations.admins import Admins, normalize_email
from solaris.operations.clients import address_bucket, attempt_wait_s
from solaris.operations.failures import SignInFailures
from solaris.store.audit import Actor, record
from solaris.store.schema import audit_log

__all__ = ["AdminSignIn", "FailedSignIns", "SignInResult"]

NOTICE_DAYS_MAX = 90  # how far back the notice looks when there was no previous sign-in
SIGNED_IN = "admin.sign_in"
FAILED = "admin.sign_in_failed"


@dataclass(frozen=True, slots=True)
class SignInResult:
    admin_id: int | None  # set when signed in
    wait_s: float  # > 0: refused for now, the password was not checked (429)


@dataclass(frozen=True, slots=True)
class FailedSignIns:
    """Failed attempts on an admin's account since their previous sign-in."""

    count: int
    last_at: datetime | None
    last_from: str | None  # the client address of the latest one


class AdminSignIn:
    def __init__(
        self,
        admins: Admins,
        limiter: RateLimiter,
        failures: SignInFailures,
        attempts_per_minute: int,
    ) -> None:
        assert attempts_per_minute > 0
        self.admins = admins
        self.database = admins.database
        self.limiter = limiter
        self.failures = failures
        self.attempts_per_minute = attempts_per_minute

    async def attempt(self, email: str, password: str, address: str) -> SignInResult:
        email = normalize_email(email)
        bucket = address_bucket(address)
        wait_s = await attempt_wait_s(
            self.limiter, self.attempts_per_minute, [f"admin-login:ip:{bucket}"]
        )
        if wait_s:
            return SignInResult(None, wait_s)
        account = f"admin-login:{email}"
        seen = await self.failures.read(account, bucket)
        if seen.account >= self.attempts_per_minute and seen.address > 0:
            return SignInResult(None, max(1.0, seen.address_forgotten_in_s))
        admin_id = await self.admins.authenticate(email, password)
        if admin_id is None:
            await self.failures.add(account, bucket)
            await self._record_failure(email, address)
            return SignInResult(None, 0.0)
        await self.failures.forget_address(account, bucket)
        await self._record(Actor(f"admin:{admin_id}"), SIGNED_IN, admin_id, address)
        return SignInResult(admin_id, 0.0)

    async def failed_since_previous(self, admin_id: int) -> FailedSignIns:
        """Failed attempts on the account after the sign-in before the latest one (so the
        session the admin is in now shows what happened since they were last here)."""
        now = self.admins.clock()
        mine = (audit_log.c.target_type == "admin", audit_log.c.target_id == str(admin_id))
        async with self.database.transaction() as conn:
            sign_ins = (
                await conn.execute(
                    select(audit_log.c.id)
                    .where(*mine, audit_log.c.action == SIGNED_IN)
                    .order_by(audit_log.c.id.desc())
                    .limit(2)
                )
            ).all()
            previous = int(sign_ins[1].id) if len(sign_ins) > 1 else 0
            failed = select(audit_log).where(
                *mine,
                audit_log.c.action == FAILED,
                audit_log.c.id > previous,
                audit_log.c.at >= now - timedelta(days=NOTICE_DAYS_MAX),
            )
            count = int(await conn.scalar(select(func.count()).select_from(failed.subquery())) or 0)
            last = (await conn.execute(failed.order_by(audit_log.c.id.desc()).limit(1))).first()
        if last is None:
            return FailedSignIns(count, None, None)
        return FailedSignIns(count, last.at, last.actor.removeprefix("address:"))

    async def _record_failure(self, email: str, address: str) -> None:
        """An audit row for a failure on an existing admin (an e-mail nobody has leaves none:
        anyone could fill the log with made-up ones)."""
        found = await self.admins.find(email)
        if found is not None:
            await self._record(Actor(f"address:{address}"[:128]), FAILED, found.id, address)

    async def _record(self, actor: Actor, action: str, admin_id: int, address: str) -> None:
        async with self.database.transaction() as conn:
            await record(
                conn,
                actor,
                action,
                "admin",
                admin_id,
                None,
                {"address": address},
                self.admins.clock(),
            )
