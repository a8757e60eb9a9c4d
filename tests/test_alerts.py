"""Alerts end to end against real servers on loopback: an SMTP server (aiosmtpd) and an HTTP
receiver (aiohttp), the outbox on SQLite and PostgreSQL, with an injectable clock."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import func, select

from solaris.alerts.channels import Channel
from solaris.alerts.deliverer import Deliverer, RetryPolicy
from solaris.alerts.mail import EmailChannel, SmtpSettings
from solaris.alerts.model import (
    AlertUser,
    SystemEvent,
    ThresholdAlert,
    ThresholdCrossing,
    system_alerts,
    user_threshold_alerts,
)
from solaris.alerts.webhook import WebhookChannel, WebhookSettings, verify_signature
from solaris.errors import ConfigError
from solaris.ledger.thresholds import crossed_thresholds
from solaris.store.database import Database, migrate, open_database
from solaris.store.outbox import OutboxRow, claim_due, enqueue, list_alerts
from solaris.store.schema import alert_outbox
from solaris.texts import Language
from solaris.texts.alerts import threshold_email
from solaris.texts.formats import format_tokens, moment_in_words
from tests.conftest import new_postgres_database
from tests.servers import free_port

pytestmark = pytest.mark.anyio

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PERIOD_START = datetime(2026, 3, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 4, 1, tzinfo=UTC)
PORTAL = "https://chat.example.com/portal/buy"
SECRET = "webhook-shared-secret"
WAIT_S = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/alerts.db"
        return
    with new_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with new_postgres_database() as url:
        yield url


async def opened(url: str, pool_size: int = 4) -> Database:
    database = open_database(url, pool_size=pool_size)
    await migrate(database)
    return database


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = await opened(database_url)
    yield database
    await database.close()


# --- real servers -------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(port: int) -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


def smtp(port: int) -> SmtpSettings:
    return SmtpSettings(
        "127.0.0.1", port, "none", None, None, "SOLARIS <alerts@example.com>", timeout_s=5
    )


@dataclass
class Receiver:
    url: str = ""
    status: int = 200
    delay_s: float = 0.0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _headers, body in self.requests]


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()

    async def handle(request: web.Request) -> web.Response:
        receiver.requests.append((dict(request.headers), await request.read()))
        receiver.arrived.set()
        await asyncio.sleep(receiver.delay_s)
        return web.Response(status=receiver.status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def webhook(receiver: Receiver, language: Language = "en") -> WebhookChannel:
    return WebhookChannel(WebhookSettings(receiver.url, SECRET, language, timeout_s=5))


# --- alerts -------------------------------------------------------------------------------


def threshold(
    percent: int,
    language: Language = "pt-BR",
    *,
    user_id: int = 7,
    timezone: str | None = None,
    period_start: datetime = PERIOD_START,
) -> ThresholdAlert:
    total = 12_500
    used = total * percent // 100
    crossing = ThresholdCrossing(
        percent, used, total, total - used, period_start, PERIOD_END, PORTAL
    )
    user = AlertUser(user_id, f"lc-{user_id}", "joao@example.com", "João")
    return ThresholdAlert(user, crossing, language, timezone)


async def put(database: Database, alerts: list[Any]) -> list[bool]:
    async with database.transaction() as conn:
        return [await enqueue(conn, database.dialect, alert) for alert in alerts]


async def outbox(database: Database) -> list[OutboxRow]:
    async with database.transaction() as conn:
        return sorted(await list_alerts(conn), key=lambda row: row.id)


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return str(text.get_content()), str(html.get_content())


# --- e-mail -------------------------------------------------------------------------------

EXPECTED: dict[str, dict[int, tuple[str, ...]]] = {
    "pt-BR": {
        80: (
            "Você usou 80% dos seus tokens",
            "Olá, João!",
            "Você já usou 80% dos tokens deste período (10.000 de 12.500).",
            "Saldo restante: 2.500 tokens.",
            "termina em 31/03/2026 às 21:00 (UTC-03:00)",
        ),
        100: (
            "Seus tokens acabaram",
            "Olá, João!",
            "Você usou todos os tokens deste período (12.500 de 12.500).",
            "Saldo: 0 tokens.",
            "renovada em 31/03/2026 às 21:00 (UTC-03:00)",
        ),
    },
    "en": {
        80: (
            "You have used 80% of your tokens",
            "Hi João,",
            "You have used 80% of this period",
            "Balance left: 2,500 tokens.",
            "(10,000 of 12,500)",
            "ends on April 1, 2026, 00:00 (UTC)",
        ),
        100: (
            "Your tokens ran out",
            "Hi João,",
            "You have used all of this period",
            "(12,500 of 12,500)",
            "Balance: 0 tokens.",
            "renews on April 1, 2026, 00:00 (UTC)",
        ),
    },
}


@pytest.mark.parametrize("language", ["pt-BR", "en"])
async def test_80_and_100_percent_emails_reach_a_real_smtp_server(
    database: Database, language: Language
) -> None:
    clock = Clock()
    timezone = "America/Sao_Paulo" if language == "pt-BR" else None
    alerts = [
        alert
        for percent in (80, 100)
        for alert in user_threshold_alerts(
            threshold(percent, language, timezone=timezone), ["email"], clock()
        )
    ]
    assert await put(database, alerts) == [True, True]
    port = free_port()
    with smtp_server(port) as inbox:
        deliverer = Deliverer(database, {"email": EmailChannel(smtp(port))}, clock=clock)
        assert await deliverer.run_once() == 2
        await deliverer.aclose()
    assert len(inbox.messages) == 2
    by_subject = {str(message["Subject"]): message for message in inbox.messages}
    for percent, expected in EXPECTED[language].items():
        subject, *sentences = expected
        message = by_subject[subject]
        assert message["To"] == "joao@example.com"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message.get_content_type() == "multipart/alternative"
        text, html = parts(message)
        for sentence in sentences:
            assert sentence in text, (percent, sentence, text)
            assert sentence in html.replace("&#x27;", "'"), (percent, sentence, html)
        assert PORTAL in text
        assert f'href="{PORTAL}"' in html
    assert {row.state for row in await outbox(database)} == {"sent"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, made offline with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_starttls_with_login_delivers(database: Database, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[tuple[str, str]] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password == b"s3cret")

    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True,
        authenticator=authenticate, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    try:
        settings = SmtpSettings(
            "127.0.0.1", port, "starttls", "alerts", "s3cret", "alerts@example.com", timeout_s=5
        )
        channel = EmailChannel(settings, ssl.create_default_context(cafile=str(cert)))
        await put(database, user_threshold_alerts(threshold(100, "en"), ["email"], START))
        assert await Deliverer(database, {"email": channel}).run_once() == 1
    finally:
        controller.stop()
    assert logins == [("alerts", "s3cret")]
    assert [str(message["Subject"]) for message in inbox.messages] == ["Your tokens ran out"]


async def test_smtp_down_keeps_the_alert_pending_with_backoff_until_it_comes_back(
    database: Database,
) -> None:
    clock, port = Clock(), free_port()  # nothing listens on the port yet
    await put(database, user_threshold_alerts(threshold(80), ["email"], clock()))

    def deliverer() -> Deliverer:
        channels = {"email": EmailChannel(smtp(port))}
        return Deliverer(database, channels, clock=clock, draw=lambda: 0.0)  # no jitter

    first = deliverer()
    assert await first.run_once() == 0
    [row] = await outbox(database)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == clock() + timedelta(seconds=30)
    assert row.last_error is not None and "SMTP 127.0.0.1" in row.last_error

    clock.advance(seconds=29)
    assert await first.run_once() == 0  # not due: no attempt spent
    assert (await outbox(database))[0].attempts == 1
    clock.advance(seconds=1)
    assert await first.run_once() == 0
    [row] = await outbox(database)
    assert row.attempts == 2 and row.next_attempt_at == clock() + timedelta(seconds=60)
    await first.aclose()

    with smtp_server(port) as inbox:  # the server is back; so is the gateway, restarted
        restarted = deliverer()
        clock.advance(seconds=60)
        assert await restarted.run_once() == 1
        assert await restarted.run_once() == 0
    [row] = await outbox(database)
    assert (row.state, row.attempts, row.sent_at, row.last_error) == ("sent", 3, clock(), None)
    assert len(inbox.messages) == 1


async def test_a_restarted_gateway_resumes_alerts_left_by_a_crashed_one(
    database: Database,
) -> None:
    clock = Clock()
    await put(database, user_threshold_alerts(threshold(100), ["webhook"], clock()))
    async with database.transaction() as conn:  # a process claims the row and dies mid-send
        claimed = await claim_due(
            conn, database.dialect, clock(), channels=["webhook"], limit=10, lease_s=300,
            attempts_max=10,
        )  # fmt: skip
    assert len(claimed) == 1
    async with webhook_receiver() as receiver:
        restarted = Deliverer(database, {"webhook": webhook(receiver)}, clock=clock, lease_s=300)
        assert await restarted.run_once() == 0  # still leased to the dead process
        clock.advance(seconds=300)
        assert await restarted.run_once() == 1
        await restarted.aclose()
    assert len(receiver.requests) == 1
    [row] = await outbox(database)
    assert (row.state, row.attempts) == ("sent", 2)


async def test_finished_alerts_are_purged_after_the_retention_and_pending_ones_stay(
    database: Database,
) -> None:
    clock = Clock()
    await put(database, user_threshold_alerts(threshold(80), ["webhook"], clock()))
    await put(database, user_threshold_alerts(threshold(80, user_id=8), ["email"], clock()))
    async with webhook_receiver() as receiver:  # the webhook goes out; nobody sends e-mail
        deliverer = Deliverer(
            database, {"webhook": webhook(receiver)}, clock=clock, retention=timedelta(days=40)
        )
        assert await deliverer.run_once() == 1
        clock.advance(days=39)
        assert await deliverer.purge_if_due(clock()) == 0
        clock.advance(days=2)
        assert await deliverer.purge_if_due(clock()) == 1
        await deliverer.aclose()
    assert [row.channel for row in await outbox(database)] == ["email"]  # still pending


async def test_an_alert_fails_after_its_last_attempt_or_at_once_when_refused(
    database: Database,
) -> None:
    clock, port = Clock(), free_port()
    await put(database, user_threshold_alerts(threshold(80), ["email", "webhook"], clock()))
    async with webhook_receiver() as receiver:
        receiver.status = 404  # a deleted Slack webhook: retrying cannot help
        channels: dict[str, Channel] = {
            "email": EmailChannel(smtp(port)),
            "webhook": webhook(receiver),
        }
        policy = RetryPolicy(attempts_max=2, delay_first_s=10)
        deliverer = Deliverer(database, channels, clock=clock, policy=policy, draw=lambda: 0.0)
        assert await deliverer.run_once() == 0
        states = {row.channel: (row.state, row.attempts) for row in await outbox(database)}
        assert states == {"email": ("pending", 1), "webhook": ("failed", 1)}
        clock.advance(seconds=10)
        assert await deliverer.run_once() == 0
        clock.advance(days=1)
        assert await deliverer.run_once() == 0  # nothing is claimed again
        await deliverer.aclose()
    email_row = next(row for row in await outbox(database) if row.channel == "email")
    assert (email_row.state, email_row.attempts) == ("failed", 2)
    assert len(receiver.requests) == 1


def test_backoff_doubles_up_to_its_maximum_with_jitter_below_it() -> None:
    policy = RetryPolicy(attempts_max=20, delay_first_s=30, delay_max_s=3600, jitter=0.5)
    assert [policy.delay_s(n, 0.0) for n in range(1, 10)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip
    assert policy.delay_s(1, 0.999) == pytest.approx(15.015)
    assert 1800 < policy.delay_s(40, 0.999) <= 3600


# --- webhook ------------------------------------------------------------------------------


async def test_the_webhook_is_signed_with_a_stable_schema_and_a_readable_text(
    database: Database,
) -> None:
    clock = Clock()
    event = SystemEvent(
        "upstream_error_rate",
        "critical",
        {"provider": "openai", "error_rate_percent": 50, "threshold_percent": 20, "window_s": 60},
    )
    alerts = [
        *user_threshold_alerts(threshold(80), ["webhook"], clock()),
        *system_alerts(event, ["webhook"], clock(), scope="openai", cooldown_s=600),
    ]
    assert await put(database, alerts) == [True, True]
    async with webhook_receiver() as receiver:
        clock.advance(seconds=5)
        deliverer = Deliverer(database, {"webhook": webhook(receiver)}, clock=clock)
        assert await deliverer.run_once() == 2
        await deliverer.aclose()
    assert len(receiver.requests) == 2
    for headers, raw in receiver.requests:
        assert headers["Content-Type"] == "application/json"
        assert verify_signature(SECRET, raw, headers["X-Solaris-Signature"])
        assert not verify_signature("another-secret", raw, headers["X-Solaris-Signature"])
        assert headers["X-Solaris-Timestamp"] == str(int(clock().timestamp()))
    bodies = {body["kind"]: body for body in receiver.bodies()}
    for body in bodies.values():
        assert set(body) == {"kind", "severity", "text", "user", "data", "created_at"}
        assert body["created_at"] == START.isoformat()
    user = bodies["user_threshold"]
    assert user["severity"] == "info"
    assert user["text"] == (
        "joao@example.com has used 80% of the period's tokens (10,000 of 12,500; balance 2,500;"
        " the period ends on April 1, 2026, 00:00 (UTC))."
    )
    assert user["user"] == {
        "id": 7,
        "external_id": "lc-7",
        "email": "joao@example.com",
        "name": "João",
    }
    assert user["data"]["threshold"] == 80 and user["data"]["balance"] == 2500
    system = bodies["system"]
    assert (system["severity"], system["user"]) == ("critical", None)
    assert system["text"] == (
        "Provider openai: 50% of requests failed in the last 60 s (threshold 20%)."
    )
    assert system["data"]["event"] == "upstream_error_rate"


async def test_a_webhook_answering_503_is_retried(database: Database) -> None:
    clock = Clock()
    await put(database, user_threshold_alerts(threshold(100), ["webhook"], clock()))
    async with webhook_receiver() as receiver:
        receiver.status = 503
        deliverer = Deliverer(database, {"webhook": webhook(receiver)}, clock=clock)
        assert await deliverer.run_once() == 0
        receiver.status = 200
        clock.advance(seconds=30)
        assert await deliverer.run_once() == 1
        await deliverer.aclose()
    ids = {headers["X-Solaris-Alert-Id"] for headers, _body in receiver.requests}
    assert len(receiver.requests) == 2 and len(ids) == 1  # receivers can drop a repeat


# --- dedupe and concurrency ---------------------------------------------------------------


async def test_one_threshold_per_user_and_period_is_enqueued_once(database: Database) -> None:
    clock = Clock()
    [first] = user_threshold_alerts(threshold(80), ["email"], clock())
    clock.advance(minutes=5)  # another settle, later, crossing the same threshold
    [again] = user_threshold_alerts(threshold(80), ["email"], clock())
    assert first.dedupe_key == again.dedupe_key == "threshold:7:1772323200:80:email"
    assert await put(database, [first]) == [True]
    assert await put(database, [again]) == [False]
    next_period = threshold(80, period_start=PERIOD_END)
    others = [
        *user_threshold_alerts(threshold(100), ["email"], clock()),
        *user_threshold_alerts(next_period, ["email"], clock()),
        *user_threshold_alerts(threshold(80, user_id=8), ["email"], clock()),
    ]
    assert await put(database, others) == [True, True, True]
    assert len(await outbox(database)) == 4


async def test_an_alert_rolled_back_with_its_settle_is_not_sent(database: Database) -> None:
    [alert] = user_threshold_alerts(threshold(80), ["email"], START)
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            assert await enqueue(conn, database.dialect, alert)
            raise RuntimeError("the settle failed")
    assert await outbox(database) == []
    assert await put(database, [alert]) == [True]


async def test_concurrent_transactions_on_postgres_make_one_row(postgres_url: str) -> None:
    database = await opened(postgres_url, pool_size=8)
    [alert] = user_threshold_alerts(threshold(80), ["email"], START)
    gate = asyncio.Event()

    async def settle() -> bool:
        async with database.transaction() as conn:
            await gate.wait()  # every transaction is open before any inserts
            return await enqueue(conn, database.dialect, alert)

    tasks = [asyncio.create_task(settle()) for _ in range(8)]
    await asyncio.sleep(0.2)
    gate.set()
    assert sorted(await asyncio.gather(*tasks)) == [False] * 7 + [True]
    async with database.transaction() as conn:
        assert await conn.scalar(select(func.count()).select_from(alert_outbox)) == 1
    await database.close()


async def test_two_deliverers_on_postgres_never_send_one_alert_twice(postgres_url: str) -> None:
    first, second = await opened(postgres_url), await opened(postgres_url)
    clock = Clock()
    alerts = [
        alert
        for n in range(60)
        for alert in system_alerts(
            SystemEvent("redis_unreachable", "critical", {"error": f"#{n}"}),
            ["webhook"],
            clock(),
            scope=f"instance-{n}",
            cooldown_s=300,
        )
    ]
    assert all(await put(first, alerts))
    async with webhook_receiver() as receiver:
        receiver.delay_s = 0.02  # keep batches in flight while the other process claims

        async def drain(database: Database) -> int:
            deliverer = Deliverer(
                database, {"webhook": webhook(receiver)}, batch_size=7, clock=clock
            )
            total = 0
            while sent := await deliverer.run_once():
                total += sent
            await deliverer.aclose()
            return total

        totals = await asyncio.gather(drain(first), drain(second))
    ids = [headers["X-Solaris-Alert-Id"] for headers, _body in receiver.requests]
    assert len(ids) == len(set(ids)) == 60
    assert sum(totals) == 60 and min(totals) > 0  # both processes took part
    assert {row.state for row in await outbox(first)} == {"sent"}
    await first.close()
    await second.close()


async def test_run_forever_delivers_in_the_background_and_stops(database: Database) -> None:
    async with webhook_receiver() as receiver:
        deliverer = Deliverer(database, {"webhook": webhook(receiver)}, poll_interval_s=0.05)
        stop = asyncio.Event()
        worker = asyncio.create_task(deliverer.run_forever(stop))
        now = datetime.now(UTC)
        await put(database, user_threshold_alerts(threshold(80), ["webhook"], now))
        await asyncio.wait_for(receiver.arrived.wait(), WAIT_S)
        stop.set()
        await asyncio.wait_for(worker, WAIT_S)
        await deliverer.aclose()
    assert len(receiver.requests) == 1


# --- pure parts ---------------------------------------------------------------------------


def test_crossed_thresholds_counts_each_threshold_once() -> None:
    assert crossed_thresholds(0, 80, 100, [50, 80, 100]) == [50, 80]
    assert crossed_thresholds(9_999, 10_000, 12_500, [80, 100]) == [80]
    assert crossed_thresholds(10_000, 11_000, 12_500, [80, 100]) == []
    assert crossed_thresholds(11_000, 15_000, 12_500, [100, 80]) == [100]
    assert crossed_thresholds(0, 10, 0, [80]) == []


def test_numbers_and_dates_read_as_each_language_writes_them() -> None:
    assert format_tokens("pt-BR", 1_234_567) == "1.234.567"
    assert format_tokens("en", 1_234_567) == "1,234,567"
    moment = datetime(2026, 1, 5, 3, 30, tzinfo=UTC)
    assert (
        moment_in_words("pt-BR", moment, "America/Sao_Paulo") == "05/01/2026 às 00:30 (UTC-03:00)"
    )
    assert moment_in_words("en", moment) == "January 5, 2026, 03:30 (UTC)"


def test_an_alert_for_a_balance_below_zero_says_what_the_user_owes() -> None:
    """A provider that billed more than was held leaves debt: the e-mail says so, as the
    portal does, instead of a negative "balance"."""
    end = datetime(2026, 2, 1, tzinfo=UTC)
    cases: list[tuple[Language, str]] = [
        ("pt-BR", "Você deve 1.256 tokens"),
        ("en", "You owe 1,256 tokens"),
    ]
    for language, owed in cases:
        mail = threshold_email(
            language, name=None, percent=100, used=3256, total=2000, balance=-1256,
            period_end=end, portal_url="https://chat.example.com/portal",
        )  # fmt: skip
        assert owed in mail.text and "-1" not in mail.text


def test_smtp_credentials_are_refused_over_a_plain_connection() -> None:
    with pytest.raises(ConfigError):
        SmtpSettings("smtp.example.com", 25, "none", "user", "secret", "a@example.com")
    settings = SmtpSettings("smtp.example.com", 587, "starttls", "user", "secret", "a@ex.com")
    assert "secret" not in repr(settings)


async def test_the_settle_in_sql_and_the_block_in_python_make_the_same_key(
    postgres_url: str,
) -> None:
    """A period starting at a fraction of a second: PostgreSQL's crossing at 100% and the
    Python side's alert for a blocked user must be one alert, not two."""
    from sqlalchemy import update

    from solaris.clock import utcnow
    from solaris.config import Settings
    from solaris.ledger.ledger import Ledger, UsageRecord
    from solaris.ledger.plans import Plans
    from solaris.ledger.postgres import PostgresPending
    from solaris.ledger.thresholds import Thresholds
    from solaris.ledger.users import Users
    from solaris.store.schema import accounts

    database = await opened(postgres_url)
    await Plans(database).sync_from_settings(Settings(default_allowance_tokens=0), START)
    dsn = postgres_url.replace("postgresql://", "postgres://")
    thresholds = Thresholds((80, 100), ("webhook",))
    pending = PostgresPending(dsn, 2, utcnow, thresholds)
    ledger = Ledger(database, utcnow, thresholds, pending)
    await ledger.start()
    try:
        user = await Users(ledger).ensure("fraction", "f@example.com")
        start = datetime(2026, 3, 1, 0, 0, 0, 900_000, tzinfo=UTC)  # .9 s: rounding would differ
        async with database.transaction() as conn:
            await conn.execute(
                update(accounts).where(accounts.c.user_id == user.id).values(period_start=start)
            )
            await ledger.credit(conn, user.id, "grant", 100, "grant:fraction", "test")
        assert (await ledger.reserve(user.id, "req-1", 100, 1, 60)).amount == 100
        record = UsageRecord("req-1", user.id, "chat", "m", 40, 60, 0, 0, 100, False, "ok", 5)
        assert (await ledger.settle(record)).crossed == (80, 100)
        await ledger.note_exhausted(user.id)
    finally:
        await ledger.close()
    keys = sorted(row.dedupe_key for row in await outbox(database))
    await database.close()
    assert keys == [f"threshold:{user.id}:{int(start.timestamp())}:{p}:webhook" for p in (100, 80)]
