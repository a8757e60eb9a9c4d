"""The living copies of the PL/pgSQL functions (`store/sql/*.pg.sql`) are what a migrated
database runs: a change to one without a migration (or the reverse) fails here."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from solaris.store.database import migrate, open_database
from tests.conftest import new_postgres_database

SQL_DIR = Path(__file__).parents[1] / "src" / "solaris" / "store" / "sql"
BODY = re.compile(r"\$\$(.*)\$\$", re.S)


def test_each_living_copy_is_the_function_a_migrated_database_runs() -> None:
    copies = {path.name.removesuffix(".pg.sql"): path.read_text() for path in SQL_DIR.glob("*.sql")}
    assert set(copies) == {"solaris_reserve", "solaris_settle", "solaris_release", "solaris_batch"}

    async def installed(url: str) -> dict[str, str]:
        database = open_database(url, pool_size=1)
        try:
            await migrate(database)
        finally:
            await database.close()
        connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
        try:
            rows = await connection.fetch(
                "SELECT proname, prosrc FROM pg_proc WHERE proname = ANY($1::text[])",
                list(copies),
            )
        finally:
            await connection.close()
        return {row["proname"]: row["prosrc"] for row in rows}

    with new_postgres_database() as url:
        running = asyncio.run(installed(url))
    for name, text in copies.items():
        match = BODY.search(text)
        assert match is not None, name
        assert running[name].strip() == match.group(1).strip(), f"{name} differs from its copy"
