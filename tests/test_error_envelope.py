"""One error envelope across the gateway's faces, with the database up and with it gone.

`/v1/*` and `/api/admin/*` answer OpenAI's `{"error": {"message", "type", "param", "code"}}`;
the pages answer a readable page in the visitor's language. A database outage is a 503 on
every one of them (never a bare 500), with `Retry-After` where a client can use it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import SERVICE_KEY, Database, Gateway, gateway_env, start_gateway
from tests.pgcluster import BIN, PrivateCluster
from tests.test_admin_api import Admin, assert_error, sign_in

pytestmark = pytest.mark.skipif(BIN is None, reason="PostgreSQL server binaries are not installed")

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oi"}]}


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    cluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def running(
    cluster: PrivateCluster, provider: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Admin]]:
    tmp = tmp_path_factory.mktemp("envelope")
    env = gateway_env(tmp, provider, Database(cluster.url, redis_url))
    for gateway in start_gateway(env, tmp):
        yield gateway, sign_in(gateway)


def _v1(gateway: Gateway) -> httpx.Client:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-LibreChat-User-Id": "envelope"}
    return httpx.Client(base_url=gateway.url, headers=headers, timeout=30)


def test_every_face_answers_its_own_error_shape(running: tuple[Gateway, Admin]) -> None:
    gateway, admin = running
    with _v1(gateway) as http:
        assert_error(http.get("/v1/nothing"), 404, "unknown_url")
        assert_error(http.post("/v1/chat/completions", content=b"{"), 400)
        assert_error(http.post("/v1/chat/completions", json={"model": "m"}), 400)
    with admin.api("not-a-token") as api:
        assert_error(api.get("/admin/users"), 401)
    with admin.api() as api:
        assert_error(api.get("/admin/users/999999999"), 404)
    missing = httpx.get(gateway.url + "/portal/nothing-here")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert "Página não encontrada" in missing.text


def test_a_database_outage_is_a_503_on_every_face(
    running: tuple[Gateway, Admin], cluster: PrivateCluster
) -> None:
    gateway, admin = running
    cluster.stop()
    try:
        with _v1(gateway) as http:
            assert_error(http.post("/v1/chat/completions", json=CHAT), 503, "service_unavailable")
            assert_error(http.get("/v1/models"), 503, "service_unavailable")
        with admin.api() as api:
            users = api.get("/admin/users")
        assert_error(users, 503, "service_unavailable")
        assert int(users.headers["retry-after"]) > 0
        for path, cookie in (("/admin/users", "solaris_admin"), ("/portal", "solaris_portal")):
            page = httpx.get(gateway.url + path, cookies={cookie: "a" * 43}, timeout=30)
            assert page.status_code == 503, (path, page.text[:200])
            assert "text/html" in page.headers["content-type"]
            assert "Serviço indisponível" in page.text and "Tente de novo" in page.text
            assert "content-security-policy" in page.headers
    finally:
        cluster.start()
    with admin.api() as api:
        assert api.get("/admin/users").status_code == 200, "served again once it is back"


def test_a_page_in_english_when_the_visitor_reads_english(
    running: tuple[Gateway, Admin], cluster: PrivateCluster
) -> None:
    gateway, _admin = running
    cluster.stop()
    try:
        page = httpx.get(
            gateway.url + "/portal",
            cookies={"solaris_portal": "a" * 43, "solaris_lang": "en"},
            timeout=30,
        )
    finally:
        cluster.start()
    assert page.status_code == 503 and "Service unavailable" in page.text
