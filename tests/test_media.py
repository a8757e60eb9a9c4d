"""The priced routes LibreChat calls without a user: image generation, text to speech and
moderation, through the gateway and the dev provider. Each is billed to the bound service
account at the model's configured price (held whole before it is forwarded), shows in the
report and the statement, is refused at a balance that cannot cover it, and refuses bad input
in OpenAI's shape with nothing held, charged or stored; the ledger verifies clean after.

Runs against the embedded default (SQLite) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from solaris.devprovider.media import IMAGE_OUTPUT_TOKENS, SPEECH_BYTES_PER_CHARACTER
from solaris.gateway.endpoints import Usage
from solaris.gateway.endpoints.media import MODERATIONS
from solaris.metering import tokenizer
from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway

IMAGE_PRICE = 1_500
SPEECH_PRICE = 30  # billable tokens per 1,000 characters
MODELS = {
    "dall-e-3": {"image_price": IMAGE_PRICE},
    "gpt-image-1": {"image_price": IMAGE_PRICE, "input_weight": 2, "output_weight": 4},
    "tts-1": {"speech_price": SPEECH_PRICE},
    "omni-moderation-latest": {},
    "text-moderation-stable": {"moderation_price": 7},
}
IMAGE = {"model": "dall-e-3", "prompt": "Um farol ao entardecer", "n": 2}
SPEECH = {"model": "tts-1", "input": "Olá! " * 77, "voice": "alloy"}  # 385 characters
MODERATION = {"input": ["Bom dia", "Boa noite"]}  # no model: OpenAI's default


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {name: f"sk-{name}-{uuid.uuid4().hex}" for name in ("images", "speech", "moderation")}


@pytest.fixture(scope="module")
def accounts() -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {name: f"{name}-{run}" for name in ("images", "speech", "moderation")}


@pytest.fixture(scope="module")
def media(
    backend: Database,
    provider: str,
    tmp_path_factory: pytest.TempPathFactory,
    keys: dict[str, str],
    accounts: dict[str, str],
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("media")
    bindings = ",".join(f"{accounts[name]}:{keys[name]}" for name in keys)
    env = gateway_env(
        tmp, provider, backend, SOLARIS_SERVICE_ACCOUNTS=bindings, SOLARIS_MODELS=json.dumps(MODELS)
    )
    yield from start_gateway(env, tmp)


def as_service(gateway: Gateway, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def report(gateway: Gateway, account: str) -> list[tuple[str, int, int]]:
    lines = json.loads(gateway.cli("usage", "report", "--by", "user", "--user", account, "--json"))
    return [(line["key"], line["requests"], line["billable"]) for line in lines]


def statement_notes(gateway: Gateway, account: str) -> list[tuple[int, str | None]]:
    lines = json.loads(gateway.cli("statement", account, "--json"))["lines"]
    return [(line["amount"], line.get("note")) for line in lines if line["kind"] == "usage"]


def test_images_are_charged_their_price_each(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str]
) -> None:
    account = accounts["images"]
    media.fund(account, 10_000)
    with as_service(media, keys["images"]) as http:
        response = http.post("/v1/images/generations", json=IMAGE)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2 and base64.b64decode(data[0]["b64_json"]).startswith(b"\x89PNG")
    [row] = media.usage_rows(account)
    assert (row["endpoint"], row["model"], row["billable"]) == ("images", "dall-e-3", 3_000)
    assert row["weights"] is None and json.loads(row["tool_calls"]) == {
        "image": {"calls": 2, "price": IMAGE_PRICE}
    }
    assert media.user_row(account)["balance"] == 10_000 - 2 * IMAGE_PRICE
    assert report(media, account) == [(account, 1, 2 * IMAGE_PRICE)]
    assert statement_notes(media, account) == [(-3_000, f"image: 2 x {IMAGE_PRICE}")]


def test_an_image_answer_with_token_usage_is_billed_at_the_weights(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str]
) -> None:
    account = accounts["images"]
    media.fund(account, 10_000)
    before = len(media.usage_rows(account))
    body = {"model": "gpt-image-1", "prompt": "Um farol", "n": 1}
    with as_service(media, keys["images"]) as http:
        response = http.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["output_tokens"] == IMAGE_OUTPUT_TOKENS
    row = media.usage_rows(account)[before]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert row["billable"] == usage["input_tokens"] * 2 + usage["output_tokens"] * 4
    assert not row["estimated"] and row["tool_billable"] == 0


def test_speech_streams_the_audio_and_is_charged_per_character(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str]
) -> None:
    account = accounts["speech"]
    media.fund(account, 1_000)
    characters = len(SPEECH["input"])
    with (
        as_service(media, keys["speech"]) as http,
        http.stream("POST", "/v1/audio/speech", json=SPEECH) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/mpeg"
        assert "content-length" not in response.headers  # relayed as it comes, not buffered
        audio = b"".join(response.iter_bytes())
    assert len(audio) == characters * SPEECH_BYTES_PER_CHARACTER
    price = math.ceil(characters * SPEECH_PRICE / 1000)
    [row] = media.usage_rows(account)
    assert (row["endpoint"], row["model"], row["billable"], row["status"]) == (
        "speech",
        "tts-1",
        price,
        "ok",
    )
    assert row["prompt_tokens"] == tokenizer.count_tokens("tts-1", SPEECH["input"])
    assert media.user_row(account)["balance"] == 1_000 - price
    assert report(media, account) == [(account, 1, price)]
    assert statement_notes(media, account) == [(-price, f"speech: 1 x {price}")]


def test_speech_audio_reaches_the_client_piece_by_piece(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str]
) -> None:
    """The provider sends the audio in chunks a while apart: the client gets them as they
    come (several reads), which a buffering relay would have joined into one."""
    account = accounts["speech"]
    media.fund(account, 1_000)
    body = {**SPEECH, "dev_provider": {"chunk_delay_s": 0.15}}
    with (
        as_service(media, keys["speech"]) as http,
        http.stream("POST", "/v1/audio/speech", json=body) as response,
    ):
        assert response.status_code == 200
        pieces, times = [], []
        for piece in response.iter_raw():
            if piece:
                pieces.append(piece)
                times.append(time.monotonic())
    # Three delays of 0.15 s lie between the first chunk and the last: a buffered answer
    # would arrive all at once, after them.
    assert len(pieces) >= 2 and times[-1] - times[0] >= 0.3
    assert sum(map(len, pieces)) == len(SPEECH["input"]) * SPEECH_BYTES_PER_CHARACTER


def test_speech_is_charged_whole_when_the_client_leaves_mid_audio(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str]
) -> None:
    """The provider was sent every character: a client that hangs up after the first chunk
    is still charged the price, once, on a row that says it left."""
    account = accounts["speech"]
    media.fund(account, 1_000)
    before = len(media.usage_rows(account))
    body = {**SPEECH, "dev_provider": {"chunk_delay_s": 0.5}}
    with (
        as_service(media, keys["speech"]) as http,
        http.stream("POST", "/v1/audio/speech", json=body) as response,
    ):
        assert response.status_code == 200
        assert next(response.iter_raw())
    [row] = media.usage_rows(account)[before:]
    assert row["status"] == "client_disconnected"
    assert row["billable"] == math.ceil(len(SPEECH["input"]) * SPEECH_PRICE / 1000)


def test_a_provider_error_passes_through_and_charges_nothing(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str]
) -> None:
    account = accounts["speech"]
    media.fund(account, 1_000)
    before = media.user_row(account)["balance"], len(media.usage_rows(account))
    with as_service(media, keys["speech"]) as http:
        response = http.post(
            "/v1/audio/speech", json={**SPEECH, "dev_provider": {"fail_status": 503}}
        )
        assert response.status_code == 503, response.text
    assert (media.user_row(account)["balance"], len(media.usage_rows(account))) == before
    assert media.user_row(account)["held"] == 0


def test_a_moderation_usage_the_provider_reports_is_read() -> None:
    payload = {"id": "modr-1", "results": [], "usage": {"prompt_tokens": 5, "total_tokens": 5}}
    assert MODERATIONS.usage(payload) == Usage(prompt_tokens=5, completion_tokens=0)
    assert MODERATIONS.usage({"id": "modr-1", "results": []}) is None


def test_moderation_is_free_by_default_yet_recorded_and_priced_when_configured(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str], provider: str
) -> None:
    account = accounts["moderation"]
    media.fund(account, 100)
    with as_service(media, keys["moderation"]) as http:
        free = http.post("/v1/moderations", json=MODERATION)
        priced = http.post(
            "/v1/moderations", json={**MODERATION, "model": "text-moderation-stable"}
        )
    assert free.status_code == 200, free.text
    assert priced.status_code == 200, priced.text
    assert len(free.json()["results"]) == 2 and free.json()["model"] == "omni-moderation-latest"
    rows = media.usage_rows(account)
    assert [(r["endpoint"], r["model"], r["billable"]) for r in rows] == [
        ("moderations", "omni-moderation-latest", 0),
        ("moderations", "text-moderation-stable", 7),
    ]
    assert media.user_row(account)["balance"] == 93
    assert report(media, account) == [(account, 2, 7)]
    sent = httpx.get(provider.removesuffix("/v1") + "/_dev/requests").json()
    assert any(
        r["path"] == "/v1/moderations" and r["body"]["model"] == "omni-moderation-latest"
        for r in sent
    )


ROUTES: dict[str, tuple[str, dict[str, Any], int]] = {
    "images": ("/v1/images/generations", IMAGE, 2 * IMAGE_PRICE),
    "speech": ("/v1/audio/speech", SPEECH, math.ceil(len(SPEECH["input"]) * SPEECH_PRICE / 1000)),
    "moderation": ("/v1/moderations", MODERATION, 1),
}


@pytest.mark.parametrize("feature", list(ROUTES))
def test_a_balance_short_of_the_price_is_refused_with_a_402_and_nothing_lowered(
    backend: Database, provider: str, tmp_path_factory: pytest.TempPathFactory, feature: str
) -> None:
    path, body, price = ROUTES[feature]
    account, key = f"{feature}-{uuid.uuid4().hex[:8]}", f"sk-{feature}-{uuid.uuid4().hex}"
    tmp = tmp_path_factory.mktemp("short")
    env = gateway_env(
        tmp,
        provider,
        backend,
        SOLARIS_SERVICE_ACCOUNTS=f"{account}:{key}",
        SOLARIS_MODELS=json.dumps(MODELS),
    )
    for gateway in start_gateway(env, tmp):
        with as_service(gateway, key) as http:
            refused = [http.post(path, json=body)]
            if price > 1:  # a free moderation still needs a token to hold
                gateway.fund(account, price - 1)
                refused.append(http.post(path, json=body))
        for response in refused:
            assert response.status_code == 402, response.text
            assert response.json()["error"]["code"] == "insufficient_balance"
        assert gateway.usage_rows(account) == []
        assert gateway.user_row(account)["balance"] == price - 1
        assert "ledger verified" in gateway.cli("ledger", "verify")


def test_parallel_images_never_spend_past_the_balance(media: Gateway) -> None:
    """Eight requests at once for a user whose balance covers two and a half images: each
    holds its whole price, so two are served, the rest refused, and no debt is made."""
    user = uuid.uuid4().hex[:24]
    media.fund(user, IMAGE_PRICE * 5 // 2)

    async def burst() -> list[int]:
        headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": user}
        async with httpx.AsyncClient(base_url=media.url, headers=headers, timeout=30) as http:
            body = {**IMAGE, "n": 1, "dev_provider": {"stall_s": 0.2}}
            calls = [http.post("/v1/images/generations", json=body) for _ in range(8)]
            return [response.status_code for response in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())
    assert (
        statuses.count(200) == 2
        and statuses.count(200) + statuses.count(429) + statuses.count(402) == 8
    ), statuses
    assert [row["billable"] for row in media.usage_rows(user)] == [IMAGE_PRICE, IMAGE_PRICE]
    assert media.user_row(user)["balance"] == IMAGE_PRICE // 2


BAD: list[tuple[str, Any, str | None]] = [
    ("/v1/images/generations", b"{not json", None),
    ("/v1/images/generations", {"model": "dall-e-3"}, "prompt"),
    ("/v1/images/generations", {**IMAGE, "prompt": 7}, "prompt"),
    ("/v1/images/generations", {**IMAGE, "n": "2"}, "n"),
    ("/v1/images/generations", {**IMAGE, "n": 11}, "n"),
    ("/v1/images/generations", {**IMAGE, "size": 1024}, "size"),
    ("/v1/images/generations", {**IMAGE, "stream": True}, "stream"),
    ("/v1/images/generations", {**IMAGE, "model": "dall-e-2"}, "model"),  # no image_price
    ("/v1/audio/speech", {"input": "Oi", "voice": "alloy"}, "model"),
    ("/v1/audio/speech", {"model": "tts-1", "voice": "alloy"}, "input"),
    ("/v1/audio/speech", {"model": "tts-1", "input": "Oi"}, "voice"),
    ("/v1/audio/speech", {**SPEECH, "input": "x" * 4097}, "input"),
    ("/v1/audio/speech", {**SPEECH, "speed": 9}, "speed"),
    ("/v1/audio/speech", {**SPEECH, "response_format": "ogg"}, "response_format"),
    ("/v1/audio/speech", {**SPEECH, "stream_format": "chunks"}, "stream_format"),
    ("/v1/audio/speech", {**SPEECH, "model": "tts-1-hd"}, "model"),  # no speech_price
    ("/v1/moderations", {}, None),
    ("/v1/moderations", {"input": ""}, "input"),
    ("/v1/moderations", {"input": [1, 2]}, "input"),
    ("/v1/moderations", [MODERATION], None),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD)
def test_bad_input_is_refused_in_openais_shape_with_nothing_held_or_stored(
    media: Gateway,
    keys: dict[str, str],
    accounts: dict[str, str],
    path: str,
    body: Any,
    param: str | None,
) -> None:
    bound_account, bound_key = accounts["images"], keys["images"]
    media.fund(bound_account, 50_000)
    before = media.user_row(bound_account)["balance"], len(media.usage_rows(bound_account))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with as_service(media, bound_key) as http:
        response = http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error
    after = media.user_row(bound_account)["balance"], len(media.usage_rows(bound_account))
    assert after == before and media.user_row(bound_account)["held"] == 0


def test_the_openai_sdk_through_the_gateway(
    media: Gateway, keys: dict[str, str], accounts: dict[str, str]
) -> None:
    """What LibreChat's image tools use (the openai SDK's images.generate), and the SDK's
    streamed speech and its moderations, each billed to its own bound account."""
    for feature in ("images", "speech", "moderation"):
        media.fund(accounts[feature], 10_000)
    before = {feature: len(media.usage_rows(accounts[feature])) for feature in accounts}

    def sdk(feature: str) -> openai.OpenAI:
        return openai.OpenAI(api_key=keys[feature], base_url=media.url + "/v1", max_retries=0)

    images = sdk("images").images.generate(
        model="dall-e-3", prompt="Um farol", n=1, size="1024x1024", response_format="b64_json"
    )
    assert images.data and base64.b64decode(images.data[0].b64_json or "").startswith(b"\x89PNG")
    with sdk("speech").audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Bom dia", response_format="wav"
    ) as speech:
        audio = b"".join(speech.iter_bytes())
    assert len(audio) == len("Bom dia") * SPEECH_BYTES_PER_CHARACTER
    moderation = sdk("moderation").moderations.create(input="Bom dia")
    assert moderation.results and not moderation.results[0].flagged
    charged = {
        feature: [row["billable"] for row in media.usage_rows(accounts[feature])[before[feature] :]]
        for feature in accounts
    }
    assert charged == {
        "images": [IMAGE_PRICE],
        "speech": [math.ceil(len("Bom dia") * SPEECH_PRICE / 1000)],
        "moderation": [0],
    }


def test_the_librechat_key_without_a_user_is_refused_on_each_route(media: Gateway) -> None:
    with as_service(media, SERVICE_KEY) as http:
        for path, body, _price in ROUTES.values():
            response = http.post(path, json=body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == "user" and "SOLARIS_SERVICE_ACCOUNTS" in error["message"]


def test_librechat_headers_bill_the_user_they_name(media: Gateway) -> None:
    user = uuid.uuid4().hex[:24]
    media.fund(user, 5_000)
    with media.client(user) as http:
        response = http.post("/v1/images/generations", json={**IMAGE, "n": 1})
    assert response.status_code == 200, response.text
    [row] = media.usage_rows(user)
    assert row["billable"] == IMAGE_PRICE


def test_multipart_routes_stay_unserved(media: Gateway, keys: dict[str, str]) -> None:
    with as_service(media, keys["speech"]) as http:
        for path in ("/v1/audio/transcriptions", "/v1/images/edits", "/v1/ocr"):
            assert http.post(path, json={"model": "x"}).status_code == 404


def test_the_ledger_verifies_clean(media: Gateway) -> None:
    assert "ledger verified" in media.cli("ledger", "verify")
