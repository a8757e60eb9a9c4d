"""Failures, each charged as the design says: nothing lost, nothing doubled."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from solaris.metering.estimate import chat_prompt_tokens
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway, start_process

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Escreva um poema longo."}]
PROMPT = chat_prompt_tokens({"model": "gpt-4o-mini", "messages": MESSAGES})


def chat(stream: bool, max_tokens: int | None = None, **behaviour: Any) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return {**body, "dev_provider": behaviour}


def assert_untouched(gateway: Gateway, user: str, funded: int) -> None:
    assert gateway.usage_rows(user) == []
    assert gateway.user_row(user) | {"id": 0} == {"id": 0, "balance": funded, "held": 0}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_error_is_passed_back_and_charges_nothing(
    gateway: Gateway, user: str, stream: bool
) -> None:
    gateway.fund(user, 5_000)
    with gateway.client(user) as http:
        response = http.post("/v1/chat/completions", json=chat(stream, fail_status=500))
    assert response.status_code == 500
    assert response.json()["error"]["message"]
    assert_untouched(gateway, user, 5_000)


def test_unreachable_upstream_is_a_502(backend: Database, tmp_path: Path, user: str) -> None:
    env = gateway_env(tmp_path, "http://127.0.0.1:9/v1", backend)  # nothing listens on port 9
    for gateway in start_gateway(env, tmp_path):
        gateway.fund(user, 5_000)
        with gateway.client(user) as http:
            response = http.post("/v1/chat/completions", json=chat(False))
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unreachable"
        assert_untouched(gateway, user, 5_000)
        ready = httpx.get(gateway.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["upstream"].startswith("unreachable")
        assert ready.json()["checks"]["database"] == "ok"


@pytest.fixture(scope="module")
def impatient(
    backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway that waits 1 s for the upstream and lets reservations expire after 4 s."""
    tmp = tmp_path_factory.mktemp("impatient")
    env = gateway_env(
        tmp,
        provider,
        backend,
        SOLARIS_UPSTREAM_READ_TIMEOUT_S="1",
        SOLARIS_STREAM_SECONDS_MAX="3",
        SOLARIS_RESERVATION_TIMEOUT_S="4",
    )
    yield from start_gateway(env, tmp)


def test_upstream_timeout_is_a_504_and_charges_nothing(impatient: Gateway, user: str) -> None:
    impatient.fund(user, 5_000)
    with impatient.client(user) as http:
        response = http.post("/v1/chat/completions", json=chat(False, stall_s=3))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert_untouched(impatient, user, 5_000)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_without_usage_is_counted_offline_and_marked_estimated(
    gateway: Gateway, user: str, stream: bool
) -> None:
    gateway.fund(user, 5_000)
    with gateway.client(user) as http:
        response = http.post(
            "/v1/chat/completions", json=chat(stream, omit_usage=True, reply_tokens=40)
        )
    assert response.status_code == 200
    [row] = gateway.usage_rows(user)
    assert row["estimated"] is True
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT, 40)
    assert gateway.user_row(user)["balance"] == 5_000 - PROMPT - 40


def test_client_that_hangs_up_is_charged_for_what_was_generated(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 5_000)
    with (
        gateway.client(user) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=chat(True, reply_tokens=400, chunk_delay_s=0.02)
        ) as response,
    ):
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data:")
            if received == 6:
                break  # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 10
    while not (rows := gateway.usage_rows(user)) and time.monotonic() < deadline:
        time.sleep(0.1)
    [row] = rows
    assert row["status"] == "client_disconnected" and row["estimated"] is True
    assert row["prompt_tokens"] == PROMPT
    assert 4 <= row["completion_tokens"] < 100, "charged for what was generated, not all 400"
    assert gateway.user_row(user) | {"id": 0} == {
        "id": 0,
        "balance": 5_000 - row["billable"],
        "held": 0,
    }


def test_stream_cut_by_the_upstream_is_charged_for_what_arrived(
    gateway: Gateway, user: str
) -> None:
    gateway.fund(user, 5_000)
    client = openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=gateway.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
        max_retries=0,
    )
    with pytest.raises(openai.APIError):
        for _chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            extra_body={"dev_provider": {"reply_tokens": 50, "cut_after_chunks": 6}},
        ):
            pass
    [row] = gateway.usage_rows(user)
    assert row["status"] == "upstream_cut" and row["estimated"] is True
    assert row["completion_tokens"] == 5  # the role chunk, then five one-token chunks
    assert gateway.user_row(user)["held"] == 0


HOLD_S = 5


@pytest.fixture
def pair(backend: Database, provider: str, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateways on one database whose reservations expire after HOLD_S: a process to kill,
    and one served in this process that lives on."""
    env = gateway_env(
        tmp_path,
        provider,
        backend,
        SOLARIS_STREAM_SECONDS_MAX="2",
        SOLARIS_RESERVATION_TIMEOUT_S=str(HOLD_S),
    )
    doomed, survivor = start_process(env, tmp_path), start_gateway(env, tmp_path)
    yield next(doomed), next(survivor)
    for process in (doomed, survivor):
        next(process, None)


def kill_holding(gateway: Gateway, user: str, body: dict[str, Any]) -> float:
    """Start a stream on `gateway` (its reservation open), kill -9 the gateway; when it died."""
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
    url = gateway.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers) as response:
        # Keep the iterator: a dropped one is finalized at once, and closing it hangs up, so the
        # gateway could settle a client's disconnect before the kill reached it.
        lines = response.iter_lines()
        next(lines)  # the stream has started: its reservation is open
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGKILL)
        gateway.process.wait()
    return time.monotonic()


def test_reservation_of_a_killed_gateway_expires(pair: tuple[Gateway, Gateway], user: str) -> None:
    first, second = pair
    first.fund(user, PROMPT + 110)  # one request at a time fits, not even a capped second
    killed_at = kill_holding(
        first, user, chat(True, max_tokens=100, reply_tokens=100, chunk_delay_s=0.05)
    )
    assert second.usage_rows(user, settled=False) == [], "the killed request never settled"
    with second.client(user) as http:
        blocked = http.post("/v1/chat/completions", json=chat(False, max_tokens=100))
        assert time.monotonic() - killed_at < HOLD_S
        # The hold still counts before it expires: the balance is there but held, so this is
        # a retry-later refusal, not the "buy more" one.
        assert blocked.status_code == 429, "the hold still counts before it expires"
        assert blocked.headers["x-solaris-blocked"] == "balance_held"
        time.sleep(max(0.0, HOLD_S + 0.2 - (time.monotonic() - killed_at)))
        served = http.post("/v1/chat/completions", json=chat(False, max_tokens=100))
    assert served.status_code == 200, served.text
    [row] = second.usage_rows(user)
    assert second.user_row(user)["balance"] == PROMPT + 110 - row["billable"]


def test_holds_of_a_killed_gateway_stop_capping_requests_once_expired(
    pair: tuple[Gateway, Gateway], provider: str, user: str
) -> None:
    """A dead process's hold must not lower the completion cap of later requests for ever."""
    first, second = pair
    funded = 100_000
    first.fund(user, funded)
    kill_holding(first, user, chat(True, max_tokens=60_000, reply_tokens=100, chunk_delay_s=0.05))
    time.sleep(HOLD_S + 0.2)
    assert second.user_row(user, settled=False)["held"] == 0, "an expired hold is not shown"
    asked = funded - PROMPT - 10  # fits the balance, not the balance minus the dead hold
    with second.client(user) as http:
        served = http.post("/v1/chat/completions", json=chat(False, max_tokens=asked))
    assert served.status_code == 200, served.text
    forwarded = [
        item["body"]
        for item in httpx.get(provider.removesuffix("/v1") + "/_dev/requests").json()
        if item["headers"].get("x-request-id") == served.headers["x-request-id"]
    ]
    assert [body.get("max_tokens") for body in forwarded] == [asked], "the dead hold capped it"
    assert "ledger verified" in second.cli("ledger", "verify")
