"""The admin dashboard and the user portal, as people use them: in a real headless Chromium
(Debian's, driven by Playwright) and, for the security checks, over plain HTTP.

The browser tests run one gateway of their own (SQLite, its public URL is itself so the block
reply's link opens in the browser, an SMTP server on loopback for the e-mail magic link) and
write screenshots to test-artifacts/screenshots/. The security checks run against the shared
gateways, on SQLite and on PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from functools import partial
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select

from solaris.clock import utcnow
from solaris.links import buy_url, sign_link
from solaris.operations.admins import Admins
from solaris.operations.sessions import token_digest
from solaris.portal.templating import TEMPLATES_DIR
from solaris.portal.user_actions import DONE
from solaris.store.database import open_database
from solaris.store.schema import ENTRY_KINDS, web_sessions
from solaris.texts.pages import MESSAGES
from tests.conftest import Database, Gateway, gateway_env, start_gateway
from tests.servers import free_port

T = TypeVar("T")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).parents[1] / "test-artifacts" / "screenshots"
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}
PASSWORD = "correct-horse-battery-staple"
PACKS = [
    {"name": "Básico", "tokens": 500_000, "price_cents": 2500},
    {"name": "Pro", "tokens": 2_000_000, "price_cents": 9000, "popular": True},
    {"name": "Equipe", "tokens": 10_000_000, "price_cents": 40000, "expires_in_days": 365},
]
CONTACT = "Escreva para financeiro@example.com"
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
FAILED_NOTICE = re.compile(r'data-testid="failed-sign-ins">([^<]+)<')
MAIL_WAIT_S = 10.0
CHAT = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "oi"}]}
ATTACKER = "http://attacker.test/"  # another site, served by the browser itself (page.route)
ATTACK_PAGE = (
    '<!doctype html><form method="post" action="{action}"></form>'
    "<script>document.forms[0].submit()</script>"
)


def _missing(what: str, error: object) -> NoReturn:
    message = f"{what} is not usable: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def in_thread(job: Callable[[], T]) -> T:
    """Run `job` (which may call asyncio.run) off this thread: Playwright's sync API keeps an
    event loop marked as running on the test's thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(job).result()


def create_admin(gateway: Gateway) -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"

    async def job() -> None:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            await Admins(database, utcnow).create(email, PASSWORD)
        finally:
            await database.close()

    in_thread(lambda: asyncio.run(job()))
    return email


def portal_link(
    gateway: Gateway, user_id: int, ttl_s: int = 900, now: datetime | None = None
) -> str:
    key = gateway.env["SOLARIS_SECRET_KEY"].encode()
    return buy_url(gateway.url, sign_link(key, user_id, ttl_s, now or datetime.now(UTC)))


def pt_tokens(value: int) -> str:
    return f"{value:,}".replace(",", ".")


# --- servers ------------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def wait_for(self, recipient: str) -> EmailMessage:
        deadline = time.monotonic() + MAIL_WAIT_S
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == recipient:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no e-mail to {recipient}")


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[int, Inbox]]:
    port = free_port()
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def web(
    provider: str, tmp_path_factory: pytest.TempPathFactory, inbox: tuple[int, Inbox]
) -> Iterator[Gateway]:
    """A gateway whose public URL is itself, with credit packs and e-mail sign-in."""
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = gateway_env(
        tmp,
        provider,
        Database(f"sqlite:///{tmp}/web.db", None),
        SOLARIS_PORT=str(port),
        SOLARIS_PUBLIC_BASE_URL=url,
        SOLARIS_LANGUAGE="pt-BR",
        SOLARIS_CREDIT_PACKS=json.dumps(PACKS),
        SOLARIS_PURCHASE_CONTACT=CONTACT,
        SOLARIS_SMTP_HOST="127.0.0.1",
        SOLARIS_SMTP_PORT=str(inbox[0]),
        SOLARIS_SMTP_SECURITY="none",
    )
    yield from start_gateway(env, tmp)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Chromium for one test: Playwright's sync API marks an event loop as running on this
    thread while it is open, which the database fixtures of later tests could not bear."""
    if not CHROMIUM.exists():
        _missing("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except PlaywrightError as error:
            _missing("Chromium", error)
        yield launched
        launched.close()


def screenshots(page: Page, name: str) -> None:
    """The page at a laptop's and a phone's size, whole length."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        # Charts redraw for the new width on the next frames; then nothing may stick out.
        page.wait_for_function("() => document.documentElement.scrollWidth <= window.innerWidth")
        page.evaluate(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        page.screenshot(path=SCREENSHOTS / f"{name}-{size}.png", full_page=True)
    page.set_viewport_size(dict(zip(("width", "height"), SIZES["laptop"], strict=True)))  # type: ignore[arg-type]


def console_errors(page: Page) -> list[str]:
    """What the page logs as errors from now on (a CSP violation, a script that failed)."""
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def blocked_stream_link(gateway: Gateway, user: str) -> str:
    """Send a streamed chat the balance cannot pay for; return the link in the block reply."""
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "palavra " * 800}],
    }
    with gateway.client(user) as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["x-solaris-blocked"] == "insufficient_balance"
    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    found = re.search(r"\]\((http[^)\s]+/portal/buy\?t=[^)\s]+)\)", text)
    assert found, text
    return found.group(1)


# --- in the browser -----------------------------------------------------------------------


def test_admin_signs_in_finds_a_user_and_grants_credits(web: Gateway, browser: Browser) -> None:
    email = create_admin(web)
    user = "web-alice-" + uuid.uuid4().hex[:6]
    with web.client(user, **{"X-LibreChat-User-Email": f"{user}@example.com"}) as client:
        created = client.post("/v1/chat/completions", json=CHAT)
    assert created.status_code == 402  # a new user has nothing yet
    in_thread(lambda: web.fund(user, 1000))
    other = "web-zed-" + uuid.uuid4().hex[:6]
    for name, models in ((other, ("gpt-4o-mini", "gpt-4o")), ("web-yara", ("claude-3-5-haiku",))):
        in_thread(partial(web.fund, name, 20_000))
        with web.client(name) as client:  # some traffic for the overview to show
            for model in models * 2:
                assert (
                    client.post("/v1/chat/completions", json={**CHAT, "model": model}).status_code
                    == 200
                )
    context = browser.new_context(locale="pt-BR", viewport={"width": 1366, "height": 768})
    page = context.new_page()

    page.goto(web.url + "/admin/users")
    assert "/admin/login" in page.url  # not signed in yet
    for password in ("wrong-password-1", "wrong-password-2", PASSWORD):
        page.fill("#email", email)
        page.fill("#password", password)
        page.click("form[action='/admin/login'] button[type=submit]")
        if password != PASSWORD:
            assert page.locator("[role=alert]").inner_text() == "E-mail ou senha incorretos."
    page.wait_for_url(web.url + "/admin/users")
    errors = console_errors(page)  # from here on (the browser logs each 401 above as one)
    notice = page.locator("[data-testid=failed-sign-ins]").inner_text()
    assert notice.startswith("Tentativas de entrar na sua conta que falharam desde a sua entrada")
    assert ": 2;" in notice and "127.0.0.1" in notice
    page.click("nav >> text=Visão geral")
    page.wait_for_url(web.url + "/admin")
    assert page.locator("h1").inner_text() == "Visão geral"
    assert page.locator("canvas#tokens-days").is_visible()
    screenshots(page, "admin-overview")

    page.click("nav >> text=Usuários")
    table = page.locator("#users-table")
    assert table.get_by_role("link", name=other, exact=True).count() == 1
    page.fill("#q", f"{user}@exam")  # htmx searches as one types
    table.get_by_role("link", name=other, exact=True).wait_for(state="detached")
    assert "q=" in page.url  # the search is in the address, to share or reload
    table.get_by_role("link", name=user, exact=True).click()
    assert page.locator("[data-testid=user-name]").inner_text() == user
    assert page.locator("[data-testid=available]").inner_text() == pt_tokens(1000)

    form = page.locator("[data-testid=grant-form]")
    form.locator("input[name=tokens]").fill("5000")
    form.locator("input[name=note]").fill("cortesia de boas-vindas")
    form.locator("input[name=expires_in_days]").fill("30")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*\?done=grant$"))
    assert page.locator("[data-testid=flash]").inner_text() == "Créditos concedidos."
    assert page.locator("[data-testid=available]").inner_text() == pt_tokens(6000)
    assert "cortesia de boas-vindas" in page.locator("[data-testid=statement]").inner_text()
    expiry = f"válido até {datetime.now(UTC) + timedelta(days=30):%d/%m/%Y}"
    assert page.locator("[data-testid=expires]").inner_text().startswith(expiry)
    screenshots(page, "admin-user")
    assert in_thread(lambda: web.user_row(user))["balance"] == 6000

    page.click("nav >> text=Planos")
    assert "default" in page.locator("table").inner_text()
    page.click("nav >> text=Alertas")
    assert page.locator("h1").inner_text() == "Alertas"
    page.click("nav >> text=Auditoria")
    audit = page.locator("[data-testid=audit]").inner_text()
    assert "credits.grant" in audit and "admin:" in audit
    # A page on another site that posts to the sign-out at once signs nobody out.
    attack = ATTACK_PAGE.format(action=web.url + "/admin/logout")
    page.route(ATTACKER + "**", lambda route: route.fulfill(content_type="text/html", body=attack))
    page.goto(ATTACKER)
    page.wait_for_url(re.compile(re.escape(web.url) + "/admin.*"))  # the post went through
    page.goto(web.url + "/admin/users")
    assert page.url == web.url + "/admin/users"  # still signed in
    page.click("text=Sair")
    page.wait_for_url(re.compile(r".*/admin/login$"))
    page.goto(web.url + "/admin")
    assert "/admin/login" in page.url  # signed out for good
    assert errors == []
    context.close()


def test_user_opens_the_portal_from_a_block_reply_and_downloads_the_statement(
    web: Gateway, browser: Browser
) -> None:
    user = "web-bob-" + uuid.uuid4().hex[:6]
    in_thread(lambda: web.fund(user, 400))
    with web.client(user) as client:
        served = client.post("/v1/chat/completions", json=CHAT)
    assert served.status_code == 200
    row = in_thread(lambda: web.user_row(user))
    charged = 400 - row["balance"]
    assert charged > 0
    link = blocked_stream_link(web, user)
    assert link.startswith(web.url + "/portal/buy?t=")

    context = browser.new_context(
        locale="pt-BR", viewport={"width": 1366, "height": 768}, accept_downloads=True
    )
    page = context.new_page()
    errors = console_errors(page)
    page.goto(link)
    assert page.url == web.url + "/portal/buy"  # the token is gone from the address bar
    assert page.locator("h1").inner_text() == "Comprar créditos"
    assert "Básico" in page.content() and CONTACT in page.content()
    prices = page.locator("[data-testid=price]").all_inner_texts()
    assert [price.replace("\xa0", " ") for price in prices] == ["R$ 25,00", "R$ 90,00", "R$ 400,00"]
    screenshots(page, "portal-buy")

    page.click("nav >> text=Início")
    assert page.locator("[data-testid=balance]").inner_text() == pt_tokens(row["balance"])
    assert "gpt-4o-mini" in page.locator("[data-testid=models]").inner_text()
    screenshots(page, "portal-home")

    page.click("nav >> text=Extrato")
    table = page.locator("[data-testid=statement]").inner_text()
    assert "Crédito" in table and "Uso" in table and "Recusada" in table
    assert page.locator("[data-testid=closing]").inner_text() == pt_tokens(row["balance"])
    screenshots(page, "portal-statement")
    with page.expect_download() as download:
        page.click("[data-testid=csv]")
    assert download.value.suggested_filename.startswith("extrato-")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text("utf-8-sig"))))
    assert [(r["kind"], r["credit"], r["debit"]) for r in rows] == [
        ("grant", "400", ""),
        ("usage", "", str(charged)),
        ("refusal", "", ""),  # the block reply that brought the user here
    ]
    assert rows[1]["model"] == "gpt-4o-mini" and int(rows[-1]["balance"]) == row["balance"]

    page.click("[data-testid=lang-switch]")
    assert page.url.startswith(web.url + "/portal/statement")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Statement"
    assert page.locator("[data-testid=csv]").inner_text() == "Download CSV"
    page.click("nav >> text=Home")
    assert page.locator("h1").inner_text() == "Your usage"
    assert page.locator("[data-testid=balance]").inner_text() == f"{row['balance']:,}"
    page.click("[data-testid=lang-switch]")
    assert page.locator("h1").inner_text() == "Seu consumo"
    assert errors == []

    other = browser.new_context(locale="pt-BR")
    reused = other.new_page()
    reused.goto(link)  # the link worked once
    assert reused.locator("h1").inner_text() == "Este link não vale mais"
    reused.goto(web.url + "/portal")
    assert "/portal/login" in reused.url
    screenshots(reused, "portal-link-used")
    other.close()
    context.close()


def test_a_negative_balance_is_shown_as_what_the_user_owes(web: Gateway, browser: Browser) -> None:
    user = "web-erin-" + uuid.uuid4().hex[:6]
    web.cli("credits", "grant", user, "100", "--note", "teste")
    web.cli("credits", "deduct", user, "356", "--note", "the provider counted more")
    user_id = int(in_thread(lambda: web.user_row(user))["id"])
    assert in_thread(lambda: web.user_row(user))["balance"] == -256
    context = browser.new_context(locale="pt-BR", viewport={"width": 1366, "height": 768})
    page = context.new_page()
    errors = console_errors(page)
    page.goto(portal_link(web, user_id))  # to /portal/buy, signed in
    assert page.locator("[data-testid=balance]").inner_text() == "Você deve 256 tokens."
    page.click("nav >> text=Início")
    owed = page.locator("[data-testid=owed]")
    assert owed.inner_text().startswith("Você deve 256 tokens.")
    assert owed.locator("a").get_attribute("href") == "/portal/buy"
    assert page.locator("[data-testid=balance]").inner_text() == "-256"
    screenshots(page, "portal-home-owed")
    page.click("nav >> text=Extrato")
    assert page.locator("[data-testid=owed]").inner_text().startswith("Você deve 256 tokens.")
    assert page.locator("[data-testid=closing]").inner_text() == "-256"
    page.click("[data-testid=lang-switch]")
    assert page.locator("[data-testid=owed]").inner_text().startswith("You owe 256 tokens.")
    page.click("[data-testid=owed-buy]")
    assert page.url == web.url + "/portal/buy"
    assert page.locator("[data-testid=balance]").inner_text() == "You owe 256 tokens."

    email = create_admin(web)
    admin = browser.new_context(locale="pt-BR", viewport={"width": 1366, "height": 768}).new_page()
    admin.goto(web.url + f"/admin/login?next=/admin/users/{user_id}")
    admin.fill("#email", email)
    admin.fill("#password", PASSWORD)
    admin.click("form[action='/admin/login'] button[type=submit]")
    admin.wait_for_url(web.url + f"/admin/users/{user_id}")
    assert admin.locator("[data-testid=available]").inner_text() == "-256"
    assert admin.locator("[data-testid=owed]").inner_text().startswith("Deve 256 tokens")
    admin.goto(web.url + f"/admin/users?q={user}")
    assert "-256 deve" in admin.locator("#users-table").inner_text()

    key = web.cli("admins", "key", "create", email, "--name", "owed").strip()
    detail = httpx.get(
        f"{web.url}/api/admin/users/{user_id}", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert (detail["balance"], detail["owed"], detail["available"]) == (-256, 256, -256)
    shown = web.cli("users", "show", user)
    assert f"{user} owes 256 tokens" in shown
    [row] = [r for r in json.loads(web.cli("users", "list", "--json")) if r["user"] == user]
    assert (row["balance"], row["owed"]) == (-256, 256)

    web.cli("credits", "grant", user, "1000", "--note", "paga a dívida")  # pays the debt first
    page.goto(web.url + "/portal")
    assert page.locator("[data-testid=owed]").count() == 0
    assert page.locator("[data-testid=balance]").inner_text() == "744"
    assert errors == []
    context.close()


def test_email_magic_link_signs_in_without_telling_who_has_an_account(
    web: Gateway, browser: Browser, inbox: tuple[int, Inbox]
) -> None:
    user = "web-carol-" + uuid.uuid4().hex[:6]
    address = f"{user}@example.com"
    with web.client(user, **{"X-LibreChat-User-Email": address}) as client:
        created = client.post("/v1/chat/completions", json=CHAT)
    assert created.status_code == 402  # a new user has nothing yet
    context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844})
    page = context.new_page()
    answers = []
    for email in (f"nobody-{uuid.uuid4().hex[:6]}@example.com", address.upper()):
        page.goto(web.url + "/portal/login")
        page.fill("#email", email)
        page.click("button[type=submit]")
        answers.append(page.locator("[data-testid=notice]").inner_text())
    assert (
        answers[0]
        == answers[1]
        == ("If the address is known, a sign-in link is on its way. Check your inbox.")
    )
    message = inbox[1].wait_for(address)
    assert message["Subject"] == "Your SOLARIS sign-in link"
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"(http\S+/portal/login\?t=\S+)", body.get_content())
    assert found
    assert not [m for m in inbox[1].messages if m["To"].startswith("nobody-")]
    page.goto(found.group(1))
    assert page.url == web.url + "/portal"
    assert page.locator("h1").inner_text() == "Your usage"
    context.close()


# --- security, over HTTP, on SQLite and PostgreSQL ----------------------------------------


class Visitor:
    """A browser-like HTTP client keeping cookies by hand: httpx's cookie jar would not send a
    Secure cookie back over http://127.0.0.1, and these tests want to send any cookie anywhere.
    Each visitor comes from its own address (X-Forwarded-For, which the test gateways honour
    from loopback as from their load balancer), so the sign-in limits of one test never meet
    another's."""

    def __init__(self, gateway: Gateway) -> None:
        address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
        self.client = httpx.Client(
            base_url=gateway.url, headers={"X-Forwarded-For": address}, timeout=30
        )
        self.cookies: dict[str, str] = {}
        self.set_cookie: dict[str, str] = {}  # the last Set-Cookie header of each name

    def __enter__(self) -> Visitor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        headers = {**kwargs.pop("headers", {}), **({"Cookie": cookie} if cookie else {})}
        response = self.client.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(raw)
            for name, morsel in parsed.items():
                self.set_cookie[name] = raw
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def csrf(self, path: str) -> str:
        found = CSRF_INPUT.search(self.get(path).text)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    def admin_sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        token = self.csrf("/admin/login")
        form = {"csrf": token, "email": email, "password": password, "next": "/admin"}
        return self.post("/admin/login", data=form)

    def portal_sign_in(self, link: str) -> httpx.Response:
        return self.get(httpx.URL(link).raw_path.decode())


def new_user(gateway: Gateway, tokens: int = 1000) -> tuple[str, int]:
    user = "web-" + uuid.uuid4().hex[:10]
    in_thread(lambda: gateway.fund(user, tokens))
    return user, int(in_thread(lambda: gateway.user_row(user))["id"])


def balance(gateway: Gateway, user: str) -> int:
    return int(in_thread(lambda: gateway.user_row(user))["balance"])


def test_dashboard_forms_refuse_a_missing_or_wrong_csrf_token(gateway: Gateway) -> None:
    email = create_admin(gateway)
    user, user_id = new_user(gateway)
    with Visitor(gateway) as admin:
        assert admin.admin_sign_in(email).status_code == 303
        for listing in (
            "/admin",
            "/admin/users?q=web-",
            "/admin/plans",
            "/admin/alerts",
            "/admin/audit",
        ):
            assert admin.get(listing).status_code == 200, listing
        page = admin.get(f"/admin/users/{user_id}")
        assert page.status_code == 200
        token = CSRF_INPUT.search(page.text)
        assert token
        grant = {"tokens": "777", "note": "csrf check"}
        path = f"/admin/users/{user_id}/grant"
        assert admin.post(path, data=grant).status_code == 403
        assert admin.post(path, data={**grant, "csrf": "x" * 43}).status_code == 403
        assert admin.post(f"/admin/users/{user_id}/block", data={"reason": "x"}).status_code == 403
        assert admin.post("/admin/logout", data={"csrf": "nope"}).status_code == 403
        assert balance(gateway, user) == 1000  # nothing happened
        done = admin.post(path, data={**grant, "csrf": token.group(1)})
        assert done.status_code == 303 and done.headers["location"].endswith("?done=grant")
        assert balance(gateway, user) == 1777
        rotate = f"/admin/users/{user_id}/rotate-key"
        assert admin.post(rotate, data={"csrf": "wrong"}).status_code == 403
        rotated = admin.post(rotate, data={"csrf": token.group(1)})
        key = re.search(r"sk-sol-[\w-]{20,}", rotated.text)
        assert rotated.status_code == 200 and key
        assert key.group(0) not in admin.get(f"/admin/users/{user_id}").text  # shown once
        with gateway.client() as client:
            models = client.get("/v1/models", headers={"Authorization": f"Bearer {key.group(0)}"})
        assert models.status_code == 200  # and it works


def test_sign_in_forms_refuse_a_missing_csrf_token(gateway: Gateway) -> None:
    email = create_admin(gateway)
    with Visitor(gateway) as visitor:
        form = {"email": email, "password": PASSWORD}
        assert visitor.post("/admin/login", data=form).status_code == 403
        visitor.get("/admin/login")  # has the cookie now, but the form lacks the field
        assert visitor.post("/admin/login", data=form).status_code == 403
        assert "solaris_admin" not in visitor.cookies
        assert visitor.post("/portal/login", data={"email": "a@example.com"}).status_code == 403


def test_the_portal_shows_only_the_signed_in_users_data(gateway: Gateway) -> None:
    mine, my_id = new_user(gateway, 1111)
    theirs, their_id = new_user(gateway, 2222)
    with Visitor(gateway) as visitor:
        signed = visitor.portal_sign_in(portal_link(gateway, my_id))
        assert signed.status_code == 303 and signed.headers["location"] == "/portal/buy"
        pages = [
            visitor.get("/portal").text,
            visitor.get("/portal/statement").text,
            visitor.get("/portal/statement.csv").text,
            # Ids in the URL are not a way in: the portal has none and ignores these.
            visitor.get(f"/portal?user_id={their_id}&user={theirs}").text,
            visitor.get(f"/portal/statement?user_id={their_id}").text,
            visitor.get(f"/portal/statement.csv?user={theirs}&user_id={their_id}").text,
        ]
        assert not [page for page in pages if "2.222" in page or "2222" in page]
        assert not [page for page in pages[:3] if theirs in page]
        assert mine in pages[0] and "1.111" in pages[1] and ",1111," in pages[2]
        month = visitor.get(f"/portal/statement?period={datetime.now(UTC):%Y-%m}")
        assert month.status_code == 200 and "1.111" in month.text
        wrong = visitor.get("/portal/statement?period=2026-13")
        assert wrong.status_code == 303 and wrong.headers["location"] == "/portal/statement"
        assert visitor.get(f"/portal/users/{their_id}").status_code == 404


FORMULAS = ('=HYPERLINK("http://evil/","x")', "@SUM(1+1)", "-2+3")


def test_every_statement_csv_writes_formulas_as_text(gateway: Gateway, tmp_path: Path) -> None:
    """A model name a client chose and an operator's note that begin like a formula reach the
    portal's CSV, the admin API's and the CLI's as text; numbers stay numbers."""
    user = "web-csv-" + uuid.uuid4().hex[:8]
    gateway.cli("credits", "grant", user, "1000", "--note", "=1+1 gift")
    with gateway.client(user) as client:
        for model in FORMULAS:
            assert client.post("/v1/chat/completions", json={**CHAT, "model": model}).is_success
    user_id = int(in_thread(lambda: gateway.user_row(user))["id"])
    gateway.cli("credits", "deduct", user, "2000", "--note", "@SUM(A1) correction")
    email = create_admin(gateway)
    key = gateway.cli("admins", "key", "create", email, "--name", "csv").strip()
    with Visitor(gateway) as member:
        member.portal_sign_in(portal_link(gateway, user_id))
        portal = member.get("/portal/statement.csv").content.decode("utf-8-sig")
    api = httpx.get(
        f"{gateway.url}/api/admin/users/{user_id}/statement",
        params={"format": "csv"},
        headers={"Authorization": f"Bearer {key}"},
    ).text.lstrip("\ufeff")
    target = tmp_path / f"{user}.csv"
    gateway.cli("statement", user, "--csv", str(target))
    for text in (portal, api, target.read_text("utf-8-sig")):
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["note"] for r in rows if r["kind"] in ("grant", "adjustment")] == [
            "'=1+1 gift",
            "'@SUM(A1) correction",
        ]
        assert [r["model"] for r in rows if r["kind"] == "usage"] == [f"'{m}" for m in FORMULAS]
        closing = int(rows[-1]["balance"])  # a negative number, written as one
        assert closing < 0 and rows[-1]["balance"] == str(closing)
        assert closing == balance(gateway, user)


def test_credit_lines_say_when_they_expire_on_every_face(gateway: Gateway) -> None:
    user = "web-exp-" + uuid.uuid4().hex[:8]
    gateway.cli("credits", "grant", user, "700", "--note", "pilot", "--expires-in-days", "10")
    gateway.cli("credits", "grant", user, "300", "--note", "forever")
    with gateway.client(user) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    user_id = int(in_thread(lambda: gateway.user_row(user))["id"])
    key = gateway.cli("admins", "key", "create", create_admin(gateway), "--name", "x").strip()
    api = httpx.get(
        f"{gateway.url}/api/admin/users/{user_id}/statement",
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    expiries = [(line["note"], line["expires_at"]) for line in api["lines"]]
    assert expiries[1:] == [("forever", None), (None, None)]  # a credit for good, then usage
    assert expiries[0][0] == "pilot"
    expires_at = datetime.fromisoformat(expiries[0][1])
    assert timedelta(days=9, hours=23) < expires_at - datetime.now(UTC) <= timedelta(days=10)
    with Visitor(gateway) as member:
        member.portal_sign_in(portal_link(gateway, user_id))
        page = member.get("/portal/statement").text
        exported = member.get("/portal/statement.csv").content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert page.count('data-testid="expires"') == 1
    local = expires_at.astimezone(ZoneInfo("America/Sao_Paulo"))  # SOLARIS_TIMEZONE's default
    assert f"válido até {local:%d/%m/%Y %H:%M} (UTC-03:00)" in page
    assert [(r["kind"], r["credit"], r["expires_at"]) for r in rows[:2]] == [
        ("grant", "700", local.isoformat()),
        ("grant", "300", ""),
    ]
    assert rows[2]["kind"] == "usage" and int(rows[2]["debit"]) > 0 and rows[2]["credit"] == ""
    debits, credits = (sum(int(r[c] or 0) for r in rows) for c in ("debit", "credit"))
    assert int(rows[-1]["balance"]) == credits - debits == balance(gateway, user)


def session_revoked(gateway: Gateway, token: str) -> bool:
    """Whether the `web_sessions` row of this cookie's token is revoked."""

    async def job() -> bool:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            async with database.transaction() as conn:
                revoked_at = await conn.scalar(
                    select(web_sessions.c.revoked_at).where(
                        web_sessions.c.token_sha256 == token_digest(token)
                    )
                )
        finally:
            await database.close()
        return revoked_at is not None

    return in_thread(lambda: asyncio.run(job()))


def test_sign_out_wants_the_csrf_token_and_revokes_the_session(gateway: Gateway) -> None:
    email = create_admin(gateway)
    _user, user_id = new_user(gateway)
    with Visitor(gateway) as admin, Visitor(gateway) as member:
        admin.admin_sign_in(email)
        member.portal_sign_in(portal_link(gateway, user_id))
        for visitor, area in ((admin, "admin"), (member, "portal")):
            cookie, home, logout = f"solaris_{area}", f"/{area}", f"/{area}/logout"
            token, csrf = visitor.cookies[cookie], visitor.csrf(f"/{area}")
            assert visitor.post(logout).status_code == 403
            assert visitor.post(logout, data={"csrf": "x" * 43}).status_code == 403
            # A foreign site's auto-post comes without our SameSite=Lax cookie.
            foreign = httpx.post(gateway.url + logout, data={"csrf": csrf})
            assert foreign.status_code == 303 and "set-cookie" not in foreign.headers
            assert visitor.get(home).status_code == 200 and not session_revoked(gateway, token)
            done = visitor.post(logout, data={"csrf": csrf})
            assert done.status_code == 303 and done.headers["location"] == f"/{area}/login"
            assert cookie not in visitor.cookies and session_revoked(gateway, token)
            visitor.cookies[cookie] = token  # a copy of the old cookie opens nothing
            assert visitor.get(home).status_code == 303
    # The admin API's refresh cookie: cleared only with its session.
    with Visitor(gateway) as script:
        signed_in = script.post("/api/admin/login", json={"email": email, "password": PASSWORD})
        assert signed_in.status_code == 200
        refresh = script.cookies["solaris_admin_refresh"]
        stray = httpx.post(gateway.url + "/api/admin/logout")
        assert stray.status_code == 204 and "set-cookie" not in stray.headers
        assert script.post("/api/admin/logout").status_code == 204
        assert "solaris_admin_refresh" not in script.cookies and session_revoked(gateway, refresh)


def test_an_area_refuses_the_other_areas_session(gateway: Gateway) -> None:
    email = create_admin(gateway)
    _user, user_id = new_user(gateway)
    with Visitor(gateway) as admin, Visitor(gateway) as member:
        admin.admin_sign_in(email)
        member.portal_sign_in(portal_link(gateway, user_id))
        admin_token, user_token = admin.cookies["solaris_admin"], member.cookies["solaris_portal"]
        assert admin.get("/admin").status_code == 200 and member.get("/portal").status_code == 200
        # A user's session under the admin cookie's name opens nothing of the dashboard...
        member.cookies["solaris_admin"] = user_token
        for path in ("/admin", "/admin/users", f"/admin/users/{user_id}", "/admin/audit"):
            refused = member.get(path)
            assert refused.status_code == 303 and "/admin/login" in refused.headers["location"]
        token = CSRF_INPUT.search(member.get("/portal").text)
        assert token
        grant = {"tokens": "5", "note": "x", "csrf": token.group(1)}
        assert member.post(f"/admin/users/{user_id}/grant", data=grant).status_code == 403
        # ...nor of the admin API...
        api = member.get("/api/admin/users", headers={"Authorization": f"Bearer {user_token}"})
        assert api.status_code == 401
        # ...and an admin's session opens no portal page.
        admin.cookies["solaris_portal"] = admin_token
        refused = admin.get("/portal")
        assert refused.status_code == 303 and refused.headers["location"] == "/portal/login"


def test_a_used_expired_or_forged_link_is_refused(gateway: Gateway) -> None:
    _user, user_id = new_user(gateway)
    link = portal_link(gateway, user_id)
    expired = portal_link(gateway, user_id, ttl_s=60, now=datetime.now(UTC) - timedelta(hours=1))
    forged = buy_url(
        gateway.url, sign_link(b"another-key-0123456789abcdefghij", user_id, 900, utcnow())
    )
    with Visitor(gateway) as first:
        assert first.portal_sign_in(link).status_code == 303
    for refused_link in (link, expired, forged, gateway.url + "/portal/login?t=garbage"):
        with Visitor(gateway) as visitor:
            refused = visitor.portal_sign_in(refused_link)
            assert refused.status_code == 400
            assert "Este link não vale mais" in refused.text
            assert "solaris_portal" not in visitor.cookies
            assert visitor.get("/portal").headers["location"] == "/portal/login"


def test_session_cookies_are_httponly_samesite_and_secure_over_https(
    gateway: Gateway, web: Gateway
) -> None:
    _user, user_id = new_user(gateway)
    email = create_admin(gateway)
    with Visitor(gateway) as admin, Visitor(gateway) as member:
        admin.admin_sign_in(email)
        member.portal_sign_in(portal_link(gateway, user_id))
        for visitor, name, path in (
            (admin, "solaris_admin", "/admin"),
            (member, "solaris_portal", "/portal"),
        ):
            attributes = {part.strip().lower() for part in visitor.set_cookie[name].split(";")}
            # The public URL of the shared gateways is https (a TLS proxy in front): Secure.
            assert {"httponly", "samesite=lax", f"path={path}", "secure"} <= attributes
    _user, web_user_id = new_user(web)
    with Visitor(web) as plain, Visitor(web) as proxied:
        plain.portal_sign_in(portal_link(web, web_user_id))
        assert "secure" not in plain.set_cookie["solaris_portal"].lower()  # http end to end
        proxied.client.headers["X-Forwarded-Proto"] = "https"
        proxied.portal_sign_in(portal_link(web, web_user_id))
        assert "secure" in proxied.set_cookie["solaris_portal"].lower()


def test_an_attacker_slows_down_but_cannot_lock_an_admin_out(gateway: Gateway) -> None:
    email = create_admin(gateway)
    with Visitor(gateway) as attacker:
        answers = [attacker.admin_sign_in(email, "wrong-password").status_code for _ in range(10)]
        assert answers == [401] * 10
        assert attacker.admin_sign_in(email).status_code == 429  # the attacker's address waits
    with Visitor(gateway) as second:  # the account is under attack: one guess per address
        assert second.admin_sign_in(email, "another-guess").status_code == 401
        refused = second.admin_sign_in(email)
        assert refused.status_code == 429 and "Muitas tentativas" in refused.text
        second_address = second.client.headers["X-Forwarded-For"]
    with Visitor(gateway) as admin:  # the admin, from an address without failures, gets in
        assert admin.admin_sign_in(email).status_code == 303
        notice = FAILED_NOTICE.search(admin.get("/admin").text)
        assert notice and ": 11;" in notice.group(1)  # every failure since the last sign-in
        assert second_address in notice.group(1)  # where the latest came from
        audit = admin.get("/admin/audit").text
        assert "admin.sign_in_failed" in audit and "admin.sign_in" in audit
    with Visitor(gateway) as admin:  # signed in again: nothing new since
        assert admin.admin_sign_in(email).status_code == 303
        assert 'data-testid="failed-sign-ins"' not in admin.get("/admin").text


def test_asking_for_links_to_someones_inbox_never_keeps_them_from_asking(
    web: Gateway, inbox: tuple[int, Inbox]
) -> None:
    user = "web-dana-" + uuid.uuid4().hex[:6]
    address = f"{user}@example.com"
    with web.client(user, **{"X-LibreChat-User-Email": address}) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 402  # created

    def ask(visitor: Visitor) -> httpx.Response:
        return visitor.post(
            "/portal/login", data={"csrf": visitor.csrf("/portal/login"), "email": address}
        )

    with Visitor(web) as attacker, Visitor(web) as owner:
        assert [ask(attacker).status_code for _ in range(10)] == [200] * 10
        assert ask(attacker).status_code == 429  # the asker's address waits
        answer = ask(owner)  # the inbox had its share this minute: the same page, no 429
        assert answer.status_code == 200 and 'data-testid="notice"' in answer.text
    deadline = time.monotonic() + MAIL_WAIT_S
    while len([m for m in inbox[1].messages if m["To"] == address]) < 10:
        assert time.monotonic() < deadline, "the links did not arrive"
        time.sleep(0.05)
    time.sleep(0.5)
    assert len([m for m in inbox[1].messages if m["To"] == address]) == 10  # never more


def test_every_text_the_templates_ask_for_exists_in_both_languages() -> None:
    asked = set()
    for template in TEMPLATES_DIR.rglob("*.html"):
        asked |= set(
            re.findall(r"""\bt\(\s*["']([a-z_]+(?:\.[a-z_]+)+)["']""", template.read_text())
        )
    # Keys the templates build: an entry's kind, a plan's period, a change's flash.
    asked |= {f"kind.{kind}" for kind in ENTRY_KINDS} | {f"done.{done}" for done in DONE}
    asked |= {f"period.{period}" for period in ("monthly", "weekly", "daily")}
    assert len(asked) > 100 and not asked - MESSAGES.keys()
    assert all(pt and en for pt, en in MESSAGES.values())
