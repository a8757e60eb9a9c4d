"""The implicit `default` plan follows SOLARIS_DEFAULT_ALLOWANCE_TOKENS, as an operator expects.

Runs against SQLite and PostgreSQL, each test on a database of its own (plans are shared).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from solaris.store.audit import AuditEntry, audit_entries
from solaris.store.database import open_database
from tests.conftest import Database, Gateway, gateway_env, migrate, new_postgres_database
from tests.servers import free_port, spawn

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oi"}]}


@pytest.fixture
def blank(backend: Database, tmp_path: Path) -> Iterator[Database]:
    """An empty database of the same kind as `backend`."""
    if backend.url.startswith("sqlite"):
        yield Database(f"sqlite:///{tmp_path}/blank.db", None)
        return
    with new_postgres_database() as url:
        yield Database(url, backend.redis_url)


def with_allowance(env: dict[str, str], tokens: int, **extra: str) -> dict[str, str]:
    return {**env, "SOLARIS_DEFAULT_ALLOWANCE_TOKENS": str(tokens), **extra}


def solaris(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "solaris", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def default_plan(env: dict[str, str]) -> dict[str, Any]:
    listed: list[dict[str, Any]] = json.loads(solaris(env, "plans", "list", "--json"))
    return next(plan for plan in listed if plan["plan"] == "default")


def seedings(url: str) -> list[AuditEntry]:
    """The audit log's rows about the default plan, oldest first."""

    async def read() -> list[AuditEntry]:
        database = open_database(url, pool_size=1)
        try:
            async with database.transaction() as conn:
                return await audit_entries(conn, 100, 0, "plan", "default")
        finally:
            await database.close()

    return list(reversed(asyncio.run(read())))


def test_the_default_allowance_follows_its_setting_and_an_admin_edit_stays(
    blank: Database, provider: str, tmp_path: Path
) -> None:
    base = gateway_env(tmp_path, provider, blank)
    migrate(with_allowance(base, 1_000))
    port = free_port()
    env = with_allowance(base, 5_000, SOLARIS_PORT=str(port), SOLARIS_LOG_FORMAT="json")
    log = tmp_path / "serve.log"
    with spawn(["serve"], f"http://127.0.0.1:{port}/healthz", env=env, log_path=log) as process:
        gateway = Gateway(f"http://127.0.0.1:{port}", env, log, process)
        assert default_plan(env)["allowance"] == 5_000
        with gateway.client("newcomer") as http:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        [row] = gateway.usage_rows("newcomer")
        assert gateway.user_row("newcomer")["balance"] == 5_000 - row["billable"]
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["event"] == "default_plan_follows_setting" for line in lines)
    first, second = seedings(blank.url)
    assert (first.action, first.before, first.after) == (
        "plan.seed",
        None,
        {"allowance_tokens": 1_000, "setting": 1_000},
    )
    assert second.actor == "setting:SOLARIS_DEFAULT_ALLOWANCE_TOKENS"
    assert (second.before, second.after) == (
        {"allowance_tokens": 1_000},
        {"allowance_tokens": 5_000, "setting": 5_000},
    )

    # An admin's edit stays while the setting is unchanged, and yields when it changes again.
    solaris(env, "plans", "set", "default", "--allowance", "7000", "--default")
    migrate(with_allowance(base, 5_000))
    assert default_plan(env)["allowance"] == 7_000
    migrate(with_allowance(base, 9_000))
    assert default_plan(env)["allowance"] == 9_000
    assert [entry.action for entry in seedings(blank.url)] == [
        "plan.seed",
        "plan.seed",
        "plan.save",
        "plan.seed",
    ]

    # With plans in YAML the setting seeds nothing.
    config = tmp_path / "solaris.yaml"
    config.write_text("plans:\n  basic:\n    allowance_tokens: 300\n    default: true\n")
    migrate(with_allowance(base, 11_000, SOLARIS_CONFIG=str(config)))
    assert default_plan(env)["allowance"] == 9_000
    assert len(seedings(blank.url)) == 4


def test_plans_set_takes_the_anchor_and_a_rollover_cap(blank: Database, tmp_path: Path) -> None:
    env = {"SOLARIS_DATABASE_URL": blank.url, "SOLARIS_JOURNAL_DIR": str(tmp_path / "journal")}
    migrate(env)
    solaris(env, "plans", "set", "half", "--allowance", "1000", "--anchor", "calendar",
            "--rollover", "50%")  # fmt: skip
    listed = json.loads(solaris(env, "plans", "list", "--json"))
    [half] = [plan for plan in listed if plan["plan"] == "half"]
    assert (half["anchor"], half["rollover"]) == ("calendar", "50%")
    refused = subprocess.run(
        [sys.executable, "-m", "solaris", "plans", "set", "x", "--allowance", "1",
         "--rollover", "lots"],
        env={**os.environ, **env}, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0 and "--rollover must be" in refused.stderr
