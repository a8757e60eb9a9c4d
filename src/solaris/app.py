"""Builds the ASGI app: the /v1 proxy (raw ASGI, the hot path), a small Starlette app for the
health and metrics paths (and the lifespan), the pages and the admin API for everything else,
and the resources they share.

What every request needs is done here, at start: settings read, pools opened, the schema
version checked. The admin API (FastAPI), the dashboard and portal (Jinja2) and the payment
webhooks are imported and built on the first request that wants one of them: a gateway that
only meters chats never loads them (less memory, a quicker start).
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from solaris.alerts.service import Alerting
from solaris.clock import Clock, utcnow
from solaris.config import Settings, missing_setup
from solaris.errors import (
    NotFound,
)
from solaris.gateway.endpoints import ENDPOINTS
from solaris.gateway.identity import Identity
from solaris.gateway.models import Models
from solaris.gateway.proxy import Proxy
from solaris.gateway.responses import send_error
from solaris.gateway.upstream import Upstream
from solaris.ledger.journal import Journal
from solaris.ledger.ledger import Ledger
from solaris.ledger.settlements import Settlements
from solaris.ledger.thresholds import Thresholds
from solaris.ledger.users import Users
from solaris.limits import RateLimiter
from solaris.observability.metrics import Metrics
from solaris.observability.requests import RequestLog
from solaris.operations.failures import SignInFailures
from solaris.operations.purchases import Purchases
from solaris.operations.receipts import receipts_of
from solaris.operations.reconciler import reconcile_forever
from solaris.payments.configured import configured_providers
from solaris.reports.rollup import roll_up_forever
from solaris.store.cache import IdentityCache
from solaris.store.database import Database, async_url, open_database

__all__ = ["Gateway", "build_app"]

# Connections for what is not on the request path once warm: users seen for the first time,
# credits, readiness. The request path has its own pool (SOLARIS_DATABASE_POOL_SIZE).
MANAGEMENT_POOL_SIZE = 4
SETTLE_DRAIN_S = 10.0
# Answered by the small Starlette app, never loading the pages or the admin API.
CORE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

log = structlog.get_logger("solaris")


def summary(settings: Settings) -> dict[str, Any]:
    """The configuration, secrets masked, for the start-up log line."""
    shown = settings.model_dump(mode="json", exclude={"models"})
    for name, value in shown.items():
        if value and ("key" in name or "token" in name or name.endswith("_url")):
            shown[name] = _mask(name, value)
    shown["models"] = sorted(settings.models)
    return shown


def _mask(name: str, value: Any) -> Any:
    if isinstance(value, list):
        return [_mask(name, item) for item in value]
    if name.endswith("_url"):  # keep the address, hide any password in it
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", str(value))
    return "***"


class Gateway:
    """The shared resources of one gateway process."""

    def __init__(self, settings: Settings, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.database: Database = open_database(settings.database_url, MANAGEMENT_POOL_SIZE)
        self.metrics = Metrics()
        self.cache = IdentityCache(settings.redis_url, settings.identity_cache_ttl_s, self.metrics)
        journal = Journal(settings.journal_directory(), settings.journal_bytes_max)
        self.settlements: Settlements  # made below: it needs the ledger the alerts configure
        probes = {
            "database": self.database.probe,
            "redis": self.cache.ping,
            "journal": lambda: self.settlements.probe(),
        }
        self.alerting = Alerting(settings, self.database, probes, clock)
        self.ledger = _ledger(settings, self.database, clock, self.alerting.thresholds)
        self.settlements = Settlements(self.ledger, journal, self.metrics)
        self._replaying = asyncio.Event()
        self._replayer: asyncio.Task[None] | None = None
        self._reconciling = asyncio.Event()
        self._reconciler: asyncio.Task[None] | None = None
        self._rolling = asyncio.Event()
        self._roller: asyncio.Task[None] | None = None
        self.users = Users(self.ledger)
        self.identity = Identity(settings, self.users, self.cache)
        self.upstream = Upstream(settings)
        self.limiter = RateLimiter(
            settings.redis_url, on_redis_error=self.metrics.store_errors.labels("redis").inc
        )
        self.sign_in_failures = SignInFailures(settings.redis_url)  # the admin sign-in's
        self.models = Models(list(settings.models), self.identity, self.upstream)
        self.purchases = Purchases(
            self.database,
            self.ledger,
            settings.credit_packs,
            configured_providers(settings),
            clock,
            alarm=self.alerting.monitor.alarm,
            receipts=receipts_of(settings),
            metrics=self.metrics,
        )
        self.proxy = Proxy(
            settings,
            self.identity,
            self.ledger,
            self.settlements,
            self.upstream,
            settings.signing_key(),
            RequestLog(self.metrics, self.alerting.monitor.observe),
            self.limiter,
        )

    async def start(self) -> None:
        await self.database.check_migrated()
        namespace = await self.database.deployment_id()
        self.cache.namespace = self.limiter.namespace = namespace
        self.sign_in_failures.namespace = namespace
        await self.ledger.start()
        self.settlements.open(namespace)
        # Replays what this or a dead process journaled, as soon as the database answers.
        self._replayer = asyncio.create_task(self.settlements.run_forever(self._replaying))
        await self.upstream.start()
        if self.purchases.providers:  # a lost webhook is credited anyway
            self._reconciler = asyncio.create_task(
                reconcile_forever(self.purchases, self._reconciling)
            )
        # The reports' sums of usage (every process takes its turn; one does the work).
        self._roller = asyncio.create_task(
            roll_up_forever(self.database, self.ledger.clock, self._rolling)
        )
        if self.settings.metrics_port is not None:
            start_http_server(self.settings.metrics_port, registry=self.metrics.exposed)
        self.alerting.start()
        # What start-up built (modules, classes, settings, pools) lives as long as the process:
        # frozen, the collector's full passes skip it instead of walking it again and again
        # while requests run (~100 ms of CPU each, stalling the loop).
        gc.freeze()
        log.info("started", **summary(self.settings))

    async def close(self) -> None:
        # Requests cancelled at the end of the grace period are still settling: let them.
        await self.proxy.drain(SETTLE_DRAIN_S)
        self._replaying.set()
        if self._replayer is not None:
            await self._replayer
        await self.settlements.close()
        await self.alerting.close()
        self._reconciling.set()
        if self._reconciler is not None:
            await self._reconciler
        self._rolling.set()
        if self._roller is not None:
            await self._roller
        for provider in self.purchases.providers.values():
            await provider.close()
        await self.upstream.close()
        await self.limiter.close()
        await self.sign_in_failures.close()
        await self.ledger.close()
        await self.cache.close()
        await self.database.close()

    async def readiness(self) -> dict[str, str]:
        database, redis, upstream = await asyncio.gather(
            self.database.probe(), self.cache.ping(), self.upstream.probe()
        )
        journal = await self.settlements.probe()
        return {"database": database, "redis": redis, "upstream": upstream, "journal": journal}


def _ledger(settings: Settings, database: Database, clock: Clock, thresholds: Thresholds) -> Ledger:
    """On PostgreSQL the request path calls the ledger's SQL functions (one round trip each)."""
    if database.dialect != "postgresql":
        return Ledger(database, clock, thresholds, zone=settings.zone)
    from solaris.ledger.postgres import PostgresPending

    dsn = async_url(settings.database_url).replace("postgresql+asyncpg://", "postgresql://")
    pending = PostgresPending(dsn, settings.database_pool_size, clock, thresholds)
    return Ledger(database, clock, thresholds, pending, settings.zone)


def build_app(settings: Settings, clock: Clock = utcnow) -> SolarisApp:
    gateway = Gateway(settings, clock)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "time": time.time()})

    async def readyz(_request: Request) -> Response:
        checks = await gateway.readiness()
        fine = {name: state in ("ok", "not configured") for name, state in checks.items()}
        # Without Redis requests are still served (limits and the cache fall back to this
        # process), and settlements waiting in the journal are replayed while it serves:
        # degraded, not down, so a load balancer keeps every replica in rotation.
        ready = fine["database"] and fine["upstream"]
        status = "ready" if all(fine.values()) else "degraded" if ready else "not ready"
        body: dict[str, Any] = {"status": status, "checks": checks}
        # An unset upstream is worth a word only while the default address does not answer.
        missing = {
            name: words
            for name, words in missing_setup(settings).items()
            if name != "SOLARIS_UPSTREAM_BASE_URL" or not fine["upstream"]
        }
        if missing:
            body["missing"] = missing
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        token = settings.metrics_token
        if token is not None and request.headers.get("authorization") != (
            f"Bearer {token.get_secret_value()}"
        ):
            return JSONResponse({"error": "metrics need the metrics token"}, status_code=401)
        return Response(generate_latest(gateway.metrics.exposed), media_type=CONTENT_TYPE_LATEST)

    core = Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)],
        lifespan=lifespan,
    )
    return SolarisApp(gateway, core)


def build_web(gateway: Gateway) -> Starlette:
    """The admin API, the dashboard, the portal and the payment webhooks (SolarisApp builds it
    on their first request)."""
    from solaris.admin.api import admin_api
    from solaris.portal.web import web_error_handlers, web_routes
    from solaris.portal.webhooks import webhook_route

    routes: list[BaseRoute] = [
        Mount("/api", app=admin_api(gateway)),
        webhook_route(gateway.purchases),
        *web_routes(gateway),
    ]
    return Starlette(
        routes=routes, exception_handlers=web_error_handlers(gateway.settings.language)
    )


class SolarisApp:
    """Dispatches /v1 API paths straight to raw ASGI handlers; the lifespan, health and metrics
    go to the small Starlette app, the rest to the pages and admin API (`build_web`), built on
    the first request for them."""

    def __init__(self, gateway: Gateway, core: Starlette) -> None:
        self.gateway = gateway
        self.core = core
        self._web: ASGIApp | None = None

    @property
    def web(self) -> ASGIApp:
        if self._web is None:  # no await while building: concurrent first requests build one
            self._web = build_web(self.gateway)
        return self._web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/v1/"):
            method = scope["method"]
            if path in ENDPOINTS and method == "POST":
                await self.gateway.proxy(scope, receive, send)
            elif path == "/v1/models" and method == "GET":
                await self.gateway.models(scope, receive, send)
            else:
                await send_error(send, NotFound(f"Unknown request URL: {method} {path}."))
            return
        if scope["type"] != "http" or path in CORE_PATHS:
            await self.core(scope, receive, send)
            return
        await self.web(scope, receive, send)
