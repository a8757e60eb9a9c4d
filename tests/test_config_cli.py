"""Settings, start-up refusals and the operator's command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from solaris.clock import utcnow
from solaris.config import Settings, load_settings
from solaris.errors import ConfigError
from solaris.ledger.ledger import Ledger
from solaris.store.database import open_database
from solaris.store.schema import audit_log, users

README = Path(__file__).parents[1] / "README.md"


def solaris(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "solaris", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_setting_is_documented_in_the_readme() -> None:
    documented = set(re.findall(r"`(SOLARIS_[A-Z0-9_]+)`", README.read_text()))
    for name in Settings.model_fields:
        assert f"SOLARIS_{name.upper()}" in documented, f"SOLARIS_{name.upper()} is undocumented"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SOLARIS_UPSTREAM_BASE_URL": "ftp://x"}, "SOLARIS_UPSTREAM_BASE_URL"),
        ({"SOLARIS_DEFAULT_ALLOWANCE_TOKENS": "-5"}, "SOLARIS_DEFAULT_ALLOWANCE_TOKENS"),
        ({"SOLARIS_LANGUAGE": "fr"}, "SOLARIS_LANGUAGE"),
        ({"SOLARIS_RESERVATION_TIMEOUT_S": "10"}, "reservation_timeout_s"),
        ({"SOLARIS_CONFIG": "/nonexistent.yaml"}, "SOLARIS_CONFIG"),
        ({"SOLARIS_FORWARDED_ALLOW_IPS": "10.0.0.1,nginx"}, "SOLARIS_FORWARDED_ALLOW_IPS"),
    ],
)
def test_a_bad_setting_stops_start_up_and_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_yaml_file_sets_models_and_env_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "solaris.yaml"
    config.write_text(
        "language: en\nlibrechat_keys: [k1, k2]\n"
        "models:\n  gpt-4o: {input_weight: 2.5, output_weight: 10}\n"
        "  fast: {upstream_name: gpt-4o-mini}\n"
    )
    monkeypatch.setenv("SOLARIS_CONFIG", str(config))
    monkeypatch.setenv("SOLARIS_LANGUAGE", "pt-BR")
    settings = load_settings()
    assert settings.language == "pt-BR"
    assert [k.get_secret_value() for k in settings.librechat_keys] == ["k1", "k2"]
    assert settings.model_policy("gpt-4o").output_weight == 10
    assert settings.model_policy("fast").upstream_name == "gpt-4o-mini"
    assert settings.model_policy("unknown").input_weight == 1


def test_trusted_proxies_default_to_nobody_and_networks_are_made_canonical(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn's own variable: not ours
    assert load_settings().forwarded_allow_ips == []
    # uvicorn would take 172.30.8.1/24 (host bits set) for a name that matches nothing.
    monkeypatch.setenv("SOLARIS_FORWARDED_ALLOW_IPS", "172.30.8.10, 172.30.8.1/24,::1")
    assert load_settings().forwarded_allow_ips == ["172.30.8.10", "172.30.8.0/24", "::1"]


def test_bad_setting_on_the_command_line_exits_2_with_its_name() -> None:
    done = solaris("migrate", SOLARIS_DATABASE_URL="mysql://nope")
    assert done.returncode == 2
    assert "SOLARIS_DATABASE_URL" in done.stderr


# What only a command that runs needs; `--help` and a typo must answer without any of it.
# (pydantic itself may load: typer converts some parameters with it.)
HEAVY_PACKAGES = {
    "aiohttp",
    "asyncpg",
    "fastapi",
    "jinja2",
    "pydantic_settings",
    "redis",
    "sqlalchemy",
    "starlette",
    "structlog",
    "tiktoken",
    "uvicorn",
}


@pytest.mark.parametrize("argv", [[], ["--help"], ["users", "--help"], ["no-such-command"]])
def test_the_command_line_loads_no_library_before_a_command_runs(argv: list[str]) -> None:
    code = (
        "import sys\n"
        f"sys.argv = ['solaris', *{argv!r}]\n"
        "import solaris.cli\n"
        "if len(sys.argv) > 1:\n"
        "    try:\n"
        "        solaris.cli.main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"heavy = {sorted(HEAVY_PACKAGES)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/fresh.db"
    done = solaris("serve", "--port", "0", SOLARIS_DATABASE_URL=database)
    assert done.returncode == 2
    assert "solaris migrate" in done.stderr


def test_operator_commands_round_trip(tmp_path: Path) -> None:
    env = {
        "SOLARIS_DATABASE_URL": f"sqlite:///{tmp_path}/ops.db",
        "SOLARIS_DEFAULT_ALLOWANCE_TOKENS": "1000",
    }
    assert "database at revision" in solaris("migrate", **env).stdout
    granted = solaris(
        "credits", "grant", "ana", "500", "--note", "boas-vindas", "--key", "g1", **env
    )
    assert granted.returncode == 0 and "balance 1500" in granted.stdout
    again = solaris("credits", "grant", "ana", "500", "--key", "g1", **env)
    assert "already granted; balance 1500" in again.stdout
    deducted = solaris("credits", "deduct", "ana", "200", "--note", "grant em dobro", **env)
    assert "deducted; balance 1300" in deducted.stdout
    assert "ledger verified" in solaris("ledger", "verify", **env).stdout
    assert solaris("usage", "report", "--by", "model", **env).stdout.strip() == "(none)"
    key = solaris("keys", "create", "ana", **env).stdout.strip()
    assert key.startswith("sk-sol-") and len(key) > 40
    listing = solaris("users", "list", **env).stdout
    assert "ana" in listing and "1300" in listing
    missing = solaris("usage", "rows", "nobody", **env)
    assert missing.returncode == 2 and "no user 'nobody'" in missing.stderr


def test_every_cli_change_is_audited_and_shows_what_time_has_done(tmp_path: Path) -> None:
    """`solaris keys create` leaves its audit row like the API's; `users show` applies an
    expired credit before showing the balance, as the API and the dashboard do."""
    url = f"sqlite:///{tmp_path}/audit.db"
    env = {"SOLARIS_DATABASE_URL": url, "SOLARIS_DEFAULT_ALLOWANCE_TOKENS": "0"}
    assert solaris("migrate", **env).returncode == 0
    assert solaris("keys", "create", "bia", **env).stdout.startswith("sk-sol-")

    async def audit_and_expire() -> list[tuple[str, str]]:
        database = open_database(url, pool_size=1)
        try:
            async with database.transaction() as conn:
                rows = (await conn.execute(select(audit_log.c.actor, audit_log.c.action))).all()
                user_id = await conn.scalar(select(users.c.id).where(users.c.external_id == "bia"))
                assert isinstance(user_id, int)
                past = utcnow() - timedelta(days=1)
                await Ledger(database).credit(
                    conn, user_id, "grant", 700, "expired-grant", "test", expires_at=past
                )
            return [(row.actor, row.action) for row in rows]
        finally:
            await database.close()

    audited = asyncio.run(audit_and_expire())
    assert ("cli", "user.create_key") in audited, audited
    [shown] = json.loads(solaris("users", "show", "bia", "--json", **env).stdout)
    assert shown["balance"] == 0, "the expired grant was applied before showing the balance"
