"""Whose word the gateway takes for a client's address and scheme: X-Forwarded-For and
X-Forwarded-Proto count only from the proxies in SOLARIS_FORWARDED_ALLOW_IPS (nobody by default,
whatever uvicorn's own FORWARDED_ALLOW_IPS says), and the deploy stack trusts its nginx alone.

The sign-in limit per client address shows which address the gateway believed: three failed
sign-ins from one address, and the fourth waits.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from tests.conftest import Database, Gateway, gateway_env, start_process

COMPOSE = Path(__file__).parents[1] / "deploy" / "docker-compose.yml"
ATTEMPTS = 3  # SOLARIS_LOGIN_ATTEMPTS_PER_MINUTE of these gateways


def _gateway(provider: str, tmp: Path, **extra: str) -> Iterator[Gateway]:
    env = gateway_env(
        tmp,
        provider,
        Database(f"sqlite:///{tmp}/solaris.db", None),
        SOLARIS_PUBLIC_BASE_URL="http://chat.example.com",  # only the scheme can make it https
        SOLARIS_LOGIN_ATTEMPTS_PER_MINUTE=str(ATTEMPTS),
    )
    del env["SOLARIS_FORWARDED_ALLOW_IPS"]  # the shared gateways' trust of loopback
    yield from start_process({**env, **extra}, tmp)


@pytest.fixture(scope="module")
def untrusting(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The default: no proxy trusted, even with uvicorn's own variable set to trust anyone."""
    yield from _gateway(provider, tmp_path_factory.mktemp("untrusting"), FORWARDED_ALLOW_IPS="*")


@pytest.fixture(scope="module")
def proxied(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Behind a load balancer on loopback, as the tests stand here."""
    tmp = tmp_path_factory.mktemp("proxied")
    yield from _gateway(provider, tmp, SOLARIS_FORWARDED_ALLOW_IPS="127.0.0.1")


def sign_in(gateway: Gateway, forwarded_for: str) -> int:
    """One failed admin API sign-in (an e-mail nobody has) claiming `forwarded_for`."""
    answer = httpx.post(
        gateway.url + "/api/admin/login",
        json={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "wrong pass!"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30,
    )
    return answer.status_code


def login_cookie(gateway: Gateway, **headers: str) -> str:
    """The Set-Cookie of the dashboard's sign-in page (Secure only over HTTPS)."""
    return httpx.get(gateway.url + "/admin/login", headers=headers).headers["set-cookie"].lower()


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(untrusting: Gateway) -> None:
    # A different X-Forwarded-For on every try, straight from loopback: still one address.
    tries = [sign_in(untrusting, f"203.0.113.{n}") for n in range(1, ATTEMPTS + 2)]
    assert tries == [401] * ATTEMPTS + [429]
    assert sign_in(untrusting, "198.51.100.99") == 429
    assert "secure" not in login_cookie(untrusting, **{"X-Forwarded-Proto": "https"})
    assert "FORWARDED_ALLOW_IPS is ignored" in untrusting.log.read_text()


def test_behind_a_trusted_proxy_each_client_counts_on_its_own(proxied: Gateway) -> None:
    first, second = "203.0.113.10", "203.0.113.11"
    assert [sign_in(proxied, first) for _ in range(ATTEMPTS)] == [401] * ATTEMPTS
    assert sign_in(proxied, first) == 429
    assert sign_in(proxied, second) == 401  # another client behind the same proxy
    # A client's own X-Forwarded-For is kept by the proxy, which appends the address it saw:
    # the gateway takes that one, so the client cannot pick another.
    assert sign_in(proxied, f"198.51.100.1, {first}") == 429
    assert "secure" in login_cookie(proxied, **{"X-Forwarded-Proto": "https"})
    assert "secure" not in login_cookie(proxied, **{"X-Forwarded-Proto": "http"})


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "the compose file writes environments as maps"
    return environment


def test_the_deploy_stack_trusts_exactly_its_load_balancer() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    [network] = services["solaris"]["networks"]  # nginx, on one network only
    address = ipaddress.ip_address(services["solaris"]["networks"][network]["ipv4_address"])
    [pool] = compose["networks"][network]["ipam"]["config"]
    assert address in ipaddress.ip_network(pool["subnet"])
    # Docker hands out the range to other containers: the proxy's address must not be in it.
    assert address not in ipaddress.ip_network(pool["ip_range"])
    gateways = {
        name: service
        for name, service in services.items()
        if "SOLARIS_DATABASE_URL" in _environment(service) and service.get("command") is None
    }
    assert set(gateways) == {"gateway"}
    for name, service in gateways.items():
        assert _environment(service)["SOLARIS_FORWARDED_ALLOW_IPS"] == str(address), name
        assert service.get("networks", [network]) in ([network], {network: None}), name
    nginx = (COMPOSE.parent / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in nginx
