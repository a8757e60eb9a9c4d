"""Issue 14's acceptance in Chromium: a LibreChat user whose balance ran out follows the block
reply's link, buys one pack by card (the Stripe fake's hosted checkout) and one by Pix (the
Mercado Pago fake, approved through its control API while the page waits), sees the balance
grow by exactly the two packs, and the next chat through LibreChat's npm client stack is served.

One gateway of its own (SQLite, its public URL is itself so every link opens in the browser),
both fakes in one `solaris dev-payments` process. The card form redirects to the fake's hosted
page, which the purchase page's Content-Security-Policy must allow (`form-action`). Screenshots of the purchase, Pix and success
pages at a laptop's and a phone's size go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select

from solaris.store.database import open_database
from solaris.store.schema import ledger_entries, orders
from tests.conftest import SERVICE_KEY, Database, Gateway, start_gateway
from tests.devpayments import fake_server
from tests.librechat import ensure_installed, run_librechat
from tests.servers import free_port
from tests.test_purchases import control, pix_payment, shop_env
from tests.test_web import (
    browser,
    in_thread,
    pt_tokens,
    screenshots,
)

__all__ = ["browser"]  # the Chromium fixture of tests/test_web.py

pytestmark = pytest.mark.npm

PACKS: list[dict[str, Any]] = [
    {"name": "Básico", "tokens": 500_000, "price_cents": 2500},
    {"name": "Pro", "tokens": 2_000_000, "price_cents": 9000, "popular": True},
    {"name": "Equipe", "tokens": 10_000_000, "price_cents": 40000, "expires_in_days": 365},
]
TOKENS = {str(pack["name"]): int(pack["tokens"]) for pack in PACKS}
ORDER_URL = re.compile(r".*/portal/orders/(ord_[0-9a-f]{32})(\?.*)?$")
CHAT_URL = "https://librechat.example.com"  # where the paid order's page leads back to
PAID_WAIT_MS = 30_000  # the order page refreshes every 3 s; a webhook on a busy machine


@pytest.fixture(scope="module")
def store(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    """A gateway selling packs by card and by Pix, and the fakes it pays through (their address)."""
    ensure_installed()
    tmp = tmp_path_factory.mktemp("store")
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/payments/stripe/webhook"
    notices = f"http://127.0.0.1:{port}/payments/mercadopago/webhook"
    backend = Database(f"sqlite:///{tmp}/store.db", None)
    with fake_server(webhook, notices, tmp / "payments.log") as fake:
        env = shop_env(tmp, provider, backend, port, fake)
        env.update(
            SOLARIS_LANGUAGE="pt-BR",
            SOLARIS_CREDIT_PACKS=orjson.dumps(PACKS).decode(),
            SOLARIS_CHAT_URL=CHAT_URL,
        )
        for gateway in start_gateway(env, tmp):
            yield gateway, fake


def librechat_chat(gateway: Gateway, user: str) -> dict[str, Any]:
    """One streamed chat the way LibreChat sends it (its npm client stack, its user headers)."""
    return run_librechat(
        {
            "baseURL": gateway.url + "/v1",
            "apiKey": SERVICE_KEY,
            "model": "gpt-4o-mini",
            "userId": user,
            "userEmail": f"{user}@example.com",
            "conversationId": str(uuid.uuid4()),
            "messages": [{"role": "user", "content": "Qual é a capital do Brasil?"}],
            "mode": "chat",
        }
    )


def portal_errors(page: Page, fake: str) -> list[str]:
    """What the portal's pages log as errors (a CSP violation, a script that failed); the fake
    checkout page's own (it has no favicon) are not ours."""
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.location["url"].startswith(fake):
            errors.append(f"{message.location['url']}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def still_screenshots(page: Page, name: str) -> None:
    """`screenshots` of a page that reloads itself (a pending order's refresh): taken right after
    a reload, and again if the next one came while they were taken."""
    for _attempt in range(5):
        with page.expect_navigation(wait_until="load"):
            pass  # the page's own next reload, a few seconds away at most
        try:
            origin = page.evaluate("performance.timeOrigin")
            screenshots(page, name)
            if page.evaluate("performance.timeOrigin") == origin:
                return
        except PlaywrightError:  # the page went away under the screenshot
            continue
    raise AssertionError(f"{name}: the page reloaded under every screenshot")


def pack(page: Page, name: str) -> Locator:
    """The purchase page's card of the pack called `name`."""
    title = page.locator(".name", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator("[data-testid=pack]").filter(has=title)


def shown(tokens: int) -> str:
    """The portal's balance badge on the purchase and order pages."""
    return f"Seu saldo agora: {pt_tokens(tokens)} tokens"


def wait_paid(page: Page) -> None:
    """The order page reloads itself until the provider's event has converged the order."""
    page.wait_for_selector("[data-testid=order][data-status=paid]", timeout=PAID_WAIT_MS)


def purchases_of(gateway: Gateway, user_id: int) -> tuple[list[tuple[int, str]], list[Any]]:
    """The user's purchase entries in the ledger (amount, idempotency key) and orders."""

    async def job() -> tuple[list[tuple[int, str]], list[Any]]:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            async with database.transaction() as conn:
                entries = await conn.execute(
                    select(ledger_entries.c.amount, ledger_entries.c.idempotency_key)
                    .where(ledger_entries.c.user_id == user_id)
                    .where(ledger_entries.c.kind == "purchase")
                    .order_by(ledger_entries.c.id)
                )
                bought = await conn.execute(
                    select(orders).where(orders.c.user_id == user_id).order_by(orders.c.id)
                )
                return [(int(a), str(k)) for a, k in entries], list(bought)
        finally:
            await database.close()

    return in_thread(lambda: asyncio.run(job()))


def test_a_blocked_librechat_user_buys_by_card_and_pix_and_chats_again(
    store: tuple[Gateway, str], browser: Browser
) -> None:
    gateway, fake = store
    user = "lc-buyer-" + uuid.uuid4().hex[:8]
    blocked = librechat_chat(gateway, user)  # a new user: nothing to chat with
    assert blocked["ok"], blocked
    assert "Seu saldo de tokens acabou" in blocked["content"]
    link = blocked["content"].split("](", 1)[1].split(")", 1)[0]
    assert link.startswith(gateway.url + "/portal/buy?t="), link
    row = in_thread(lambda: gateway.user_row(user))
    before = int(row["balance"])
    assert before <= 0 and in_thread(lambda: gateway.usage_rows(user)) == []

    context = browser.new_context(locale="pt-BR", viewport={"width": 1366, "height": 768})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors = portal_errors(page, fake)
    page.goto(link)  # the link signs the user in to the portal's purchase page
    assert page.url == gateway.url + "/portal/buy"
    assert page.locator("h1").inner_text() == "Comprar créditos"
    prices = page.locator("[data-testid=price]").all_inner_texts()
    assert [price.replace("\xa0", " ") for price in prices] == ["R$ 25,00", "R$ 90,00", "R$ 400,00"]
    screenshots(page, "purchase-buy")

    # By card: Stripe's hosted checkout page, then back to the order page, which waits.
    pack(page, "Básico").locator("[data-testid=pay-card]").click()
    page.wait_for_url(re.compile(re.escape(fake) + r"/c/pay/cs_"))
    assert "BRL 25.00" in page.content()  # the fake's hosted page: the order's amount
    page.click("#pay")
    page.wait_for_url(ORDER_URL)
    card_order = ORDER_URL.match(page.url).group(1)  # type: ignore[union-attr]
    wait_paid(page)
    assert "500.000 tokens foram somados" in page.locator("[data-testid=order]").inner_text()
    after_card = before + TOKENS["Básico"]
    assert page.locator("[data-testid=balance]").inner_text() == shown(after_card)
    back = page.locator("[data-testid=back-to-chat]")
    assert back.is_visible() and back.get_attribute("href") == CHAT_URL
    screenshots(page, "purchase-paid")

    # By Pix: the QR code and the copy-and-paste code; the page updates itself once approved.
    page.click("nav >> text=Comprar")
    pack(page, "Pro").locator("[data-testid=pay-pix]").click()
    page.wait_for_url(ORDER_URL)
    pix_order = ORDER_URL.match(page.url).group(1)  # type: ignore[union-attr]
    assert page.locator("[data-testid=order]").get_attribute("data-status") == "pending"
    assert page.locator("[data-testid=balance]").inner_text() == shown(after_card)
    qr = page.locator("[data-testid=pix-qr]")
    assert qr.is_visible()
    assert qr.evaluate("image => image.complete && image.naturalWidth > 0"), "the QR image loads"
    code = page.locator("[data-testid=pix-code]").input_value()
    assert code.startswith("000201")
    copy = page.locator("[data-testid=pix-copy]")
    copy.click()  # what a phone user does: copy the code, paste it in the bank's app
    expect(copy).to_have_text("Código copiado")  # once the clipboard took it
    assert page.evaluate("navigator.clipboard.readText()") == code
    still_screenshots(page, "purchase-pix")
    payment = pix_payment(fake, pix_order)
    control(fake, f"/mercadopago/payments/{payment}/approve")
    wait_paid(page)  # no click: the page found out by itself
    total = before + TOKENS["Básico"] + TOKENS["Pro"]
    assert page.locator("[data-testid=balance]").inner_text() == shown(total)
    assert "2.000.000 tokens foram somados" in page.locator("[data-testid=order]").inner_text()
    page.click("nav >> text=Pedidos")
    listed = page.locator("[data-testid=orders]").inner_text()
    assert listed.count("Pago") == 2, listed
    page.click("nav >> text=Início")
    assert page.locator("[data-testid=balance]").inner_text() == pt_tokens(total)
    assert errors == []
    context.close()

    # The ledger agrees: one purchase entry per order, of exactly its pack's tokens.
    assert in_thread(lambda: gateway.user_row(user))["balance"] == total
    entries, bought = purchases_of(gateway, int(row["id"]))
    assert entries == [
        (TOKENS["Básico"], f"order:{card_order}"),
        (TOKENS["Pro"], f"order:{pix_order}"),
    ]
    assert [(o.public_id, o.provider, o.status) for o in bought] == [
        (card_order, "stripe", "paid"),
        (pix_order, "mercadopago", "paid"),
    ]

    served = librechat_chat(gateway, user)  # and LibreChat's next chat is served
    assert served["ok"], served
    assert served["content"] and "Seu saldo de tokens acabou" not in served["content"]
    [usage] = in_thread(lambda: gateway.usage_rows(user))
    assert in_thread(lambda: gateway.user_row(user))["balance"] == total - usage["billable"]
    assert "ledger verified" in gateway.cli("ledger", "verify")
