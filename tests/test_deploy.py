"""deploy/docker-compose.yml as `docker compose` would take it: valid against the compose-spec
schema (dclint, pinned in tests/compose/package.json, installed by `make test-tools`), and every
`${VAR}` it reads named in deploy/.env.example, the file an operator copies to deploy/.env.

Under CI=true a missing dclint fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
TOOLS = ROOT / "tests" / "compose"
DCLINT = TOOLS / "node_modules" / ".bin" / "dclint"
DCLINT_CONFIG = TOOLS / "dclint.yaml"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+alt};
# `$${NAME}` is a literal dollar for the container, not interpolation.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")
# NAME=value, or a commented-out `# NAME=` that names an optional setting.
ASSIGNMENT = re.compile(r"^(?:#\s*)?([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


def dclint(path: Path) -> tuple[int, list[dict[str, Any]]]:
    """dclint's exit code and its messages for `path`, with the project's rules."""
    if not DCLINT.exists():
        message = f"dclint is not installed ({DCLINT}): run `make test-tools`"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    done = subprocess.run(
        [str(DCLINT), str(path), "-c", str(DCLINT_CONFIG), "-f", "json", "--max-warnings", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TOOLS,
    )
    reports = json.loads(done.stdout)
    return done.returncode, [message for report in reports for message in report["messages"]]


def test_the_compose_file_is_valid_compose_spec() -> None:
    code, messages = dclint(COMPOSE)
    shown = [f"{m['line']}: {m['rule']}: {m['message']}" for m in messages]
    assert (code, shown) == (0, [])


def test_the_validator_refuses_what_compose_would(tmp_path: Path) -> None:
    """Not a vacuous check: an unknown key and a wrongly typed field are schema errors."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restarts: always\n", 1)
    )
    code, messages = dclint(broken)
    assert code != 0
    assert [m["rule"] for m in messages] == ["invalid-schema"]
    assert "additional properties" in messages[0]["message"]


def test_every_variable_the_compose_file_reads_is_in_env_example() -> None:
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    named = set(ASSIGNMENT.findall(ENV_EXAMPLE.read_text()))
    assert used, "the pattern found no ${VAR} at all"
    assert sorted(used - named) == [], "used in docker-compose.yml, missing in .env.example"
    assert sorted(named - used) == [], "in .env.example, but docker-compose.yml never reads it"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("a: ${A}", {"A"}),
        ("a: ${A:-x}/${B-y}", {"A", "B"}),
        ("a: ${A:?set A in deploy/.env}", {"A"}),
        ("a: ${A:+on}", {"A"}),
        ("a: $${NOT_INTERPOLATED}", set()),
    ],
)
def test_the_variable_pattern_reads_compose_interpolation(text: str, names: set[str]) -> None:
    assert set(VARIABLE.findall(text)) == names
