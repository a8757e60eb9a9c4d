"""The admin API as an operator's script sees it: sign-in, tokens and keys, users, credits,
blocks, plans, statements and the audit log — against a real gateway on SQLite and on
PostgreSQL + Redis, with the proxy it controls."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from solaris.admin.auth import issue_token
from solaris.clock import utcnow
from solaris.links import sign_link
from solaris.operations.admins import Admins
from solaris.operations.sessions import Sessions
from solaris.store.database import open_database
from tests.conftest import SERVICE_KEY, Gateway

ADMIN_PASSWORD = "correct horse battery staple"
SECRET = b"test-secret-key-0123456789abcdef"  # gateway_env's SOLARIS_SECRET_KEY
# Routes that cannot need a token: they are how one gets (or gives up) a token.
SIGN_IN_ROUTES = {"/admin/login", "/admin/refresh", "/admin/logout"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oi"}], "max_tokens": 16}


@dataclass
class Admin:
    gateway: Gateway
    email: str
    token: str
    set_cookie: str  # the sign-in's Set-Cookie header

    def api(self, credential: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway.url + "/api",
            headers={"Authorization": f"Bearer {credential or self.token}"},
            timeout=30,
        )


def create_admin(env: dict[str, str], email: str, password: str) -> None:
    """`solaris admins create EMAIL --password-stdin`, as an operator would."""
    done = subprocess.run(
        [sys.executable, "-m", "solaris", "admins", "create", email, "--password-stdin"],
        input=password + "\n",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"created: {email}" in done.stdout


def client_address() -> str:
    """A client address of the test's own (the test gateways trust X-Forwarded-For from
    loopback, their load balancer): sign-in limits count per address, other tests sign in too."""
    number = uuid.uuid4().int % (1 << 24)  # 16 million: two tests never meet by chance
    return f"10.{number >> 16}.{(number >> 8) & 255}.{number & 255}"


def login(
    gateway: Gateway, email: str, password: str = ADMIN_PASSWORD, address: str | None = None
) -> httpx.Response:
    return httpx.post(
        gateway.url + "/api/admin/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address or client_address()},
        timeout=30,
    )


def sign_in(gateway: Gateway) -> Admin:
    """A new admin (made with the CLI), signed in through the API."""
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    create_admin(gateway.env, email, ADMIN_PASSWORD)
    signed_in = login(gateway, email)
    assert signed_in.status_code == 200, signed_in.text
    return Admin(gateway, email, signed_in.json()["access_token"], signed_in.headers["set-cookie"])


@pytest.fixture(scope="module")
def admin(gateway: Gateway) -> Admin:
    """An admin of the shared gateway: the tests below touch only users of their own."""
    return sign_in(gateway)


def chat(gateway: Gateway, user: str) -> httpx.Response:
    with gateway.client(user) as client:
        return client.post("/v1/chat/completions", json=CHAT)


def user_id(admin: Admin, external_id: str) -> int:
    with admin.api() as api:
        found = api.get("/admin/users", params={"q": external_id}).json()
    [match] = [u for u in found if u["external_id"] == external_id]
    return int(match["id"])


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if code is not None:
        assert error["code"] == code, error


def test_sign_in_gives_a_token_and_a_strict_refresh_cookie(admin: Admin) -> None:
    claims = jwt.decode(admin.token, SECRET, algorithms=["HS256"], audience="solaris-admin")
    assert claims["exp"] - claims["iat"] == 900
    with admin.api() as api:
        me = api.get("/admin/me").json()
    assert me["email"] == admin.email and me["actor"] == f"admin:{me['admin_id']}"
    cookie = admin.set_cookie.lower()
    assert cookie.startswith("solaris_admin_refresh=")
    for flag in ("httponly", "samesite=strict", "path=/api/admin/", "secure"):
        assert flag in cookie, admin.set_cookie  # secure: SOLARIS_PUBLIC_BASE_URL is https


def test_refresh_cookie_renews_the_token_until_sign_out(admin: Admin) -> None:
    signed_in = login(admin.gateway, admin.email)
    assert signed_in.status_code == 200, signed_in.text
    cookie = {"Cookie": signed_in.headers["set-cookie"].split(";")[0]}
    base = admin.gateway.url + "/api/admin"
    renewed = httpx.post(base + "/refresh", headers=cookie)
    assert renewed.status_code == 200, renewed.text
    with admin.api(renewed.json()["access_token"]) as api:
        assert api.get("/admin/me").status_code == 200
    assert httpx.post(base + "/logout", headers=cookie).status_code == 204
    assert_error(httpx.post(base + "/refresh", headers=cookie), 401)
    assert_error(httpx.post(base + "/refresh"), 401)
    portal = {"Cookie": f"solaris_admin_refresh={portal_session(admin.gateway)}"}
    assert_error(httpx.post(base + "/refresh", headers=portal), 401)  # a user's session


def portal_session(gateway: Gateway) -> str:
    """The token of a portal (user) session, as the portal's cookie carries it."""

    async def open_one() -> str:
        database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            token, _session = await Sessions(database, utcnow).open("user", 1, 600)
            return token
        finally:
            await database.close()

    return asyncio.run(open_one())


def bad_credentials(admin: Admin, user_key: str) -> dict[str, str | None]:
    now = datetime.now(UTC)
    admin_id = jwt.decode(admin.token, options={"verify_signature": False})["sub"]
    claims = {"sub": admin_id, "aud": "solaris-admin", "typ": "admin-access", "exp": now}
    return {
        "missing": None,
        "malformed": "Bearer not-a-token",
        "not bearer": f"Basic {admin.token}",
        "expired": "Bearer " + issue_token(SECRET, int(admin_id), 60, now - timedelta(hours=1)),
        "forged": "Bearer "
        + issue_token(b"another-key-0123456789abcdefghij", int(admin_id), 60, now),
        "unsigned": "Bearer "
        + jwt.encode({**claims, "exp": now + timedelta(hours=1)}, None, "none"),
        "portal link": "Bearer " + sign_link(SECRET, 1, 900, now),
        "portal session": "Bearer " + portal_session(admin.gateway),
        "user key": f"Bearer {user_key}",
        "librechat key": f"Bearer {SERVICE_KEY}",
        "unknown admin key": "Bearer sk-adm-" + uuid.uuid4().hex,
    }


def admin_routes(admin: Admin) -> list[tuple[str, str]]:
    """Every operation the API documents, with sample path parameters."""
    spec = httpx.get(admin.gateway.url + "/api/openapi.json").json()
    routes = []
    for path, operations in spec["paths"].items():
        if path in SIGN_IN_ROUTES:
            continue
        url = path.replace("{user_id}", "999999").replace("{name}", "no-such-plan")
        routes += [(method.upper(), url) for method in operations]
    return routes


def test_every_admin_route_refuses_what_is_not_an_admin_credential(admin: Admin, user: str) -> None:
    chat(admin.gateway, user)  # creates the user
    with admin.api() as api:
        user_key = api.post(f"/admin/users/{user_id(admin, user)}/keys/rotate").json()["key"]
    routes = admin_routes(admin)
    assert len(routes) >= 18, routes
    credentials = bad_credentials(admin, user_key)
    with httpx.Client(base_url=admin.gateway.url + "/api", timeout=30) as client:
        for method, url in routes:
            for name, header in credentials.items():
                headers = {} if header is None else {"Authorization": header}
                refused = client.request(method, url, headers=headers, json={})
                assert refused.status_code == 401, (method, url, name, refused.text)
                assert refused.json()["error"]["code"] == "invalid_api_key", (url, name)
            allowed = client.request(
                method, url, headers={"Authorization": f"Bearer {admin.token}"}, json={}
            )
            assert allowed.status_code in (200, 400, 404), (method, url, allowed.text)


def test_a_grant_lets_a_blocked_user_through(admin: Admin, user: str) -> None:
    assert_error(chat(admin.gateway, user), 402)  # new users start with nothing (gateway_env)
    target = user_id(admin, user)
    with admin.api() as api:
        granted = api.post(
            f"/admin/users/{target}/credits/grant", json={"tokens": 5000, "note": "boas-vindas"}
        )
        assert granted.status_code == 200, granted.text
        assert granted.json()["balance"] == 5000
        assert chat(admin.gateway, user).status_code == 200
        detail = api.get(f"/admin/users/{target}").json()
        assert 0 < detail["balance"] < 5000 and detail["recent_usage"][0]["model"] == "gpt-4o-mini"
        corrected = api.post(
            f"/admin/users/{target}/credits/deduct", json={"tokens": 100, "note": "correção"}
        )
        assert corrected.json()["balance"] == detail["balance"] - 100
        [deduct, grant] = api.get(
            "/admin/audit", params={"target_type": "user", "target_id": str(target)}
        ).json()[:2]
    me = jwt.decode(admin.token, options={"verify_signature": False})["sub"]
    assert grant["actor"] == f"admin:{me}" and grant["action"] == "credits.grant"
    assert grant["before"] == {"balance": 0}
    assert grant["after"] == {"balance": 5000, "tokens": 5000, "note": "boas-vindas"}
    assert deduct["action"] == "credits.deduct" and deduct["after"]["note"] == "correção"
    assert deduct["before"]["balance"] - deduct["after"]["balance"] == 100


def test_blocking_refuses_the_users_requests_at_once(admin: Admin, user: str) -> None:
    chat(admin.gateway, user)
    target = user_id(admin, user)
    with admin.api() as api:
        api.post(f"/admin/users/{target}/credits/grant", json={"tokens": 5000})
        assert chat(admin.gateway, user).status_code == 200
        blocked = api.post(f"/admin/users/{target}/block", json={"reason": "pagamento atrasado"})
        assert blocked.json()["blocked"] is True
        refused = chat(admin.gateway, user)
        assert_error(refused, 403, "user_blocked")
        assert "bloqueada" in refused.json()["error"]["message"]  # SOLARIS_LANGUAGE=pt-BR
        listed = api.get("/admin/users", params={"q": user}).json()
        assert listed[0]["blocked_reason"] == "pagamento atrasado"
        assert api.post(f"/admin/users/{target}/unblock").json()["blocked"] is False
        assert chat(admin.gateway, user).status_code == 200
        unblock, block = api.get(
            "/admin/audit", params={"target_type": "user", "target_id": str(target)}
        ).json()[:2]
    assert block["action"] == "user.block" and unblock["action"] == "user.unblock"
    assert block["before"] == {"blocked": False, "reason": None}
    assert block["after"] == {"blocked": True, "reason": "pagamento atrasado"}
    assert unblock["after"] == {"blocked": False, "reason": None}


def test_rotating_a_key_revokes_the_old_one_at_once(admin: Admin, user: str) -> None:
    chat(admin.gateway, user)
    target = user_id(admin, user)
    with admin.api() as api:
        first = api.post(f"/admin/users/{target}/keys/rotate").json()["key"]
        models = httpx.get(
            admin.gateway.url + "/v1/models", headers={"Authorization": f"Bearer {first}"}
        )
        assert models.status_code == 200  # and now cached as this user's key
        second = api.post(f"/admin/users/{target}/keys/rotate").json()["key"]
        keys = api.get(f"/admin/users/{target}").json()["keys"]
    old = httpx.get(admin.gateway.url + "/v1/models", headers={"Authorization": f"Bearer {first}"})
    assert_error(old, 401)
    new = httpx.get(admin.gateway.url + "/v1/models", headers={"Authorization": f"Bearer {second}"})
    assert new.status_code == 200
    assert [k["revoked_at"] is None for k in keys] == [True, False]
    assert keys[0]["prefix"] == second[:11]


def test_plans_and_a_plan_change(admin: Admin, user: str) -> None:
    chat(admin.gateway, user)
    target = user_id(admin, user)
    with admin.api() as api:
        saved = api.put("/admin/plans/pro", json={"allowance_tokens": 20_000, "rpm": 60})
        assert saved.status_code == 200, saved.text
        assert {p["name"] for p in api.get("/admin/plans").json()} >= {"pro", "default"}
        capped = {"allowance_tokens": 1000, "rollover": True, "rollover_max_percent": 20}
        assert api.put("/admin/plans/capped", json=capped).json()["rollover_max_percent"] == 20
        uncapped = {"allowance_tokens": 1000, "rollover_max_tokens": 20}
        refused = api.put("/admin/plans/x", json=uncapped)
        assert_error(refused, 400)
        assert "needs rollover" in refused.json()["error"]["message"]
        moved = api.put(f"/admin/users/{target}/plan", json={"plan": "pro"}).json()
        assert moved["plan"] == "pro" and moved["balance"] == 20_000
        assert_error(api.put(f"/admin/users/{target}/plan", json={"plan": "nope"}), 404)
        [change] = api.get(
            "/admin/audit", params={"target_type": "user", "target_id": str(target)}
        ).json()[:1]
    assert change["action"] == "user.plan"
    assert (change["before"]["plan"], change["after"]["plan"]) == ("default", "pro")


def test_statement_usage_and_overview(admin: Admin, user: str) -> None:
    chat(admin.gateway, user)
    target = user_id(admin, user)
    with admin.api() as api:
        api.post(f"/admin/users/{target}/credits/grant", json={"tokens": 3000, "note": "teste"})
        assert chat(admin.gateway, user).status_code == 200
        statement = api.get(f"/admin/users/{target}/statement").json()
        assert [line["kind"] for line in statement["lines"]][-2:] == ["grant", "usage"]
        assert statement["closing"] == statement["lines"][-1]["balance"]
        csv = api.get(f"/admin/users/{target}/statement", params={"format": "csv"})
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text.lstrip("\ufeff").startswith("date,kind,model")
        today = datetime.now(UTC).date()
        window = {"since": f"{today}T00:00:00Z", "until": f"{today + timedelta(days=1)}T00:00:00Z"}
        by_user = api.get("/admin/usage", params={**window, "by": "user", "user_id": target})
        [row] = by_user.json()
        assert row["key"] == user and row["requests"] == 1 and row["billable"] > 0
        days = api.get(f"/admin/users/{target}/usage/daily", params={"days": 7}).json()
        assert len(days) == 7 and days[-1]["requests"] == 1
        overview = api.get("/admin/overview").json()
        assert overview["tokens_today"] >= row["billable"] and overview["requests_today"] >= 1
        status = api.get("/admin/status").json()
        assert status["checks"]["database"] == "ok" and status["version"]


def test_bad_input_is_a_400_in_openai_shape(admin: Admin, user: str) -> None:
    chat(admin.gateway, user)
    target = user_id(admin, user)
    with admin.api() as api:
        grant = f"/admin/users/{target}/credits/grant"
        assert_error(api.post(grant, json={"tokens": 0}), 400)
        assert api.post(grant, json={"tokens": 0}).json()["error"]["param"] == "tokens"
        assert_error(
            api.post(grant, content=b"{not json", headers={"content-type": "application/json"}), 400
        )
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        assert_error(api.post(grant, json={"tokens": 5, "expires_at": past}), 400)
        assert_error(api.post(f"/admin/users/{target}/block", json={"reason": "a\u0000b"}), 400)
        assert_error(api.get("/admin/users", params={"limit": 100_000}), 400)
        assert_error(api.get("/admin/users/999999"), 404, "user_not_found")
        assert_error(api.get("/admin/no-such-route"), 404)


def test_admin_api_key_works_until_revoked(admin: Admin, user: str) -> None:
    key = admin.gateway.cli(
        "admins", "key", "create", admin.email, "--name", "billing-sync"
    ).strip()
    assert key.startswith("sk-adm-")
    chat(admin.gateway, user)
    with admin.api(key) as api:
        me = api.get("/admin/me").json()
        assert me["actor"].startswith("apikey:")
        target = user_id(admin, user)
        api.post(f"/admin/users/{target}/credits/grant", json={"tokens": 10})
        [entry] = api.get(
            "/admin/audit", params={"target_type": "user", "target_id": str(target)}
        ).json()
        assert entry["actor"] == me["actor"]
        key_id = int(me["actor"].removeprefix("apikey:"))
        asyncio.run(revoke(admin.gateway, key_id))
        assert_error(api.get("/admin/me"), 401)


async def revoke(gateway: Gateway, key_id: int) -> None:
    """What `solaris admins key revoke KEY_ID` calls."""
    database = open_database(gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
    try:
        assert await Admins(database, utcnow).revoke_api_key(key_id)
    finally:
        await database.close()


def test_audit_rows_cannot_be_changed(admin: Admin) -> None:
    """Migration 0007's triggers, on both databases."""

    async def tamper(statement: str) -> None:
        database = open_database(admin.gateway.env["SOLARIS_DATABASE_URL"], pool_size=1)
        try:
            async with database.transaction() as conn:
                await conn.execute(text(statement))
        finally:
            await database.close()

    for statement in ("UPDATE audit_log SET actor = 'nobody'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            asyncio.run(tamper(statement))


def test_sign_in_attempts_are_limited_per_address_and_account(admin: Admin) -> None:
    attempts = 10  # SOLARIS_LOGIN_ATTEMPTS_PER_MINUTE's default
    address, nobody = client_address(), f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    statuses, started = [], time.monotonic()
    for guess in range(3 * attempts):  # at other accounts each: only the address limit counts
        wrong = login(admin.gateway, f"{guess}-{nobody}", "wrong password!", address)
        statuses.append(wrong.status_code)
        if wrong.status_code == 429:
            break
    # The limit gives a try back every 60/attempts s: a slow machine may have had a few more.
    given_back = int((time.monotonic() - started) * attempts / 60)
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses
    assert attempts <= len(statuses) - 1 <= attempts + given_back, statuses
    assert_error(wrong, 429, "rate_limit_exceeded")
    assert 1 <= int(wrong.headers["retry-after"]) <= 60
    refused = login(admin.gateway, admin.email, ADMIN_PASSWORD, address)
    assert_error(refused, 429)  # even the right password, from that address, for now
    for _ in range(attempts):  # the account's share of failures, each from an address of its own
        assert_error(login(admin.gateway, nobody, "wrong password!", client_address()), 401)
    # The account had its share of failures: a new address gets its password checked once.
    fresh = client_address()
    assert_error(login(admin.gateway, nobody, "wrong password!", fresh), 401)
    assert_error(login(admin.gateway, nobody, "wrong password!", fresh), 429)
    assert login(admin.gateway, admin.email).status_code == 200  # elsewhere, all is well


def test_failures_on_an_account_never_keep_its_admin_out(gateway: Gateway) -> None:
    target = sign_in(gateway)
    attacker = client_address()
    for _ in range(10):  # the account's share of failures, from one address
        assert_error(login(gateway, target.email, "wrong password!", attacker), 401)
    assert_error(login(gateway, target.email, ADMIN_PASSWORD, attacker), 429)
    signed_in = login(gateway, target.email)  # from the admin's own address
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    assert body["failed_sign_ins"] == 10 and body["access_token"]
    at = datetime.fromisoformat(body["last_failed_sign_in_at"])
    assert timedelta(0) <= datetime.now(UTC) - at < timedelta(minutes=1)
    assert login(gateway, target.email).json()["failed_sign_ins"] == 0  # none since
    with target.api() as api:
        failed = api.get(
            "/admin/audit",
            params={
                "target_type": "admin",
                "target_id": str(api.get("/admin/me").json()["admin_id"]),
            },
        ).json()
    actions = [entry["action"] for entry in failed]
    assert actions.count("admin.sign_in_failed") == 10 and actions.count("admin.sign_in") == 3
    assert {entry["actor"] for entry in failed if entry["action"] == "admin.sign_in_failed"} == {
        f"address:{attacker}"
    }


def test_docs_load_swagger_ui_from_the_gateway_itself(gateway: Gateway) -> None:
    docs = httpx.get(gateway.url + "/api/docs")
    assert docs.status_code == 200 and "/api/openapi.json" in docs.text
    assert "cdn." not in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        url = f"/static/vendor/swagger-ui/{asset}"
        assert url in docs.text
        assert httpx.get(gateway.url + url).status_code == 200
    policy = docs.headers.get("content-security-policy", "")
    assert "script-src 'self'" not in policy, "Swagger UI starts with an inline script"
