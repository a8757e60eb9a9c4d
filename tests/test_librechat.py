"""End to end with LibreChat's own client stacks: @langchain/openai on the openai npm SDK,
configured as LibreChat configures a custom endpoint with the user headers, and
@langchain/anthropic on @anthropic-ai/sdk, as its native Anthropic endpoint behind
ANTHROPIC_REVERSE_PROXY.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from solaris.links import verify_link
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway
from tests.librechat import ensure_installed, run_librechat
from tests.test_proxy import provider_requests

pytestmark = pytest.mark.npm

SECRET = b"test-secret-key-0123456789abcdef"
# librechat.yaml's `endpoints.anthropic.headers` (LibreChat v0.8.7+), as the README shows it.
ANTHROPIC_HEADERS = {
    "X-LibreChat-User-Id": "{{LIBRECHAT_USER_ID}}",
    "X-LibreChat-Conversation-Id": "{{LIBRECHAT_BODY_CONVERSATIONID}}",
}


@pytest.fixture(scope="session", autouse=True)
def librechat_client() -> None:
    ensure_installed()


@pytest.fixture(scope="module")
def english_gateway(
    backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("english")
    yield from start_gateway(gateway_env(tmp, provider, backend, SOLARIS_LANGUAGE="en"), tmp)


def job(gateway: Gateway, user: str, mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "baseURL": gateway.url + "/v1",
        "apiKey": SERVICE_KEY,
        "model": "gpt-4o-mini",
        "userId": user,
        "userEmail": "łukasz@exemplo.com.br",
        "conversationId": str(uuid.uuid4()),
        "messages": [{"role": "user", "content": "Qual é a capital do Brasil?"}],
        "mode": mode,
        **extra,
    }


def anthropic_job(gateway: Gateway, user: str, mode: str, **extra: Any) -> dict[str, Any]:
    """LibreChat's Anthropic endpoint: ANTHROPIC_REVERSE_PROXY is the gateway's root."""
    fields = {"baseURL": gateway.url, "model": "claude-sonnet-4-5", "maxTokens": 1024, **extra}
    return job(gateway, user, mode, provider="anthropic", **fields)


def test_librechat_chat_and_title_are_served_and_charged(gateway: Gateway, user: str) -> None:
    gateway.fund(user, 10_000)
    chat = run_librechat(job(gateway, user, "chat"))
    assert chat["ok"], chat
    assert chat["content"] and chat["textChunks"] > 1
    title = run_librechat(job(gateway, user, "title"))
    assert title["ok"], title
    assert title["content"]
    rows = gateway.usage_rows(user)
    assert len(rows) == 2
    assert all(not row["estimated"] and row["conversation_id"] for row in rows)
    assert gateway.user_row(user)["balance"] == 10_000 - sum(row["billable"] for row in rows)


def test_librechat_user_without_balance_sees_a_buy_link_and_titles_get_402(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 1)
    chat = run_librechat(job(gateway, user, "chat"))
    assert chat["ok"], chat
    content: str = chat["content"]
    assert "Seu saldo de tokens acabou" in content
    url = urlparse(content.split("](", 1)[1].split(")", 1)[0])
    assert url.scheme == "https" and url.netloc == "chat.example.com"
    assert url.path == "/portal/buy"
    assert verify_link(SECRET, parse_qs(url.query)["t"][0]).user_id == gateway.user_row(user)["id"]

    title = run_librechat(job(gateway, user, "title", titleFallback=False))
    assert not title["ok"]
    assert title["status"] == 402
    assert "Saldo de tokens insuficiente" in title["message"]
    assert gateway.usage_rows(user) == []


def test_librechat_shows_the_notice_of_the_reply_that_crossed_80_percent(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 36)  # one answer (about 31 tokens) crosses 80% of it
    chat = run_librechat(job(gateway, user, "chat"))
    assert chat["ok"], chat
    left = gateway.user_row(user)["balance"]
    notice = f"\n\n⚠️ Você já usou 80% dos seus tokens deste período (restam {left})."
    assert chat["content"].endswith(notice), chat["content"]


def test_librechat_with_the_responses_api_is_served_charged_and_blocked(
    gateway: Gateway, user: str
) -> None:
    """The chat's "Use Responses API" switch: @langchain/openai sends POST /v1/responses."""
    gateway.fund(user, 10_000)
    chat = run_librechat(job(gateway, user, "chat", useResponsesApi=True))
    assert chat["ok"], chat
    assert chat["content"].startswith("This is a deterministic reply")
    title = run_librechat(job(gateway, user, "title", useResponsesApi=True))
    assert title["ok"], title
    rows = gateway.usage_rows(user)
    assert [row["endpoint"] for row in rows] == ["responses", "responses"]
    assert all(not row["estimated"] for row in rows)
    assert chat["usage"]["input_tokens"] == rows[0]["prompt_tokens"]
    assert gateway.user_row(user)["balance"] == 10_000 - sum(row["billable"] for row in rows)

    broke = "broke-" + user
    gateway.fund(broke, 1)
    blocked = run_librechat(job(gateway, broke, "chat", useResponsesApi=True))
    assert blocked["ok"], blocked
    assert "Seu saldo de tokens acabou" in blocked["content"]
    assert "https://chat.example.com/portal/buy?t=" in blocked["content"]
    assert gateway.usage_rows(broke) == []


def test_librechat_anthropic_endpoint_is_charged_what_the_provider_reported(
    gateway: Gateway, user: str, provider: str
) -> None:
    """No headers block (LibreChat before v0.8.7): the user is only `metadata.user_id`."""
    gateway.fund(user, 10_000)
    chat = run_librechat(anthropic_job(gateway, user, "chat"))
    assert chat["ok"], chat
    assert chat["content"].startswith("This is a deterministic reply")
    assert chat["textChunks"] > 1
    title = run_librechat(anthropic_job(gateway, user, "title"))
    assert title["ok"], title
    assert title["content"].startswith("This is a deterministic reply")
    rows = gateway.usage_rows(user)
    assert [row["endpoint"] for row in rows] == ["messages", "messages"]
    assert all(not row["estimated"] and row["status"] == "ok" for row in rows)
    # The title's usage is the provider's whole-message report; the stream's, as LangChain
    # 1.5.2 sums it, adds message_start's running output count (1) to message_delta's total.
    assert (title["usage"]["input_tokens"], title["usage"]["output_tokens"]) == (
        rows[1]["prompt_tokens"],
        rows[1]["completion_tokens"],
    )
    assert (chat["usage"]["input_tokens"], chat["usage"]["output_tokens"] - 1) == (
        rows[0]["prompt_tokens"],
        rows[0]["completion_tokens"],
    )
    assert gateway.user_row(user)["balance"] == 10_000 - sum(row["billable"] for row in rows)
    forwarded = [
        r
        for r in provider_requests(provider)
        if ((r["body"] or {}).get("metadata") or {}).get("user_id") == user
    ]
    assert [r["path"] for r in forwarded] == ["/v1/messages", "/v1/messages"]
    assert [r["body"].get("stream") for r in forwarded] == [True, False]
    assert forwarded[0]["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    # LibreChat's default reasoning, cut to 90% of the user's 1024 max_tokens.
    assert forwarded[0]["body"]["thinking"] == {"type": "enabled", "budget_tokens": 921}


def test_librechat_anthropic_user_without_balance_sees_the_buy_link(
    gateway: Gateway, user: str
) -> None:
    """With the endpoint's headers block (v0.8.7+): the header names the user."""
    gateway.fund(user, 1)
    chat = run_librechat(anthropic_job(gateway, user, "chat", headers=ANTHROPIC_HEADERS))
    assert chat["ok"], chat
    content: str = chat["content"]
    assert content.startswith("⚠️ **Seu saldo de tokens acabou.**"), content
    url = urlparse(content.split("](", 1)[1].split(")", 1)[0])
    assert (url.netloc, url.path) == ("chat.example.com", "/portal/buy")
    assert verify_link(SECRET, parse_qs(url.query)["t"][0]).user_id == gateway.user_row(user)["id"]
    assert gateway.usage_rows(user) == []


@pytest.mark.parametrize("shape", ["responses", "anthropic"])
def test_librechat_shows_the_80_percent_notice_on_the_newer_shapes(
    gateway: Gateway, user: str, shape: str
) -> None:
    """The notice travels as the shape's own item or block; LangChain streams it as text."""
    gateway.fund(user, 36)  # one answer (about 30 tokens) crosses 80% of it
    if shape == "responses":
        chat = run_librechat(job(gateway, user, "chat", useResponsesApi=True))
    else:
        chat = run_librechat(anthropic_job(gateway, user, "chat"))
    assert chat["ok"], chat
    left = gateway.user_row(user)["balance"]
    notice = f"\n\n⚠️ Você já usou 80% dos seus tokens deste período (restam {left})."
    assert chat["content"].startswith("This is a deterministic reply")
    assert chat["content"].endswith(notice), chat["content"]
    [row] = gateway.usage_rows(user)
    assert row["status"] == "ok" and not row["estimated"]


@pytest.mark.parametrize("language", ["pt-BR", "en"])
def test_librechat_shows_which_limit_was_reached_and_when_it_reopens(
    request: pytest.FixtureRequest, gateway: Gateway, user: str, language: str
) -> None:
    """A cap of the user's own (as a window would): the second chat reads as an assistant
    message naming the limit and its local reopening time; the title call gets a 402 that reads
    on its own."""
    served = gateway if language == "pt-BR" else request.getfixturevalue("english_gateway")
    served.fund(user, 10_000)
    served.cli("users", "limit", user, "--day", "40")
    assert run_librechat(job(served, user, "chat"))["ok"]
    chat = run_librechat(job(served, user, "chat"))
    assert chat["ok"], chat
    wanted = {
        "pt-BR": ("⏳ Você atingiu o limite diário que definiu para si (40 tokens por dia).",
                  "Ele reabre em", "às 00:00 (UTC-03:00)."),
        "en": ("⏳ You have reached the daily limit you set yourself (40 tokens a day).",
               "It reopens on", ", 00:00 (UTC-03:00)."),
    }[language]  # fmt: skip
    assert all(part in chat["content"] for part in wanted), chat["content"]
    assert "/portal/limit" in chat["content"]
    title = run_librechat(job(served, user, "title", titleFallback=False))
    assert not title["ok"] and title["status"] == 402
    assert wanted[0].removeprefix("⏳ ") in title["message"]
    assert len(served.usage_rows(user)) == 1
