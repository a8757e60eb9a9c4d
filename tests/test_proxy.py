"""The metered proxy as a client sees it, through the official openai SDK and raw HTTP.

Runs against the embedded default (SQLite) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from solaris.metering.estimate import chat_prompt_tokens
from tests.conftest import SERVICE_KEY, Gateway

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Olá! Quanto é 2 + 2?"},
]
PROMPT_TOKENS = chat_prompt_tokens({"model": "gpt-4o-mini", "messages": list(MESSAGES)})


def sdk(gateway: Gateway, user: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=gateway.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
        max_retries=0,
    )


def provider_requests(provider: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = httpx.get(
        provider.removesuffix("/v1") + "/_dev/requests"
    ).json()
    return records


def test_non_streamed_answer_is_charged_what_the_provider_reported(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 10_000)
    answer = sdk(gateway, user).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.prompt_tokens == PROMPT_TOKENS
    [row] = gateway.usage_rows(user)
    assert row["prompt_tokens"] == answer.usage.prompt_tokens
    assert row["completion_tokens"] == answer.usage.completion_tokens
    assert row["billable"] == answer.usage.total_tokens
    assert row["estimated"] is False and row["status"] == "ok"
    shown = gateway.user_row(user)
    assert shown["balance"] == 10_000 - answer.usage.total_tokens
    assert shown["held"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_usage_without_completion_tokens_is_counted_and_marked_estimated(
    gateway: Gateway, user: str, stream: bool
) -> None:
    """Unknown is not zero: the reply is counted offline and the row says so."""
    gateway.fund(user, 10_000)
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": stream,
        "dev_provider": {"omit_completion_tokens": True, "reply_tokens": 12},
    }
    with gateway.client(user) as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200
    [row] = gateway.usage_rows(user)
    assert row["prompt_tokens"] == PROMPT_TOKENS, "what the provider reported is kept"
    assert row["completion_tokens"] == 12 and row["estimated"] is True
    assert row["billable"] == PROMPT_TOKENS + 12


def test_streamed_answer_hides_the_usage_chunk_it_asked_for(
    gateway: Gateway, user: str, provider: str
) -> None:
    gateway.fund(user, 10_000)
    chunks = list(
        sdk(gateway, user).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            user=user,
            extra_body={"unknown_field": {"kept": True}},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.usage is None for c in chunks), "client did not ask for usage"
    forwarded = [r for r in provider_requests(provider) if (r["body"] or {}).get("user") == user]
    assert forwarded[-1]["body"]["stream_options"] == {"include_usage": True}
    assert forwarded[-1]["body"]["unknown_field"] == {"kept": True}
    assert forwarded[-1]["headers"]["authorization"] == "Bearer sk-upstream-test"
    [row] = gateway.usage_rows(user)
    assert row["prompt_tokens"] == PROMPT_TOKENS and row["estimated"] is False
    assert gateway.user_row(user)["balance"] == 10_000 - row["billable"]


def test_streamed_answer_keeps_usage_for_clients_that_ask(gateway: Gateway, user: str) -> None:
    gateway.fund(user, 10_000)
    chunks = list(
        sdk(gateway, user).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1
    [row] = gateway.usage_rows(user)
    assert row["billable"] == usages[0].total_tokens


def test_completions_and_embeddings_are_metered(gateway: Gateway, user: str) -> None:
    gateway.fund(user, 10_000)
    client = sdk(gateway, user)
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hi", user=user
    )
    embedding = client.embeddings.create(
        model="text-embedding-3-small", input=["um", "dois"], user=user
    )
    rows = {row["endpoint"]: row for row in gateway.usage_rows(user)}
    assert completion.usage is not None and embedding.usage is not None
    assert rows["completions"]["billable"] == completion.usage.total_tokens
    assert rows["embeddings"]["billable"] == embedding.usage.total_tokens
    assert rows["embeddings"]["completion_tokens"] == 0


def test_identity_from_b64_header_and_body_user(gateway: Gateway) -> None:
    external = "usuário-ção-" + base64.b16encode(__import__("os").urandom(3)).decode()
    encoded = "b64:" + base64.b64encode(external.encode()).decode()
    gateway.fund(external, 1_000)
    with gateway.client() as http:
        by_header = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"X-LibreChat-User-Id": encoded},
        )
        assert by_header.status_code == 200, by_header.text
        # An unresolved placeholder arrives empty: the body's `user` names the user instead.
        by_body = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "user": external},
            headers={"X-LibreChat-User-Id": ""},
        )
        assert by_body.status_code == 200, by_body.text
    assert len(gateway.usage_rows(external)) == 2


def test_requests_without_a_user_or_a_valid_key_are_refused(gateway: Gateway) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    with gateway.client() as http:
        nobody = http.post("/v1/chat/completions", json=body, headers={"X-LibreChat-User-Id": ""})
        assert nobody.status_code == 400
        assert "X-LibreChat-User-Id" in nobody.json()["error"]["message"]
    wrong = httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}
    )
    missing = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    for response in (wrong, missing):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_per_user_api_key(gateway: Gateway, user: str) -> None:
    gateway.fund(user, 5_000)
    key = gateway.cli("keys", "create", user).strip()
    client = openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.usage is not None
    assert gateway.usage_rows(user)[0]["billable"] == answer.usage.total_tokens
    assert client.models.list().data


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (json.dumps({"messages": MESSAGES}).encode(), {}, 400),
        (json.dumps({"model": "gpt-4o-mini", "messages": "hi"}).encode(), {}, 400),
        (
            json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": "yes"}).encode(),
            {},
            400,
        ),
        (b"[1, 2]", {}, 400),
        (b"model=gpt-4o-mini", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        (b"x" * (20 * 1024 * 1024), {}, 413),
    ],
    ids=["malformed", "no-model", "messages-str", "stream-str", "array", "form", "20MB"],
)
def test_bad_input_gets_an_openai_error_and_costs_nothing(
    gateway: Gateway, user: str, content: bytes, headers: dict[str, str], status: int
) -> None:
    gateway.fund(user, 1_000)
    with gateway.client(user) as http:
        response = http.post(
            "/v1/chat/completions",
            content=content,
            headers={"Content-Type": "application/json", **headers},
        )
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error"
        still = http.post(
            "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}
        )
        assert still.status_code == 200
    rows = gateway.usage_rows(user)
    assert len(rows) == 1
    assert gateway.user_row(user)["balance"] == 1_000 - rows[0]["billable"]


def test_litellm_style_stream_is_charged_exactly(gateway: Gateway, user: str) -> None:
    """LiteLLM puts the usage on a final chunk that still has `choices: [{"delta": {}}]`."""
    gateway.fund(user, 10_000)
    chunks = list(
        sdk(gateway, user).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_body={"dev_provider": {"usage_style": "litellm", "reply_tokens": 30}},
        )
    )
    assert all(c.usage is None for c in chunks)
    [row] = gateway.usage_rows(user)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, 30)
    assert row["estimated"] is False


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json()["status"] == "ok"
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"] == checks["upstream"] == "ok"
    assert checks["redis"] in ("ok", "not configured")
