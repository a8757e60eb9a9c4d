"""The database: an async SQLAlchemy engine on SQLite (default) or PostgreSQL, and migrations.

SQLite gets one connection, so writes in this process never contend; `BEGIN IMMEDIATE` takes
the write lock up front so a concurrent CLI process waits (busy_timeout) instead of failing
half-way. PostgreSQL gets a pool that skips the reset round trip on return: every use is an
explicit transaction that ends in COMMIT or ROLLBACK.

This is the one boundary where the drivers' outage errors (SQLAlchemy's, asyncpg's, sqlite3's,
and the socket errors under them) become `StoreUnavailable`: callers handle one error, whatever
the driver. A statement the database refused (`IntegrityError`: a key exists; a trigger's
refusal) is an answer, not an outage, and passes through unchanged.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc
from sqlalchemy import Table, event, select, text
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from solaris.config import sqlite_path
from solaris.errors import StoreError, StoreUnavailable
from solaris.store.columns import SQLITE_LOCAL_DAY, sqlite_local_day
from solaris.store.schema import deployment

if TYPE_CHECKING:  # alembic is imported only by the commands that need it (start-up time)
    from alembic.config import Config
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = [
    "DRIVER_ERRORS",
    "Database",
    "async_url",
    "insert",
    "is_outage",
    "migrate",
    "open_database",
    "schema_head",
    "store_errors",
    "unavailable",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # alembic's default, where `migrate` stamps the revision
# The lines of a migration file (script.py.mako) naming its revision and the one it revises.
_REVISION = re.compile(r"^revision(?:: str)? = [\"'](?P<id>[^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"^down_revision(?:: str \| None)? = (?:None|[\"'](?P<id>[^\"']+)[\"'])", re.MULTILINE
)
SQLITE_BUSY_TIMEOUT_MS = 10_000
MIGRATION_LOCK = 0x501A815  # any constant: the advisory lock all `solaris migrate` runs share
# What says the database could not be reached or the connection broke, whichever driver raised
# it: sockets and timeouts, asyncpg's client-side errors ("another operation is in progress" on a
# broken connection, protocol faults) and the server's connection and shutdown classes (08, 57),
# SQLAlchemy's pool and operational errors, SQLite's "database is locked". A statement the
# database *refused* (a constraint, a trigger, bad data) is an answer, not an outage: it passes
# through as the driver raised it. The drivers' own classes are checked by `_is_driver_outage`.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
)
ERROR_TEXT_MAX = 300


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or what it wraps (SQLAlchemy keeps the driver's error as the cause),
    means the database was not there."""
    seen: BaseException | None = error
    for _depth in range(4):  # SQLAlchemy error → adapted DBAPI error → asyncpg error
        if seen is None:
            return False
        if isinstance(seen, DRIVER_ERRORS) or _is_driver_outage(seen):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def _is_driver_outage(error: BaseException) -> bool:
    """A driver's own outage errors: asyncpg's (~3 MiB, loaded only on PostgreSQL) and sqlite3's
    (only on SQLite). An error of a driver exists only once the driver is loaded, so neither is
    imported for this check."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(error, sqlite3.OperationalError):
        return True
    if "asyncpg" not in sys.modules:
        return False
    import asyncpg  # type: ignore[import-untyped]

    return isinstance(
        error,
        (
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.InsufficientResourcesError,
        ),
    )


def insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with the dialect's ON CONFLICT clauses (`on_conflict_do_nothing`, …)."""
    if dialect == "postgresql":
        # Each dialect's module is loaded by its engine: a gateway needs only its own (the
        # PostgreSQL one is ~2 MiB).
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def unavailable(error: BaseException) -> StoreUnavailable:
    """The driver's error as ours, naming what it was (never a row's content: messages of
    constraint errors are not included)."""
    detail = str(error).splitlines()[0] if str(error) else ""
    return StoreUnavailable(f"{type(error).__name__}: {detail}"[:ERROR_TEXT_MAX])


@asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    """An outage raised inside comes out as `StoreUnavailable`; anything else as it was."""
    try:
        yield
    except Exception as error:
        if is_outage(error):
            raise unavailable(error) from error
        raise


def async_url(database_url: str) -> str:
    """Map the operator's URL to the async driver's."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url[len(prefix) :]
    if database_url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database_url[len("sqlite:///") :]
    raise StoreError(f"unsupported database URL: {database_url}")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        dbapi_connection.create_function(SQLITE_LOCAL_DAY, 2, sqlite_local_day, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: SyncConnection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The engine plus what the rest of the code needs to know about it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name  # "sqlite" | "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back when it raises; a
        driver's error inside (the commit's included) comes out as `StoreUnavailable`."""
        async with store_errors(), self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A transaction whose reads all see one moment: PostgreSQL's default isolation gives
        each statement its own, so a read of two tables another transaction moves between
        together (the usage rollup and its mark) could count a row twice. SQLite's
        transactions are one moment already."""
        async with self.transaction() as connection:
            if self.dialect == "postgresql":
                await connection.execute(
                    text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                )
            yield connection

    async def schema_revision(self) -> str | None:
        """The revision alembic stamped (its one-row version table), None before any."""

        def read(sync: SyncConnection) -> str | None:
            if not sync.dialect.has_table(sync, VERSION_TABLE):
                return None
            found = sync.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
            if len(found) > 1:  # as alembic's MigrationContext.get_current_revision refuses
                raise StoreError(f"version table {VERSION_TABLE!r} has more than one head")
            return found[0] if found else None

        async with store_errors(), self.engine.connect() as connection:
            return await connection.run_sync(read)

    async def check_migrated(self) -> None:
        """Refuse to serve on a database that is behind the code's schema."""
        head = schema_head()
        current = await self.schema_revision()
        if current != head:
            raise StoreError(
                f"database schema is at {current or 'nothing'}, the code needs {head}: "
                "run `solaris migrate` first"
            )

    async def deployment_id(self) -> str:
        """This deployment's id (made by migration 0006), the namespace of its Redis keys."""
        async with store_errors(), self.engine.connect() as connection:
            value = await connection.scalar(select(deployment.c.id))
        assert value, "migration 0006 makes the deployment id"
        return str(value)

    async def probe(self) -> str:
        """ "ok" when reachable and migrated (for /readyz), else what is wrong."""
        try:
            await self.check_migrated()
        except StoreUnavailable as error:
            return f"unreachable: {error}"
        except StoreError as error:
            return str(error)
        return "ok"

    async def close(self) -> None:
        await self.engine.dispose()


def open_database(database_url: str, pool_size: int = 10) -> Database:
    url = async_url(database_url)
    if url.startswith("sqlite"):
        sqlite_path(database_url).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        _configure_sqlite(engine)
    else:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=30,
            pool_reset_on_return=None,
            pool_pre_ping=False,
        )
    return Database(engine)


@cache
def schema_head() -> str:
    """The code's newest revision, read from the migration files as alembic's ScriptDirectory
    would (the one no other revises), without importing alembic and every migration into a
    gateway that only checks it (tests/test_schema.py checks both agree)."""
    revises: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        if path.name == "__init__.py":  # not a revision, to alembic either
            continue
        source = path.read_text()
        found = _REVISION.search(source), _DOWN_REVISION.search(source)
        if found[0] is None or found[1] is None:
            raise StoreError(f"no revision in migration {path.name}")
        revises[found[0]["id"]] = found[1]["id"] or None
    heads = set(revises) - set(revises.values())
    if len(heads) != 1:
        raise StoreError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def migrate(database: Database, revision: str = "head") -> str | None:
    """Apply migrations up to `revision`; returns the revision the database is now at."""

    from alembic import command

    def upgrade(sync: SyncConnection) -> None:
        config = _alembic_config()
        config.attributes["connection"] = sync
        command.upgrade(config, revision)

    async with database.engine.begin() as connection:
        if database.dialect == "postgresql":  # instances starting together migrate one by one
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(upgrade)
    return await database.schema_revision()
