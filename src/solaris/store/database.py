"""The database: an async SQLAlchemy engine on SQLite (default) or PostgreSQL, and migrations.

SQLite gets one connection, so writes in this process never contend; `BEGIN IMMEDIATE` takes
the write lock up front so a concurrent CLI process waits (busy_timeout) instead of failing
half-way. PostgreSQL gets a pool that skips the reset round trip on return: every use is an
explicit transaction that ends in COMMIT or ROLLBACK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, select, text
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from solaris.config import sqlite_path
from solaris.errors import StoreError
from solaris.store.schema import deployment

if TYPE_CHECKING:  # alembic is imported only by the commands that need it (start-up time)
    from alembic.config import Config

__all__ = ["Database", "async_url", "migrate", "open_database"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
MIGRATION_LOCK = 0x501A815  # any constant: the advisory lock all `solaris migrate` runs share


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
        async with self.engine.begin() as connection:
            yield connection

    async def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        async with self.engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def check_migrated(self) -> None:
        """Refuse to serve on a database that is behind the code's schema."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        current = await self.schema_revision()
        if current != head:
            raise StoreError(
                f"database schema is at {current or 'nothing'}, the code needs {head}: "
                "run `solaris migrate` first"
            )

    async def deployment_id(self) -> str:
        """This deployment's id (made by migration 0006), the namespace of its Redis keys."""
        async with self.engine.connect() as connection:
            value = await connection.scalar(select(deployment.c.id))
        assert value, "migration 0006 makes the deployment id"
        return str(value)

    async def probe(self) -> str:
        """ "ok" when reachable and migrated (for /readyz), else what is wrong."""
        try:
            await self.check_migrated()
        except StoreError as error:
            return str(error)
        except (SQLAlchemyError, OSError) as error:
            return f"unreachable: {type(error).__name__}"
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
