"""What every part of the benchmark shares: what is measured (targets, modes, connections),
where things are, the reference numbers of PERFORMANCE.md, the options of one run, and the
small formatting helpers of the log and the report."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA = BENCH_DIR / "chat.lua"

MODES = ("json", "stream")
TARGETS = ("direct", "gateway", "litellm", "chain")
GATEWAYS = ("gateway", "chain")  # targets answered by a gateway: their usage rows are checked
MODE_LABEL = {"json": "non-streamed", "stream": "streamed"}
CONNECTIONS = (1, 16, 64)
SOLO = (("json", 16), ("json", 64), ("stream", 16))  # single-user gateway settings
LITELLM_CONNECTIONS = (1, 16)  # LiteLLM serves ~40 req/s: 64 connections would only queue
# Report rows: path -> (label, the target it is compared with).
PATHS = {
    "gateway": ("gateway", "direct"),
    "litellm": ("LiteLLM", "direct"),
    "chain": ("gateway → LiteLLM", "litellm"),
}
TARGET_LABEL = {"direct": "direct", "gateway": "gateway", "litellm": "LiteLLM", "chain": "chain"}
USERS = 100
# The API shapes besides chat (chat.lua's BENCH_API), measured streamed against direct beside
# chat's streamed runs at these connections: LibreChat's Responses switch and Anthropic endpoint.
API_PATHS = {
    "chat": "/v1/chat/completions",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}
SHAPES = ("responses", "messages")
SHAPE_CONNECTIONS = (1, 16)
ROUND_LABEL = {0: "profile", -1: "diagnostic 1", -2: "diagnostic 2", -3: "diagnostic 3"}
ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# The LiteLLM proxy from `make litellm` (its own virtualenv, litellm[proxy] pinned in the Makefile),
# started the way tests/test_litellm.py starts it.
LITELLM_DIR = REPO / ".tools" / "litellm"
LITELLM_BIN = LITELLM_DIR / "bin" / "litellm"
FULL_RUN_MINUTES = 11  # what a full run takes without LiteLLM (with it: ~15)
PACKAGES = (
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "sqlalchemy",
    "asyncpg",
    "redis",
    "hiredis",
    "orjson",
    "tiktoken",
    "starlette",
    "structlog",
)
# PERFORMANCE.md, for the analysis.
LITELLM_ADDED_JSON_MS = 25.0
LITELLM_ADDED_STREAM_MS = 60.0
LITELLM_RPS = 40.0
NAIVE_METERING_RPS = 650.0
NAIVE_METERING_ADDED_MS = 1.9
NAIVE_METERING_CPU_MS = 1.2
TARGET_ADDED_P50_MS = 1.0
TARGET_RPS = 1500.0


@dataclass(frozen=True, slots=True)
class Options:
    """One run's options, from the command line (`run.py --help`) and their defaults."""

    quick: bool
    rounds: int
    duration: float  # seconds per measurement
    warmup: float  # seconds per target and mode
    profile: bool
    py_spy: str | None
    profile_seconds: float
    report: Path
    diagnostic_rounds: int
    wal_diagnostic: bool
    litellm_skipped: str  # why the litellm and chain targets are not measured, if they aren't
    wrk: str
    shapes_only: bool = False  # only the streamed chat / responses / messages rows (shapes.py)


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def append(path: Path, text: str) -> None:
    with open(path, "a") as out:
        out.write(text)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN: no data
