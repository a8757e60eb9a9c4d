"""Who a request is billed to: identity values as LibreChat (or a hostile client) sends them.

Runs against the embedded default (SQLite) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway

USER_HEADER = "X-LibreChat-User-Id"
EMAIL_HEADER = "X-LibreChat-User-Email"
CONVERSATION_HEADER = "X-LibreChat-Conversation-Id"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oi"}]}
REFUSED = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def b64(text: str) -> bytes:
    return b"b64:" + base64.b64encode(text.encode())


def readable(text: str) -> bool:
    return unicodedata.is_normalized("NFC", text) and not any(
        unicodedata.category(character) in REFUSED for character in text
    )


def shown_user(gateway: Gateway, user: str) -> dict[str, Any]:
    shown: list[dict[str, Any]] = json.loads(gateway.cli("users", "show", user, "--json"))
    return shown[0]


# (header, raw value): each must be refused with a 400 naming the header.
HOSTILE = {
    "tab": (USER_HEADER, b"u-\tid"),
    "latin1-c1": (USER_HEADER, b"u-\x85\x9b"),
    "b64-escape": (USER_HEADER, b64("u-\x01\x1b[2J")),
    "b64-crlf": (USER_HEADER, b64("\r\n")),
    "b64-nul": (USER_HEADER, b64("u-\x00")),
    "b64-bidi-override": (USER_HEADER, b64("u-\u202egnp.exe")),
    "b64-line-separator": (USER_HEADER, b64("u-\u2028x")),
    "b64-not-base64": (USER_HEADER, b"b64:***"),
    "too-long": (USER_HEADER, b"u" * 256),
    "b64-too-long": (USER_HEADER, b64("ç" * 256)),
    "email-nul": (EMAIL_HEADER, b64("a\x00@example.com")),
    "conversation-tab": (CONVERSATION_HEADER, b"c-\tid"),
    "conversation-too-long": (CONVERSATION_HEADER, b"c" * 129),
}


@pytest.mark.parametrize(("header", "raw"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_unreadable_identity_values_get_an_openai_400_naming_the_header(
    gateway: Gateway, user: str, header: str, raw: bytes
) -> None:
    gateway.fund(user, 1_000)
    headers = {USER_HEADER.encode(): user.encode(), header.encode(): raw}
    with gateway.client() as http:
        response = http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 400, response.text  # not 503: a NUL never reaches PostgreSQL
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == header and header in error["message"]
    assert gateway.usage_rows(user) == []
    assert all(readable(stored) for stored in gateway.stored_users())


def test_body_user_with_a_control_character_is_refused_naming_the_field(
    gateway: Gateway,
) -> None:
    body = {**CHAT, "user": "u-\x1b[31mred"}
    with gateway.client() as http:
        response = http.post("/v1/chat/completions", json=body, headers={USER_HEADER: ""})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "user" and "`user`" in error["message"]
    assert "u-\x1b[31mred" not in gateway.stored_users()


def test_raw_utf8_header_is_read_as_utf8_and_one_name_is_one_user(gateway: Gateway) -> None:
    name = f"José-{uuid.uuid4().hex[:8]}"
    gateway.fund(name, 10_000)
    decomposed = unicodedata.normalize("NFD", name)
    assert decomposed != name
    with gateway.client() as http:
        for value in (name.encode(), b64(decomposed), b64(name)):
            headers = {USER_HEADER.encode(): value}
            response = http.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert response.status_code == 200, response.text
    assert len(gateway.usage_rows(name)) == 3
    assert shown_user(gateway, name)["user"] == name  # not "JosÃ©", as the operator reads it
    stored = gateway.stored_users()
    assert name in stored and decomposed not in stored, "the decomposed form is the same user"


@pytest.mark.parametrize("character", [b"\x01", b"\x1b", b"\x7f"], ids=["SOH", "ESC", "DEL"])
def test_header_the_http_parser_refuses_gets_an_openai_400(
    gateway: Gateway, character: bytes
) -> None:
    """uvicorn's parser refuses these before the gateway sees them: still OpenAI's shape."""
    host, port = gateway.url.removeprefix("http://").split(":")
    body = json.dumps(CHAT).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
        b"Authorization: Bearer " + SERVICE_KEY.encode() + b"\r\n"
        b"X-LibreChat-User-Id: u-" + character + b"id\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):  # the server closes after a parser error
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 400"), answer
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert headers["content-type"] == "application/json"
    error = json.loads(payload)["error"]
    assert error["type"] == "invalid_request_error" and "header" in error["message"]


def test_the_email_follows_the_header_for_a_user_created_before_their_first_chat(
    gateway: Gateway, user: str
) -> None:
    gateway.cli("credits", "grant", user, "10000")
    assert gateway.stored_users()[user]["email"] is None
    with gateway.client(user) as http:
        for email in ("ana@example.com", "ana@example.com", "ana.silva@example.com"):
            response = http.post("/v1/chat/completions", json=CHAT, headers={EMAIL_HEADER: email})
            assert response.status_code == 200, response.text
            assert gateway.stored_users()[user]["email"] == email
        # An empty header (an unresolved placeholder) or a value that is no address keeps it.
        for email in ("", "not an address"):
            response = http.post("/v1/chat/completions", json=CHAT, headers={EMAIL_HEADER: email})
            assert response.status_code == 200, response.text
    assert gateway.stored_users()[user]["email"] == "ana.silva@example.com"


def test_the_email_follows_the_header_across_two_gateways(provider: str, tmp_path: Path) -> None:
    """What a process remembers of the stored e-mail is refreshed when its id lookup expires:
    an address another process stored since does not stop this one from storing the header's."""
    backend = Database(f"sqlite:///{tmp_path}/pair.db", None)
    env = gateway_env(tmp_path, provider, backend, SOLARIS_IDENTITY_CACHE_TTL_S="1")
    for one in start_gateway(env, tmp_path):
        for two in start_gateway(env, tmp_path):
            one.fund("moving-user", 10_000)
            for gateway, email in ((one, "old@example.com"), (two, "new@example.com")):
                with gateway.client("moving-user", **{EMAIL_HEADER: email}) as http:
                    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert one.stored_users()["moving-user"]["email"] == "new@example.com"
            time.sleep(1.2)  # what the first gateway remembers has expired
            with one.client("moving-user", **{EMAIL_HEADER: "old@example.com"}) as http:
                assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert one.stored_users()["moving-user"]["email"] == "old@example.com"
