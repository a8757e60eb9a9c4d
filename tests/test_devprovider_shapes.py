"""The dev provider's /v1/responses and /v1/messages, read by the official SDKs directly."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from solaris.devprovider import Behaviour
from solaris.metering.estimate_apis import messages_prompt_tokens, responses_prompt_tokens
from tests.test_devprovider import serving


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(Behaviour(reply_tokens=20)) as base:
        yield base


def test_responses_whole_and_streamed(url: str) -> None:
    with openai.OpenAI(api_key="sk-dev", base_url=url + "/v1", max_retries=0) as client:
        whole = client.responses.create(model="gpt-4o-mini", input="Oi", instructions="Seja breve.")
        events = list(client.responses.create(model="gpt-4o-mini", input="Oi", stream=True))
        capped = client.responses.create(model="gpt-4o-mini", input="Oi", max_output_tokens=16)
    prompt = responses_prompt_tokens(
        {"model": "gpt-4o-mini", "input": "Oi", "instructions": "Seja breve."}
    )
    assert whole.usage is not None and whole.usage.input_tokens == prompt
    assert whole.usage.output_tokens == 20 and whole.status == "completed"
    assert whole.output_text.startswith("This is a deterministic reply")
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == completed.response.usage.output_tokens == 20
    assert capped.status == "incomplete" and capped.incomplete_details is not None
    assert capped.incomplete_details.reason == "max_output_tokens"


def test_messages_whole_and_streamed_with_cache_tokens(url: str) -> None:
    extra = {"dev_provider": {"cache_write_tokens": 4, "cache_read_tokens": 9}}
    with anthropic.Anthropic(api_key="sk-dev", base_url=url, max_retries=0) as client:
        whole = client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "Oi"}],
            extra_body=extra,
        )
        with client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "Oi"}],
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    prompt = messages_prompt_tokens(
        {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Oi"}]}
    )
    assert whole.usage.input_tokens == prompt and whole.usage.output_tokens == 20
    assert (whole.usage.cache_creation_input_tokens, whole.usage.cache_read_input_tokens) == (4, 9)
    assert whole.stop_reason == "end_turn"
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 10
    assert text.startswith("This is")
