"""Features LibreChat calls without any user (the RAG API's embeddings, speech, image tools,
moderation): a key bound to an account of its own is billed, limited and reported as that
account; without a binding, the LibreChat key is refused with a message naming the setting.

Runs against the embedded default (SQLite) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from solaris.config import load_settings
from solaris.errors import ConfigError
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway

EMBEDDING = {"model": "text-embedding-3-small", "input": [[9906, 11, 1917], [15339, 1070]]}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oi"}]}


@pytest.fixture(scope="module")
def account() -> str:
    return "platform-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def bound_key() -> str:
    return "sk-rag-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def old_key() -> str:
    return "sk-rag-old-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def bound(
    backend: Database,
    provider: str,
    tmp_path_factory: pytest.TempPathFactory,
    account: str,
    bound_key: str,
    old_key: str,
) -> Iterator[Gateway]:
    """A gateway where `account` has two keys, as in the middle of a rotation."""
    tmp = tmp_path_factory.mktemp("service-accounts")
    bindings = f"{account}:{old_key},{account}:{bound_key}"
    env = gateway_env(tmp, provider, backend, SOLARIS_SERVICE_ACCOUNTS=bindings)
    yield from start_gateway(env, tmp)


def as_service(gateway: Gateway, key: str) -> httpx.Client:
    """What the RAG API (or speech, image tools) sends: a key, and nothing about any user."""
    return httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_a_bound_key_is_billed_to_its_account_and_shows_in_the_report(
    bound: Gateway, account: str, bound_key: str
) -> None:
    bound.fund(account, 1_000)
    with as_service(bound, bound_key) as http:
        response = http.post("/v1/embeddings", json={**EMBEDDING, "encoding_format": "base64"})
    assert response.status_code == 200, response.text
    reported = response.json()["usage"]["prompt_tokens"]
    assert reported == 5
    [row] = bound.usage_rows(account)
    assert row["endpoint"] == "embeddings" and row["billable"] == reported
    assert bound.user_row(account)["balance"] == 1_000 - reported
    report = json.loads(bound.cli("usage", "report", "--by", "user", "--user", account, "--json"))
    assert [(line["key"], line["requests"], line["billable"]) for line in report] == [
        (account, 1, reported)
    ]


def test_a_bound_key_ignores_any_user_the_request_names(
    bound: Gateway, account: str, bound_key: str, user: str
) -> None:
    """The key decides who pays: a caller holding it cannot bill someone else."""
    bound.fund(account, 1_000)
    bound.fund(user, 1_000)
    before = len(bound.usage_rows(account))
    with as_service(bound, bound_key) as http:
        response = http.post(
            "/v1/embeddings",
            json={**EMBEDDING, "user": user},
            headers={"X-LibreChat-User-Id": user},
        )
    assert response.status_code == 200, response.text
    assert len(bound.usage_rows(account)) == before + 1
    assert bound.usage_rows(user) == []
    assert bound.user_row(user)["balance"] == 1_000


def test_both_keys_of_a_rotation_bill_the_one_account(
    bound: Gateway, account: str, bound_key: str, old_key: str
) -> None:
    bound.fund(account, 1_000)
    before = len(bound.usage_rows(account))
    for key in (old_key, bound_key):
        with as_service(bound, key) as http:
            assert http.post("/v1/embeddings", json=EMBEDDING).status_code == 200
    assert len(bound.usage_rows(account)) == before + 2


def test_an_account_without_balance_is_refused_with_a_402_and_charged_nothing(
    backend: Database, provider: str, tmp_path: Path
) -> None:
    account, key = "images-" + uuid.uuid4().hex[:8], "sk-img-" + uuid.uuid4().hex
    env = gateway_env(tmp_path, provider, backend, SOLARIS_SERVICE_ACCOUNTS=f"{account}:{key}")
    for gateway in start_gateway(env, tmp_path):
        with as_service(gateway, key) as http:
            response = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "insufficient_balance"
        assert gateway.usage_rows(account) == []
        assert gateway.user_row(account)["balance"] == 0


def test_a_bound_key_lists_the_models_of_its_accounts_plan(bound: Gateway, bound_key: str) -> None:
    with as_service(bound, bound_key) as http:
        response = http.get("/v1/models")
    assert response.status_code == 200, response.text
    assert {"gpt-4o-mini", "text-embedding-3-small"} <= {m["id"] for m in response.json()["data"]}


def test_the_librechat_key_without_a_user_is_refused_naming_what_to_configure(
    gateway: Gateway, provider: str
) -> None:
    with as_service(gateway, SERVICE_KEY) as http:
        response = http.post("/v1/embeddings", json=EMBEDDING)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == "user"
    assert "SOLARIS_SERVICE_ACCOUNTS" in error["message"]
    assert "X-LibreChat-User-Id" in error["message"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("platform", "expected account:key"),
        ("plat form:sk-1", "SOLARIS_SERVICE_ACCOUNTS_0_ACCOUNT"),
        (":sk-1", "SOLARIS_SERVICE_ACCOUNTS_0_ACCOUNT"),
        ("platform:", "SOLARIS_SERVICE_ACCOUNTS_0_KEY"),
        ("a:sk-1,b:sk-1", "each key is bound once"),
        (f"a:{SERVICE_KEY}", "no LibreChat key"),
    ],
)
def test_a_bad_binding_stops_start_up_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv("SOLARIS_LIBRECHAT_KEYS", SERVICE_KEY)
    monkeypatch.setenv("SOLARIS_SERVICE_ACCOUNTS", value)
    with pytest.raises(ConfigError, match="SOLARIS_") as raised:
        load_settings()
    assert why in str(raised.value) and "sk-1" not in str(raised.value)


def test_bindings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLARIS_SERVICE_ACCOUNTS", "platform:sk-rag-1, speech:sk:with:colons")
    bindings = load_settings().service_accounts
    assert [(b.account, b.key.get_secret_value()) for b in bindings] == [
        ("platform", "sk-rag-1"),
        ("speech", "sk:with:colons"),
    ]
