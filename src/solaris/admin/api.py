"""The admin REST API (FastAPI, mounted at /api): OpenAPI at /api/openapi.json, Swagger UI at
/api/docs (served from our own /static, no CDN).

Every error is OpenAI's shape `{"error": {"message", "type", "code"}}`, including FastAPI's own
(validation is a 400, not a 422; an unknown route a 404), so one client-side handler fits the
whole gateway. Routes under /api/admin/ need an admin token or key (`solaris.admin.auth`),
except signing in, refreshing and signing out.
"""

from __future__ import annotations

import importlib.metadata
from datetime import datetime
from typing import Any, Literal

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from solaris.admin.auth import REFRESH_COOKIE, REFRESH_PATH, Admin, AdminAuth, current_admin
from solaris.admin.inputs import Credentials
from solaris.admin.order_routes import order_routes
from solaris.admin.routes import admin_routes
from solaris.errors import (
    ApiError,
    BadRequest,
    RateLimited,
    ServiceUnavailable,
    SolarisError,
    StoreUnavailable,
    Unauthorized,
    error_body,
)
from solaris.operations.admins import Admins
from solaris.operations.clients import client_address
from solaris.operations.core import Operations
from solaris.operations.orders import Orders
from solaris.operations.resources import Running
from solaris.operations.sessions import Sessions
from solaris.operations.signin import AdminSignIn
from solaris.operations.views import ErrorBody

__all__ = ["admin_api"]

UNAVAILABLE_RETRY_AFTER_S = 5

log = structlog.get_logger(__name__)

SWAGGER = "/static/vendor/swagger-ui"
HTTP_CODES = {404: "unknown_url", 405: "method_not_allowed"}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Invalid input (OpenAI error shape)"),
        (401, "Missing, expired or invalid credentials"),
        (404, "No such user, plan or route"),
    )
}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "Too many sign-in attempts (see Retry-After)"}
}


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds; then use POST /api/admin/refresh.")


class SignedIn(AccessToken):
    failed_sign_ins: int = Field(
        description="Failed sign-in attempts on this account since its previous sign-in."
    )
    last_failed_sign_in_at: datetime | None = Field(description="The latest of them.")


class Me(BaseModel):
    admin_id: int
    email: str
    actor: str  # how the audit log names this caller


class Status(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]
    version: str


def _error(error: ApiError) -> Response:
    headers = {}
    if isinstance(error, RateLimited) and error.retry_after_s > 0:
        headers["retry-after"] = str(max(1, round(error.retry_after_s)))
    if isinstance(error, Unauthorized):
        headers["www-authenticate"] = "Bearer"
    return Response(error.body(), error.status, headers, media_type="application/json")


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return _error(error)

    async def validation_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = error.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        location = [str(part) for part in first.get("loc", ())]
        if location and location[0] in ("path", "query", "body", "header", "cookie"):
            location = location[1:]
        where = ".".join(location)
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
        return _error(BadRequest(message, param=where or None))

    async def http_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = HTTP_CODES.get(error.status_code, "invalid_request_error")
        body = error_body(str(error.detail), "invalid_request_error", code)
        return Response(body, error.status_code, error.headers, media_type="application/json")

    async def solaris_error(_request: Request, error: Exception) -> Response:
        return _error(BadRequest(str(error)))

    async def store_unavailable(request: Request, error: Exception) -> Response:
        log.error("database_unavailable", path=request.url.path, error=str(error))
        response = _error(ServiceUnavailable("The gateway's database is unavailable; try again."))
        response.headers["retry-after"] = str(UNAVAILABLE_RETRY_AFTER_S)
        return response

    async def unexpected(_request: Request, error: Exception) -> Response:
        log.error("admin_api_error", error=repr(error), exc_info=error)
        body = error_body("Internal error; it has been logged.", "server_error", "internal_error")
        return Response(body, 500, media_type="application/json")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(SolarisError, solaris_error)
    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(Exception, unexpected)


def _answer_400_not_422(app: FastAPI) -> None:
    """FastAPI documents validation errors as 422; ours are 400 (`ERRORS`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def admin_api(gateway: Running) -> FastAPI:
    settings = gateway.settings
    clock = gateway.ledger.clock
    admins = Admins(gateway.database, clock)
    sessions = Sessions(gateway.database, clock)
    auth = AdminAuth(settings, admins, sessions)
    sign_in = AdminSignIn(
        admins, gateway.limiter, gateway.sign_in_failures, settings.login_attempts_per_minute
    )
    operations = Operations(gateway)
    version = importlib.metadata.version("solaris-gateway")
    app = FastAPI(
        title="SOLARIS Gateway admin API",
        version=version,
        description=(
            "Users, credits, plans, usage, orders and audit of a SOLARIS Gateway. Authenticate with "
            "`Authorization: Bearer <token>`: the `access_token` of `POST /api/admin/login`, "
            "or an admin API key (`solaris admins key create`). Errors use OpenAI's shape."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        responses=ERRORS,
    )
    _install_error_handlers(app)
    _answer_400_not_422(app)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="SOLARIS Gateway admin API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        )

    def grant(request: Request, response: Response, admin_id: int, token: str) -> AccessToken:
        response.set_cookie(
            REFRESH_COOKIE,
            token,
            max_age=settings.dashboard_session_ttl_s,
            path=REFRESH_PATH,
            secure=auth.is_secure(request),
            httponly=True,
            samesite="strict",
        )
        return AccessToken(access_token=auth.token(admin_id), expires_in=settings.admin_token_ttl_s)

    @app.post("/admin/login", tags=["auth"], responses=RATE_LIMITED)
    async def login(body: Credentials, request: Request, response: Response) -> SignedIn:
        """Sign in: an access token, a refresh cookie (HttpOnly, for /api/admin/ only), and how
        many sign-ins on this account failed since its previous one."""
        result = await sign_in.attempt(body.email, body.password, client_address(request))
        if result.wait_s:
            message = f"Too many sign-in attempts: try again in {round(result.wait_s)} s."
            raise RateLimited(message, result.wait_s)
        if result.admin_id is None:
            raise InvalidCredentials("Wrong e-mail or password.")
        admin_id = result.admin_id
        token, _session = await sessions.open("admin", admin_id, settings.dashboard_session_ttl_s)
        failed = await sign_in.failed_since_previous(admin_id)
        return SignedIn(
            **grant(request, response, admin_id, token).model_dump(),
            failed_sign_ins=failed.count,
            last_failed_sign_in_at=failed.last_at,
        )

    @app.post("/admin/refresh", tags=["auth"])
    async def refresh(request: Request) -> AccessToken:
        """A new access token for the session of the refresh cookie."""
        session = await sessions.get(request.cookies.get(REFRESH_COOKIE), "admin")
        if session is None or not await admins.is_active(session.subject_id):
            raise Unauthorized("No live admin session: sign in again.")
        token = AccessToken(
            access_token=auth.token(session.subject_id), expires_in=settings.admin_token_ttl_s
        )
        return token

    @app.post("/admin/logout", tags=["auth"], status_code=204)
    async def logout(request: Request) -> Response:
        """End the refresh cookie's session (access tokens already issued run out by themselves)."""
        token = request.cookies.get(REFRESH_COOKIE)
        response = Response(status_code=204)
        if token is not None:  # the cookie is cleared only with its session, never alone
            await sessions.close(token)
            response.delete_cookie(
                REFRESH_COOKIE,
                path=REFRESH_PATH,
                secure=auth.is_secure(request),
                httponly=True,
                samesite="strict",
            )
        return response

    @app.get("/admin/me", tags=["auth"])
    async def me(caller: Admin) -> Me:
        """Who the credentials belong to."""
        account = await admins.get(caller.admin_id)
        assert account is not None, "auth.caller checked the admin exists"
        return Me(admin_id=account.id, email=account.email, actor=caller.actor.label)

    @app.get("/admin/status", tags=["status"], dependencies=[Depends(current_admin)])
    async def status() -> Status:
        """Readiness (database, Redis, upstream) and the gateway's version."""
        checks = await gateway.readiness()
        ready = all(state in ("ok", "not configured") for state in checks.values())
        return Status(status="ready" if ready else "not ready", checks=checks, version=version)

    app.state.admin_auth = auth
    app.include_router(admin_routes(operations))
    app.include_router(order_routes(Orders(gateway.purchases)))
    return app
