"""Usage reports: prices from the shipped table, and aggregates on fresh SQLite and PostgreSQL.

Usage rows are written by the real ledger (reserve, then settle) with a clock that places each
request in time; every report is checked against totals computed here from the same requests.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from solaris.config import PlanConfig
from solaris.ledger.ledger import Ledger, UsageRecord
from solaris.ledger.plans import DEFAULT_PLAN, Plans
from solaris.ledger.users import Users
from solaris.reports import usage as usage_module
from solaris.reports.prices import COST_QUANTUM_USD, Pricer, cost_usd, group_cost_usd
from solaris.reports.rollup import SETTLED_WITHIN_S, roll_up
from solaris.reports.usage import UsageReport, UsageRow, usage_report
from solaris.store.database import Database, migrate, open_database
from tests.conftest import PG_ADMIN_URL, _pg, _service_missing

UNKNOWN_MODEL = "solaris-test-no-such-model"
DAY_1 = datetime(2025, 3, 1, tzinfo=UTC)
DAY_2 = datetime(2025, 3, 2, tzinfo=UTC)
COST_TOLERANCE_USD = Decimal("1e-9")


@dataclass(frozen=True)
class Request:
    user: str
    model: str
    at: datetime
    prompt: int
    completion: int
    cached: int = 0
    reasoning: int = 0
    estimated: bool = False


REQUESTS = [
    Request("alice", "gpt-4o-mini", DAY_1 + timedelta(hours=22, minutes=30), 1200, 300, cached=400),
    Request("alice", "gpt-4o-mini", DAY_1 + timedelta(hours=22, minutes=50), 800, 100),
    Request("alice", "openai/gpt-4o", DAY_1 + timedelta(hours=23, minutes=10), 2000, 500),
    Request("bob", "gpt-4o-mini", DAY_2 - timedelta(milliseconds=500), 100, 50, estimated=True),
    Request("bob", "gpt-4o-mini", DAY_2, 300, 20),
    Request("bob", "o3-mini", DAY_2 + timedelta(hours=9, minutes=5), 500, 1500, reasoning=1000),
    Request("carol", UNKNOWN_MODEL, DAY_2 + timedelta(hours=9, minutes=30), 50, 5),
    Request("carol", "gpt-4o-mini", DAY_2 + timedelta(hours=10), 70, 7),
]

KEY_OF: dict[str, Callable[[Request], str]] = {
    "user": lambda request: request.user,
    "model": lambda request: request.model,
    "hour": lambda request: request.at.strftime("%Y-%m-%dT%H:00:00+00:00"),
    "day": lambda request: request.at.date().isoformat(),
}


# --- prices ---------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise AssertionError("the price table touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_known_model_has_a_positive_price_offline(no_network: None) -> None:
    cost = cost_usd("gpt-4o-mini", 1_000, 1_000)
    assert cost is not None and cost > 0
    assert cost_usd("openai/gpt-4o-mini", 1_000, 1_000) == cost
    assert cost_usd("hosted_vllm/gpt-4o-mini", 1_000, 1_000) == cost
    assert cost_usd("GPT-4o-mini", 1_000, 1_000) == cost


def test_unknown_model_or_bad_usage_has_no_price(no_network: None) -> None:
    assert cost_usd(UNKNOWN_MODEL, 1_000, 1_000) is None
    assert cost_usd("", 1_000, 1_000) is None
    assert cost_usd("gpt-4o-mini", -1, 0) is None  # must not raise
    assert cost_usd("gpt-4o-mini", 10, 0, cached_tokens=20) is None


def test_cached_tokens_cost_the_cached_input_rate(no_network: None) -> None:
    uncached = cost_usd("gpt-4o-mini", 1_000, 0)
    cached = cost_usd("gpt-4o-mini", 1_000, 0, cached_tokens=1_000)
    assert uncached is not None and cached is not None
    assert 0 < cached < uncached


def test_a_group_costs_the_sum_of_its_requests(no_network: None) -> None:
    shapes = [(1200, 300, 400), (800, 100, 0), (100, 50, 0)]
    singles = [cost_usd("gpt-4o-mini", *shape) for shape in shapes]
    sums = [sum(column) for column in zip(*shapes, strict=True)]
    group = group_cost_usd("gpt-4o-mini", len(shapes), *sums)
    assert group is not None
    assert abs(group - sum(cost for cost in singles if cost is not None)) <= COST_TOLERANCE_USD
    assert group_cost_usd("gpt-4o-mini", 0, 0, 0, 0) is None


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o-mini",  # per token
        "perplexity/sonar",  # per token and a fee per request
        "gemini-2.5-pro",  # tiered: a prompt past 200 k tokens costs more per token
    ],
)
def test_one_pricer_prices_every_group_as_its_requests(model: str, no_network: None) -> None:
    """A report's pricer reads a model's rates once; each group still costs what its requests
    cost one by one, fee per request and long-context tier included."""
    pricer = Pricer()
    for shape in [(1_200, 300, 400), (250_000, 1_000, 0), (0, 0, 0)]:
        single = cost_usd(model, *shape)
        assert single is not None
        group = pricer.group_cost(model, 3, *(3 * count for count in shape))
        assert group is not None
        assert abs(group - 3 * single) <= COST_TOLERANCE_USD, shape
    assert pricer.group_cost(UNKNOWN_MODEL, 1, 10, 10, 0) is None
    assert pricer.group_cost(model, 1, 10, 0, 20) is None


@settings(max_examples=150, deadline=None)
@example(model="gemini-2.5-pro", requests=3, prompt=200_000, completion=10, cached_share=0.5)
@example(model="gemini-2.5-pro", requests=3, prompt=200_001, completion=10, cached_share=0.5)
@given(
    model=st.sampled_from(
        ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-pro", "perplexity/sonar"]
    ),
    requests=st.integers(1, 7),
    prompt=st.one_of(st.integers(0, 400_000), st.integers(199_990, 200_010)),
    completion=st.integers(0, 50_000),
    cached_share=st.floats(0, 1),
)
def test_a_groups_cost_is_the_tables_price_of_its_mean_request(
    model: str, requests: int, prompt: int, completion: int, cached_share: float
) -> None:
    """The pricer's rates, read once per tier, agree with the table asked about the group's
    mean request, on both sides of a tier's start."""
    from genai_prices import Usage, calc_price

    cached = int(prompt * cached_share)
    totals = (prompt * requests, completion * requests, cached * requests)
    name = model.partition("/")[2] if model.startswith("perplexity/") else model
    provider = "perplexity" if model.startswith("perplexity/") else None
    one = calc_price(
        Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion),
        name,
        provider_id=provider or "litellm",
    ).total_price
    assert Pricer().group_cost(model, requests, *totals) == (one * requests).quantize(
        COST_QUANTUM_USD
    )


# --- databases ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = DAY_1

    def __call__(self) -> datetime:
        return self.now


async def _seed(url: str) -> None:
    """Migrate a fresh database and settle REQUESTS through the real ledger."""
    database = open_database(url, pool_size=1)
    clock = Clock()
    ledger = Ledger(database, clock)
    try:
        await migrate(database)
        async with database.transaction() as conn:
            config = PlanConfig(allowance_tokens=0, default=True)
            await Plans(database).save(conn, DEFAULT_PLAN, config, DAY_1)
        users = Users(ledger)
        # Half the requests go into the rollup, the other half settle after it: later ids with
        # earlier times, as a settlement replayed from the journal has.
        order = [*range(1, len(REQUESTS), 2), *range(0, len(REQUESTS), 2)]
        for index in order:
            if index == 0:
                await _roll_up_all(database)
            request = REQUESTS[index]
            clock.now = request.at
            user = await users.ensure(request.user)
            billable = request.prompt + request.completion
            async with database.transaction() as conn:
                await ledger.credit(conn, user.id, "grant", billable, f"test:{index}", "test")
            request_id = f"req-{index}"
            assert (
                await ledger.reserve(user.id, request_id, billable, billable, 60)
            ).amount == billable
            await ledger.settle(_record(request_id, user.id, request, billable))
    finally:
        await database.close()


async def _roll_up_all(database: Database) -> None:
    """What the gateway's rollup does once settled rows are old enough to fold in."""
    later = datetime.now(UTC) + timedelta(seconds=SETTLED_WITHIN_S)
    await roll_up(database, later)  # sees the newest id...
    folded = await roll_up(database, later + timedelta(seconds=SETTLED_WITHIN_S))  # ...folds it
    assert folded > 0


def _record(request_id: str, user_id: int, request: Request, billable: int) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        user_id=user_id,
        endpoint="chat",
        model=request.model,
        prompt_tokens=request.prompt,
        completion_tokens=request.completion,
        cached_tokens=request.cached,
        reasoning_tokens=request.reasoning,
        billable=billable,
        estimated=request.estimated,
        status="ok",
        latency_ms=10,
    )


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A database of our own, so migrations run on an empty schema; dropped at the end."""
    name = "solaris_reports_" + uuid.uuid4().hex[:12]
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        _service_missing("PostgreSQL", error)
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("reports") / "solaris.db"
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database")
    asyncio.run(_seed(url))
    return url


def report(url: str, **options: Any) -> UsageReport:
    async def run() -> UsageReport:
        database = open_database(url, pool_size=1)
        try:
            return await usage_report(database, **{"zone": ZoneInfo("UTC"), **options})
        finally:
            await database.close()

    return asyncio.run(run())


def expected(by: str, requests: list[Request]) -> dict[str, UsageRow]:
    """The report's rows computed here from the requests, each priced on its own."""
    grouped: dict[str, list[Request]] = {}
    for request in requests:
        grouped.setdefault(KEY_OF[by](request), []).append(request)
    return {key: _row(key, group) for key, group in grouped.items()}


def _row(key: str, group: list[Request]) -> UsageRow:
    costs = [cost_usd(r.model, r.prompt, r.completion, r.cached) for r in group]
    known = [cost for cost in costs if cost is not None]
    return UsageRow(
        key=key,
        requests=len(group),
        prompt_tokens=sum(r.prompt for r in group),
        completion_tokens=sum(r.completion for r in group),
        cached_tokens=sum(r.cached for r in group),
        reasoning_tokens=sum(r.reasoning for r in group),
        billable=sum(r.prompt + r.completion for r in group),
        estimated_requests=sum(r.estimated for r in group),
        cost_usd=sum(known, Decimal(0)) if known else None,
        unpriced_requests=len(costs) - len(known),
    )


def assert_rows_match(actual: list[UsageRow], wanted: dict[str, UsageRow]) -> None:
    # Keys come in the database's collation order; hour/day order is checked on its own.
    assert sorted(row.key for row in actual) == sorted(wanted)
    for row in actual:
        want = wanted[row.key]
        assert (row.cost_usd is None) == (want.cost_usd is None), row.key
        if row.cost_usd is not None and want.cost_usd is not None:
            assert abs(row.cost_usd - want.cost_usd) <= COST_TOLERANCE_USD, row.key
        assert _counts(row) == _counts(want), row.key


def _counts(row: UsageRow) -> tuple[int, ...]:
    return (
        row.requests,
        row.prompt_tokens,
        row.completion_tokens,
        row.cached_tokens,
        row.reasoning_tokens,
        row.billable,
        row.estimated_requests,
        row.unpriced_requests,
    )


@pytest.mark.parametrize("by", ["user", "model", "hour", "day"])
def test_report_groups_and_prices_every_request(database_url: str, by: str) -> None:
    rows = report(database_url, by=by)
    assert not rows.truncated
    assert_rows_match(rows, expected(by, REQUESTS))


def test_hours_and_days_are_the_zones_buckets(database_url: str) -> None:
    days = report(database_url, by="day")
    assert [(row.key, row.requests) for row in days] == [("2025-03-01", 4), ("2025-03-02", 4)]
    hours = [row.key for row in report(database_url, by="hour")]
    assert hours == [
        "2025-03-01T22:00:00+00:00",
        "2025-03-01T23:00:00+00:00",  # 23:59:59.5 stays in its hour and day
        "2025-03-02T00:00:00+00:00",
        "2025-03-02T09:00:00+00:00",
        "2025-03-02T10:00:00+00:00",
    ]
    # In São Paulo (UTC-03:00) the first five requests were all on March 1st, the last three
    # on the 2nd; hours keep their UTC buckets and say the local time.
    brasil = ZoneInfo("America/Sao_Paulo")
    days = report(database_url, by="day", zone=brasil)
    assert [(row.key, row.requests) for row in days] == [("2025-03-01", 5), ("2025-03-02", 3)]
    hours = [row.key for row in report(database_url, by="hour", zone=brasil)]
    assert hours == [
        "2025-03-01T19:00:00-03:00",
        "2025-03-01T20:00:00-03:00",
        "2025-03-01T21:00:00-03:00",
        "2025-03-02T06:00:00-03:00",
        "2025-03-02T07:00:00-03:00",
    ]


def test_known_models_cost_money_and_unknown_ones_are_counted_apart(database_url: str) -> None:
    by_model = {row.key: row for row in report(database_url, by="model")}
    for model in ("gpt-4o-mini", "openai/gpt-4o", "o3-mini"):
        cost = by_model[model].cost_usd
        assert cost is not None and cost > 0, model
    assert by_model[UNKNOWN_MODEL].cost_usd is None
    assert by_model[UNKNOWN_MODEL].unpriced_requests == 1
    carol = report(database_url, by="user", user_external_id="carol")
    assert [(row.key, row.requests, row.unpriced_requests) for row in carol] == [("carol", 2, 1)]
    assert carol[0].cost_usd == expected("user", REQUESTS)["carol"].cost_usd


def test_window_is_since_inclusive_until_exclusive_in_any_timezone(database_url: str) -> None:
    brasilia = timezone(timedelta(hours=-3))
    since = datetime(2025, 3, 1, 21, 0, tzinfo=brasilia)  # DAY_2 at midnight UTC
    until = DAY_2 + timedelta(hours=9, minutes=30)
    window = [r for r in REQUESTS if since <= r.at < until]
    assert [r.user for r in window] == ["bob", "bob"]
    rows = report(database_url, by="model", since=since, until=until)
    assert_rows_match(rows, expected("model", window))
    naive = report(database_url, by="model", since=DAY_2.replace(tzinfo=None), until=until)
    assert naive == rows
    assert report(database_url, by="user", user_external_id="nobody") == []


def test_a_report_over_its_bounds_is_cut_between_keys(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = {row.key: row for row in report(database_url, by="user")}
    monkeypatch.setattr(usage_module, "ROWS_MAX", 2)
    cut = report(database_url, by="user")
    assert cut.truncated and [row.key for row in cut] == ["alice", "bob"]
    monkeypatch.setattr(usage_module, "ROWS_MAX", 10)
    # (alice, 2 models), (bob, 2 models), (carol, ...): a limit of 3 groups splits bob.
    monkeypatch.setattr(usage_module, "GROUPS_MAX", 3)
    cut = report(database_url, by="user")
    assert cut.truncated and cut == [full["alice"]]
