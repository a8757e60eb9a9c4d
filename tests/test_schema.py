"""The migrations create exactly the tables `store/schema` declares, on both databases: the
code's picture of the schema and the database's never drift apart."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from solaris.store.database import migrate, open_database
from solaris.store.schema import metadata
from tests.conftest import Database


def test_migrations_create_exactly_the_declared_schema(fresh_backend: Database) -> None:
    async def differences() -> list[Any]:
        database = open_database(fresh_backend.url, pool_size=1)
        try:
            await migrate(database)
            async with database.engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await database.close()

    assert asyncio.run(differences()) == []


def test_the_head_the_gateway_checks_is_alembics() -> None:
    # `check_migrated` reads the head from the migration files without alembic (start-up memory).
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from solaris.store.database import MIGRATIONS_DIR, schema_head

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert schema_head() == ScriptDirectory.from_config(config).get_current_head()
