"""The real LiteLLM proxy as the upstream: gateway → LiteLLM → dev provider.

LiteLLM (PyPI `litellm[proxy]`, pinned in the Makefile) runs from its own virtualenv in
`.tools/litellm` (`make litellm`, part of `make install`), with two models, `gpt-4o-mini` and
`text-embedding-3-small`, routed to `openai/…` at the dev provider, no database and a master key.
Under CI=true a missing install fails the module; elsewhere it is skipped.

LiteLLM rewrites streams: it answers every stream with its own chunks and sends the usage in a
final chunk that carries `choices: [{"index": 0, "delta": {}}]`, not OpenAI's `choices: []`.
What these tests check is what a user would notice: they are charged exactly the usage the
provider reported to LiteLLM, streamed or not, and they see no usage chunk they did not ask for.

LiteLLM forwards a Responses call for an `openai/` model to the provider's /v1/responses and
serves /v1/messages by translating it to a chat completion; either way the test finds the request
LiteLLM sent the provider (by a marker in the prompt), sends it again unstreamed (the dev
provider is deterministic) and compares the provider's own report with the usage row. One
LiteLLM serves every test here: it takes some ten CPU-seconds to start.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from solaris.cli.processes import Child, running, start
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway
from tests.servers import free_port
from tests.test_pricing import (
    HOSTED_TOOL_CALLS_MAX,
    MODELS,
    OPENAI_MODEL,
    WEB_SEARCH,
    WEB_SEARCH_PRICE,
    post,
)

LITELLM_BIN = Path(__file__).resolve().parent.parent / ".tools" / "litellm" / "bin" / "litellm"
LITELLM_CPU_S_MAX = 150.0  # CPU-seconds to become live; LiteLLM uses ~30 here (a gateway ~3)
MASTER_KEY = "sk-litellm-test-master-key"
FUNDS = 50_000
# Settings of ours LiteLLM would pick up from the environment: a database, provider keys.
_AMBIENT = ("DATABASE_URL", "DIRECT_URL", "LITELLM_", "OPENAI_", "ANTHROPIC_", "AZURE_")


def _litellm_config(provider: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": provider,
                    "api_key": "sk-dev-provider",
                },
            },
            {
                "model_name": "text-embedding-3-small",
                "litellm_params": {
                    "model": "openai/text-embedding-3-small",
                    "api_base": provider,
                    "api_key": "sk-dev-provider",
                },
            },
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


@contextmanager
def run_litellm(config: Path, port: int, log_path: Path) -> Iterator[Child]:
    """The LiteLLM proxy on 127.0.0.1:`port` until the block ends (like `spawn` for solaris)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT)}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch the price list: no network here
    argv = [str(LITELLM_BIN), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/health/liveliness"
    child = start("LiteLLM proxy", argv, log_path, url, env=env, ready_cpu_s_max=LITELLM_CPU_S_MAX)
    with running(child):
        yield child


@pytest.fixture(scope="module")
def litellm(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The LiteLLM proxy in front of the dev provider; yields its OpenAI base URL."""
    if not LITELLM_BIN.exists():
        message = f"{LITELLM_BIN} is missing: run `make litellm`"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("litellm")
    config = tmp / "config.yaml"
    config.write_text(json.dumps(_litellm_config(provider), indent=2))  # JSON is YAML
    port = free_port()
    with run_litellm(config, port, tmp / "litellm.log"):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def metered(
    backend: Database, litellm: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose upstream is the LiteLLM proxy, keyed with LiteLLM's master key."""
    tmp = tmp_path_factory.mktemp("litellm-gateway")
    env = gateway_env(tmp, litellm, backend, SOLARIS_UPSTREAM_API_KEY=MASTER_KEY)
    yield from start_gateway(env, tmp)


def _question(marker: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": "Você é um assistente conciso."},
        {"role": "user", "content": f"Resuma a história do Brasil em uma frase. ({marker})"},
    ]


def _provider_report(provider: str, marker: str) -> tuple[int, int]:
    """(prompt, completion) the dev provider reported for the request LiteLLM sent it (found by
    `marker`). The recorded body is sent to the provider again, unstreamed: its reply and count
    are deterministic, so this is exactly the usage it reported to LiteLLM the first time.
    """
    recorded = httpx.get(provider.removesuffix("/v1") + "/_dev/requests", timeout=10).json()
    found = [entry for entry in recorded if marker in json.dumps(entry["body"])]
    assert len(found) == 1, f"LiteLLM should have called the provider once, not {len(found)}"
    path: str = found[0]["path"]
    body: dict[str, Any] = {
        k: v for k, v in found[0]["body"].items() if k not in ("stream", "stream_options")
    }
    answer = httpx.post(provider.removesuffix("/v1") + path, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    if path == "/v1/responses":
        return usage["input_tokens"], usage["output_tokens"]
    return usage["prompt_tokens"], usage["completion_tokens"]


def _assert_charged(gateway: Gateway, user: str, endpoint: str, report: tuple[int, int]) -> None:
    """One exact (not estimated) usage row with the provider's numbers, and the balance to match."""
    [row] = gateway.usage_rows(user)
    assert row["endpoint"] == endpoint and row["estimated"] is False
    assert (row["prompt_tokens"], row["completion_tokens"]) == report
    assert row["billable"] == sum(report)
    shown = gateway.user_row(user)
    assert (shown["balance"], shown["held"]) == (FUNDS - row["billable"], 0)


def _openai(gateway: Gateway, user: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=gateway.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
        max_retries=0,
    )


def test_a_non_streamed_chat_is_charged_what_the_provider_reported(
    metered: Gateway, provider: str, user: str
) -> None:
    metered.fund(user, FUNDS)
    marker = uuid.uuid4().hex
    answer = _openai(metered, user).chat.completions.create(
        model="gpt-4o-mini",
        messages=_question(marker),
        max_tokens=12,
    )
    report = _provider_report(provider, marker)
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == report
    _assert_charged(metered, user, "chat", report)


@pytest.mark.parametrize("client_asks_usage", [False, True], ids=["librechat", "usage"])
def test_a_streamed_chat_is_charged_what_the_provider_reported(
    metered: Gateway, provider: str, user: str, client_asks_usage: bool
) -> None:
    """LibreChat streams without asking for usage; the gateway asks LiteLLM for it anyway."""
    metered.fund(user, FUNDS)
    marker = uuid.uuid4().hex
    stream = _openai(metered, user).chat.completions.create(
        model="gpt-4o-mini",
        messages=_question(marker),
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True} if client_asks_usage else openai.omit,
    )
    chunks = list(stream)
    report = _provider_report(provider, marker)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text, "the reply streams through to the client"
    usages = [c.usage for c in chunks if c.usage is not None]
    if client_asks_usage:
        assert len(usages) == 1
        assert (usages[0].prompt_tokens, usages[0].completion_tokens) == report
    else:
        assert usages == [], "a client that did not ask for usage never sees it"
    _assert_charged(metered, user, "chat", report)


def test_librechat_lists_the_models_litellm_serves(metered: Gateway, user: str) -> None:
    """LibreChat's `models.fetch` asks the gateway, which passes LiteLLM's list through."""
    with metered.client(user) as http:
        response = http.get("/v1/models")
    assert response.status_code == 200
    assert "gpt-4o-mini" in [model["id"] for model in response.json()["data"]]


def test_a_litellm_error_comes_back_and_charges_nothing(metered: Gateway, user: str) -> None:
    """A model LiteLLM does not route is LiteLLM's error, passed back; nothing is charged."""
    metered.fund(user, FUNDS)
    body = {"model": "gpt-4o", "messages": _question(uuid.uuid4().hex), "stream": True}
    with metered.client(user) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["message"]
    assert metered.usage_rows(user) == []
    shown = metered.user_row(user)
    assert (shown["balance"], shown["held"]) == (FUNDS, 0)


def test_the_rag_apis_token_id_embeddings_are_charged_what_the_provider_reported(
    metered: Gateway, user: str, provider: str
) -> None:
    """What LibreChat's RAG API sends (lists of token ids, base64 answers) goes through LiteLLM
    as it is, and the charge is the provider's count."""
    metered.fund(user, FUNDS)
    marker = 1_000 + uuid.uuid4().int % 90_000  # a token id that finds this request again
    chunks = [[9906, 11, 1917, marker], [15339, 1070]]
    result = _openai(metered, user).embeddings.create(
        model="text-embedding-3-small", input=chunks, encoding_format="base64"
    )
    assert [item.index for item in result.data] == [0, 1]
    recorded = httpx.get(provider.removesuffix("/v1") + "/_dev/requests", timeout=10).json()
    [sent] = [
        entry["body"]
        for entry in recorded
        if entry["body"] and entry["body"].get("input") == chunks
    ]
    assert sent["encoding_format"] == "base64"
    [row] = metered.usage_rows(user)
    assert row["endpoint"] == "embeddings" and row["estimated"] is False
    assert row["prompt_tokens"] == result.usage.prompt_tokens == 6
    assert row["billable"] == 6 and metered.user_row(user)["balance"] == FUNDS - 6


def test_responses_through_litellm_are_charged_what_the_provider_reported(
    metered: Gateway, provider: str, user: str
) -> None:
    for stream in (False, True):
        person = f"{user}-{stream}"
        metered.fund(person, FUNDS)
        marker = uuid.uuid4().hex
        with _openai(metered, person) as client:
            prompt = f"Resuma a história do Brasil em uma frase. ({marker})"
            if stream:
                events = list(
                    client.responses.create(
                        model="gpt-4o-mini", input=prompt, max_output_tokens=16, stream=True
                    )
                )
                assert events[-1].type in ("response.completed", "response.incomplete")
            else:
                answer = client.responses.create(
                    model="gpt-4o-mini", input=prompt, max_output_tokens=16
                )
                assert answer.output_text
        _assert_charged(metered, person, "responses", _provider_report(provider, marker))


def test_messages_through_litellm_are_charged_what_the_provider_reported(
    metered: Gateway, provider: str, user: str
) -> None:
    for stream in (False, True):
        person = f"{user}-{stream}"
        metered.fund(person, FUNDS)
        marker = uuid.uuid4().hex
        question = f"Resuma a história do Brasil em uma frase. ({marker})"
        with anthropic.Anthropic(
            api_key=SERVICE_KEY,
            base_url=metered.url,
            default_headers={"X-LibreChat-User-Id": person},
            max_retries=0,
        ) as client:
            if stream:
                with client.messages.stream(
                    model="gpt-4o-mini",
                    max_tokens=16,
                    messages=[{"role": "user", "content": question}],
                ) as events:
                    assert "".join(events.text_stream)
            else:
                answer = client.messages.create(
                    model="gpt-4o-mini",
                    max_tokens=16,
                    messages=[{"role": "user", "content": question}],
                )
                assert answer.content
        _assert_charged(metered, person, "messages", _provider_report(provider, marker))


@pytest.fixture(scope="module")
def priced_via_litellm(
    own_backend: Database, litellm: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """The priced gateway with the real LiteLLM proxy as its upstream (before the dev
    provider)."""
    tmp = tmp_path_factory.mktemp("priced-litellm")
    env = gateway_env(
        tmp,
        litellm,
        own_backend,
        SOLARIS_UPSTREAM_API_KEY=MASTER_KEY,
        SOLARIS_MODELS=json.dumps(MODELS),
        SOLARIS_HOSTED_TOOL_CALLS_MAX=str(HOSTED_TOOL_CALLS_MAX),
    )
    yield from start_gateway(env, tmp)


def test_through_litellm_the_tool_cap_reaches_the_provider_and_its_calls_are_billed(
    priced_via_litellm: Gateway, provider: str, user: str
) -> None:
    """LiteLLM passes `max_tool_calls` and the hosted tool items through on /v1/responses (it
    drops unknown fields, so the dev provider's options travel in LiteLLM's `extra_body`)."""
    gateway = priced_via_litellm
    gateway.fund(user, 100_000)
    marker = uuid.uuid4().hex
    behaviour = {"hosted_tool_calls": ["web_search_call"] * 5, "reply_tokens": 8}
    body = {
        "model": OPENAI_MODEL, "input": f"Busque: SOLARIS ({marker})", "tools": WEB_SEARCH,
        "extra_body": {"dev_provider": behaviour},
    }  # fmt: skip
    answer = post(gateway, user, "/v1/responses", body)
    recorded = httpx.get(provider.removesuffix("/v1") + "/_dev/requests", timeout=10).json()
    [sent] = [entry["body"] for entry in recorded if marker in json.dumps(entry["body"])]
    kinds = [item["type"] for item in answer["output"]]
    assert kinds == ["web_search_call"] * HOSTED_TOOL_CALLS_MAX + ["message"]
    assert sent["max_tool_calls"] == HOSTED_TOOL_CALLS_MAX
    [row] = gateway.usage_rows(user)
    assert row["tool_billable"] == HOSTED_TOOL_CALLS_MAX * WEB_SEARCH_PRICE
    usage = answer["usage"]
    tokens = usage["input_tokens"] * 2 + usage["output_tokens"] * 4
    assert row["billable"] == tokens + row["tool_billable"]
