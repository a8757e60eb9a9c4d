"""/v1/embeddings in each input shape OpenAI accepts, as LibreChat's RAG API and the openai SDK
send them: billed what the provider reported, estimated right when it reports nothing, and bad
input refused in OpenAI's shape with nothing charged or stored.

Runs against the embedded default (SQLite) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from typing import Any

import httpx
import openai
import pytest

from solaris.ledger.ledger import Ledger
from solaris.ledger.users import Users
from solaris.metering.estimate import embeddings_input_tokens
from solaris.store.database import open_database
from tests.conftest import SERVICE_KEY, Gateway

MODEL = "text-embedding-3-small"
DIMENSIONS = 8  # the dev provider's default

# input → (vectors answered, prompt tokens): token ids count as their number.
FORMS: dict[str, tuple[Any, int, int]] = {
    "string": ("Olá, mundo", 1, embeddings_input_tokens({"model": MODEL, "input": "Olá, mundo"})),
    "strings": (
        ["um", "dois", "três"],
        3,
        embeddings_input_tokens({"model": MODEL, "input": ["um", "dois", "três"]}),
    ),
    "token-ids": ([9906, 11, 1917, 0], 1, 4),
    "token-id-lists": ([[9906, 11], [1917], [15339, 1070, 4435]], 3, 6),
}


def known_user(gateway: Gateway, user: str) -> bool:
    async def find() -> bool:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            return await Users(Ledger(database)).find(user) is not None
        finally:
            await database.close()

    return asyncio.run(find())


def forwarded(provider: str, user: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = httpx.get(
        provider.removesuffix("/v1") + "/_dev/requests"
    ).json()
    return [r for r in records if (r["body"] or {}).get("user") == user]


def floats(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
@pytest.mark.parametrize(("given", "vectors", "tokens"), list(FORMS.values()), ids=list(FORMS))
def test_each_input_shape_is_answered_and_charged_what_the_provider_reported(
    gateway: Gateway, user: str, given: Any, vectors: int, tokens: int, encoding_format: str
) -> None:
    gateway.fund(user, 1_000)
    body = {"model": MODEL, "input": given, "encoding_format": encoding_format, "user": user}
    with gateway.client(user) as http:
        response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [item["index"] for item in answer["data"]] == list(range(vectors))
    for item in answer["data"]:
        vector = item["embedding"]
        if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
            assert isinstance(vector, str)
            vector = floats(vector)
        assert len(vector) == DIMENSIONS
        assert math.isclose(sum(x * x for x in vector), 1, rel_tol=1e-5)
    assert answer["usage"]["prompt_tokens"] == tokens
    [row] = gateway.usage_rows(user)
    assert row["endpoint"] == "embeddings" and row["estimated"] is False
    assert row["prompt_tokens"] == tokens and row["completion_tokens"] == 0
    assert row["billable"] == tokens
    assert gateway.user_row(user)["balance"] == 1_000 - tokens


@pytest.mark.parametrize(("given", "vectors", "tokens"), list(FORMS.values()), ids=list(FORMS))
def test_without_a_reported_usage_the_estimate_counts_each_shape(
    gateway: Gateway, user: str, given: Any, vectors: int, tokens: int
) -> None:
    """Token ids are counted as their number, text with the model's tokenizer."""
    gateway.fund(user, 1_000)
    body = {"model": MODEL, "input": given, "dev_provider": {"omit_usage": True}}
    with gateway.client(user) as http:
        response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    assert "usage" not in response.json()
    [row] = gateway.usage_rows(user)
    assert row["prompt_tokens"] == tokens and row["estimated"] is True
    assert gateway.user_row(user)["balance"] == 1_000 - tokens


def test_the_rag_apis_token_id_batches_through_the_openai_sdk(
    gateway: Gateway, user: str, provider: str
) -> None:
    """LibreChat's RAG API (langchain's OpenAIEmbeddings with check_embedding_ctx_length) sends
    lists of token ids; the openai SDK asks for base64 and decodes it."""
    gateway.fund(user, 1_000)
    client = openai.OpenAI(
        api_key=SERVICE_KEY,
        base_url=gateway.url + "/v1",
        default_headers={"X-LibreChat-User-Id": user},
        max_retries=0,
    )
    chunks = [[9906, 11, 1917], [15339, 1070], [40, 1097, 264, 6369]]
    result = client.embeddings.create(model=MODEL, input=chunks, user=user)
    assert [len(item.embedding) for item in result.data] == [DIMENSIONS] * 3
    [sent] = forwarded(provider, user)
    assert sent["body"]["input"] == chunks and sent["body"]["encoding_format"] == "base64"
    [row] = gateway.usage_rows(user)
    assert row["billable"] == result.usage.prompt_tokens == 9


# Bad bodies: each a 400 in OpenAI's shape naming the field, before anything is held or stored.
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "null": ({"input": None}, "input"),
    "number": ({"input": 42}, "input"),
    "object": ({"input": {"text": "oi"}}, "input"),
    "empty-string": ({"input": ""}, "input"),
    "empty-list": ({"input": []}, "input"),
    "empty-string-item": ({"input": ["oi", ""]}, "input"),
    "string-then-id": ({"input": ["oi", 1]}, "input"),
    "id-then-string": ({"input": [1, "oi"]}, "input"),
    "list-then-string": ({"input": [[1], "oi"]}, "input"),
    "empty-id-list": ({"input": [[1], []]}, "input"),
    "nested-too-deep": ({"input": [[[1, 2]]]}, "input"),
    "float-id": ({"input": [1.5]}, "input"),
    "boolean-id": ({"input": [[1, True]]}, "input"),
    "negative-id": ({"input": [-1]}, "input"),
    "id-too-large": ({"input": [2**32]}, "input"),
    "too-many-inputs": ({"input": ["oi"] * 2049}, "input"),
    "too-many-ids": ({"input": [7] * 300_001}, "input"),
    "too-many-ids-in-lists": ({"input": [[7] * 150_000, [7] * 150_001]}, "input"),
    "encoding-format": ({"input": "oi", "encoding_format": "int8"}, "encoding_format"),
    "dimensions": ({"input": "oi", "dimensions": 0}, "dimensions"),
    "dimensions-text": ({"input": "oi", "dimensions": "8"}, "dimensions"),
}


@pytest.mark.parametrize(("fields", "param"), list(BAD.values()), ids=list(BAD))
def test_bad_input_is_refused_in_openais_shape_with_nothing_charged_or_stored(
    gateway: Gateway, user: str, provider: str, fields: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, "user": user, **fields}
    with gateway.client(user) as http:
        response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert forwarded(provider, user) == [], "never sent upstream"
    assert not known_user(gateway, user), "no user created for a refused request"


def test_the_dev_provider_refuses_what_openai_refuses(provider: str) -> None:
    for name, (fields, _param) in BAD.items():
        if name.startswith(("too-many-ids", "id-too-large", "negative", "dimensions-text")):
            continue  # bounds only the gateway draws (or OpenAI words otherwise)
        response = httpx.post(f"{provider}/embeddings", json={"model": MODEL, **fields})
        assert response.status_code == 400, name
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}, name
