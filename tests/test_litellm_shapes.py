"""The real LiteLLM proxy in the chain for /v1/responses and /v1/messages:
gateway → LiteLLM → dev provider, charged exactly what the provider reported to LiteLLM.

LiteLLM forwards a Responses call for an `openai/` model to the provider's /v1/responses, and
serves /v1/messages by translating it to a chat completion; either way the test finds the
request LiteLLM sent the provider (by a marker in the prompt), sends it again unstreamed (the
dev provider is deterministic) and compares the provider's own report with the usage row.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import anthropic
import httpx
import openai

from tests.conftest import SERVICE_KEY, Gateway
from tests.test_litellm import FUNDS, litellm, metered

__all__ = ["litellm", "metered"]  # the fixtures, shared with tests/test_litellm.py


def _provider_report(provider: str, marker: str) -> tuple[int, int]:
    """(prompt, completion) the dev provider reported for the one request carrying `marker`."""
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
    [row] = gateway.usage_rows(user)
    assert row["endpoint"] == endpoint and row["estimated"] is False
    assert (row["prompt_tokens"], row["completion_tokens"]) == report
    assert row["billable"] == sum(report)
    assert gateway.user_row(user)["balance"] == FUNDS - row["billable"]


def test_responses_through_litellm_are_charged_what_the_provider_reported(
    metered: Gateway, provider: str, user: str
) -> None:
    for stream in (False, True):
        person = f"{user}-{stream}"
        metered.fund(person, FUNDS)
        marker = uuid.uuid4().hex
        with openai.OpenAI(
            api_key=SERVICE_KEY,
            base_url=metered.url + "/v1",
            default_headers={"X-LibreChat-User-Id": person},
            max_retries=0,
        ) as client:
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
