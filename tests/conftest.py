"""Real servers for the behaviour tests: the dev provider, and gateways on SQLite and PostgreSQL.

Every behaviour test that takes `gateway` runs twice: against the embedded default (SQLite, no
Redis) and against PostgreSQL + Redis. Under CI=true a missing PostgreSQL or Redis fails the run
instead of skipping. A gateway is served in this process (`start_gateway`, tests/inprocess.py), or is a
`solaris serve` process (`start_process`) where the process is the point.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select

from solaris.ledger.ledger import Ledger
from solaris.ledger.users import Users
from solaris.store.database import open_database
from solaris.store.schema import reservations, usage
from solaris.store.schema import users as users_table
from tests.inprocess import prepare_database, serving, settings_of
from tests.servers import free_port, spawn

T = TypeVar("T")
SETTLE_WAIT_S = 10.0
PG_ADMIN_URL = os.environ.get("SOLARIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SOLARIS_TEST_REDIS", "redis://127.0.0.1:6379/0")
SERVICE_KEY = "sk-librechat-test-service-key"


# The files that take longest, longest first: xdist hands files to workers in collection order
# (`--dist loadfile --no-loadscope-reorder`), and a long file started last keeps the run going
# on one worker after the others are done. The rest keep their order; a stale list costs only
# time. (Measured with `pytest --durations=0`, summed per file.)
LONGEST_FIRST = (
    "test_web.py", "test_journal.py", "test_orders_admin.py", "test_purchases.py",
    "test_faults.py", "test_ledger_differential.py", "test_operations.py", "test_admin_api.py",
    "test_alert_flow.py", "test_scale_out.py", "test_admin_schemathesis.py", "test_balance.py",
    "test_config_cli.py", "test_plans.py", "test_librechat.py", "test_embeddings.py",
)  # fmt: skip


@pytest.hookimpl(trylast=True)  # after pytest has grouped tests by their fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _service_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def _pg(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql://", "postgres://"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@dataclass
class Database:
    url: str
    redis_url: str | None


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = "solaris_test_" + uuid.uuid4().hex[:12]
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as error:
        _service_missing("PostgreSQL", error)
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database shared by this test session's gateways (tests use own users)."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as error:
        _service_missing("Redis", error)
    return REDIS_URL


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dev provider: an OpenAI-compatible upstream that counts with the real tokenizer."""
    port = free_port()
    log = tmp_path_factory.mktemp("provider") / "provider.log"
    argv = ["dev-provider", "--port", str(port)]
    with spawn(argv, f"http://127.0.0.1:{port}/health", log_path=log):
        yield f"http://127.0.0.1:{port}/v1"


def migrate(env: dict[str, str]) -> None:
    """`solaris migrate` on the gateway's database, run here (a process would take seconds)."""
    prepare_database(settings_of(env))


@dataclass
class Gateway:
    """A gateway under test at `url`: a `solaris serve` process, or served in this one."""

    url: str
    env: dict[str, str]
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        assert self.log_path is not None, "an in-process gateway writes no log file"
        return self.log_path

    def client(self, user: str | None = None, **headers: str) -> httpx.Client:
        base = {"Authorization": f"Bearer {SERVICE_KEY}"}
        if user is not None:
            base["X-LibreChat-User-Id"] = user
        return httpx.Client(base_url=self.url, headers={**base, **headers}, timeout=30)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "solaris", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def fund(self, user: str, tokens: int) -> None:
        """Grant credits through the library, on the gateway's own database."""

        async def job(users: Users) -> None:
            found = await users.ensure(user)
            async with users.database.transaction() as conn:
                key = f"test:{uuid.uuid4().hex}"
                await users.ledger.credit(conn, found.id, "grant", tokens, key, "test")

        self._with_users(job)

    def user_row(self, user: str, settled: bool = True) -> dict[str, Any]:
        """Balance and held tokens; by default once nothing is held (requests have settled)."""

        async def job(users: Users) -> dict[str, Any]:
            found = await users.find(user)
            assert found is not None, f"no user {user}"
            if settled:
                await _wait_settled(users, found.id)
            balance, held = await users.ledger.balance(found.id)
            return {"id": found.id, "balance": balance, "held": held}

        return self._with_users(job)

    def stored_users(self) -> dict[str, dict[str, Any]]:
        """Every user as stored, by LibreChat id: what each face (CLI, API, pages) shows of them
        comes from these rows, read here without starting a `solaris` process per look."""

        async def job(users: Users) -> dict[str, dict[str, Any]]:
            async with users.database.transaction() as conn:
                rows = await conn.execute(select(users_table))
                return {row.external_id: dict(row._mapping) for row in rows}

        return self._with_users(job)

    def pending_reservations(self, user: str) -> int:
        """How many of the user's requests hold a reservation right now."""

        async def job(users: Users) -> int:
            found = await users.find(user)
            if found is None:
                return 0
            query = select(func.count()).where(
                reservations.c.user_id == found.id, reservations.c.state == "pending"
            )
            async with users.database.transaction() as conn:
                return int(await conn.scalar(query) or 0)

        return self._with_users(job)

    def usage_rows(self, user: str, settled: bool = True) -> list[dict[str, Any]]:
        """The user's usage rows; by default once nothing is held (requests have settled)."""

        async def job(users: Users) -> list[dict[str, Any]]:
            found = await users.find(user)
            if found is None:
                return []
            if settled:
                await _wait_settled(users, found.id)
            query = select(usage).where(usage.c.user_id == found.id).order_by(usage.c.id)
            async with users.database.transaction() as conn:
                return [dict(row._mapping) for row in await conn.execute(query)]

        return self._with_users(job)

    def _with_users(self, job: Callable[[Users], Awaitable[T]]) -> T:
        async def run() -> T:
            database = open_database(self.env["SOLARIS_DATABASE_URL"], pool_size=1)
            try:
                return await job(Users(Ledger(database)))
            finally:
                await database.close()

        return asyncio.run(run())


async def _wait_settled(users: Users, user_id: int) -> None:
    """The gateway settles right after the client has its answer: wait for that (bounded)."""
    deadline = time.monotonic() + SETTLE_WAIT_S
    while time.monotonic() < deadline:
        _balance, held = await users.ledger.balance(user_id)
        if held == 0:
            return
        await asyncio.sleep(0.02)


def gateway_env(tmp: Path, provider: str, backend: Database, **extra: str) -> dict[str, str]:
    env = {
        # The tests stand where a load balancer would: they name each client's address in
        # X-Forwarded-For, so the sign-in limits of one test never meet another's.
        "SOLARIS_FORWARDED_ALLOW_IPS": "127.0.0.1",
        "SOLARIS_UPSTREAM_BASE_URL": provider,
        "SOLARIS_UPSTREAM_API_KEY": "sk-upstream-test",
        "SOLARIS_LIBRECHAT_KEYS": SERVICE_KEY,
        "SOLARIS_DATABASE_URL": backend.url,
        "SOLARIS_DEFAULT_ALLOWANCE_TOKENS": "0",
        "SOLARIS_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "SOLARIS_PUBLIC_BASE_URL": "https://chat.example.com",
        "SOLARIS_JOURNAL_DIR": str(tmp / "journal"),
        # With Redis `solaris serve` would start one worker per core: one is what each test
        # means by a gateway process (and what signals, logs and kill -9 there are about).
        "SOLARIS_WORKERS": "1",
        **extra,
    }
    if backend.redis_url:
        env["SOLARIS_REDIS_URL"] = backend.redis_url
    return env


def start_process(env: dict[str, str], tmp: Path) -> Iterator[Gateway]:
    """`solaris serve` in a process of its own, logging to a file: for the tests of what only a
    process has (signals, kill -9, its log lines, uvloop)."""
    port = free_port()
    env = {**env, "SOLARIS_PORT": str(port)}
    migrate(env)
    log = tmp / f"gateway-{port}.log"
    with spawn(["serve"], f"http://127.0.0.1:{port}/healthz", env=env, log_path=log) as process:
        yield Gateway(f"http://127.0.0.1:{port}", env, log, process)


def start_gateway(env: dict[str, str], _tmp: Path | None = None) -> Iterator[Gateway]:
    """The gateway `start_process` runs, served in this process (tests/inprocess.py): the same
    server and app, started in a fraction of the time, but no process to signal or log file."""
    port = int(env.get("SOLARIS_PORT") or free_port())  # a page's public URL may name it
    settings = settings_of({**env, "SOLARIS_PORT": str(port)})
    prepare_database(settings)
    with serving(settings):
        yield Gateway(f"http://127.0.0.1:{port}", env)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Database:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "solaris.db"
        return Database(f"sqlite:///{path}", None)
    return Database(request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url"))


@pytest.fixture(scope="module")
def own_backend(backend: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A database of the module's own, of the same kind as `backend`: for tests that change
    what every user of a database shares (plans)."""
    if backend.url.startswith("sqlite"):
        yield Database(f"sqlite:///{tmp_path_factory.mktemp('own')}/own.db", None)
        return
    with new_postgres_database() as url:
        yield Database(url, backend.redis_url)


@pytest.fixture
def fresh_backend(backend: Database, tmp_path: Path) -> Iterator[Database]:
    """A database of the test's own: every gateway on a database delivers its whole outbox,
    so a gateway of another test (another SMTP server) must not see these alerts."""
    if backend.url.startswith("sqlite"):
        yield Database(f"sqlite:///{tmp_path}/alerts.db", None)
        return
    with new_postgres_database() as url:
        yield Database(url, backend.redis_url)


@pytest.fixture(scope="session")
def gateway(
    backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway shared by a session's tests; each test uses users of its own."""
    tmp = tmp_path_factory.mktemp("gateway")
    yield from start_gateway(gateway_env(tmp, provider, backend), tmp)


@pytest.fixture
def user() -> str:
    return "user-" + uuid.uuid4().hex[:10]
