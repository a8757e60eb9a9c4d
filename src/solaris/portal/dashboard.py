"""The admin dashboard (/admin): sign-in, overview, users (search, detail and changes), plans,
alerts and the audit log (orders: `order_pages`), over the same `Operations` the admin API uses (so every change is
audited the same way).

Every page wants a live admin session of an enabled admin; every POST also wants the session's
CSRF token (403 otherwise). Changes answer with a redirect to the user's page (post/redirect/
get), except a key rotation, whose new key is shown once on the page it renders.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from solaris.errors import ApiError
from solaris.operations.admins import Admins
from solaris.operations.clients import client_address
from solaris.operations.core import Actor, Operations
from solaris.operations.reads import UserNotFound
from solaris.operations.resources import Running
from solaris.operations.sessions import Sessions
from solaris.operations.signin import AdminSignIn
from solaris.portal import charts
from solaris.portal.auth import Signed, WebAuth
from solaris.portal.routing import (
    error_page,
    language_switch,
    page_route,
    read_form,
    redirect,
    sign_out,
)
from solaris.portal.security import (
    CSRF_FIELD,
    csrf_matches,
    safe_next,
    too_many,
)
from solaris.portal.templating import Renderer
from solaris.portal.user_actions import ACTIONS, DONE, UserAction

__all__ = ["Dashboard", "page_number", "pager"]

USERS_PAGE = 50
AUDIT_PAGE = 100
ALERTS_SHOWN = 200
CHART_DAYS = 30


class Dashboard:
    def __init__(
        self, gateway: Running, sessions: Sessions, admins: Admins, operations: Operations
    ) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.admins = admins
        self.operations = operations
        self.renderer = Renderer("admin", gateway.settings.language, gateway.settings.zone)
        self.auth = WebAuth(sessions, "admin", gateway.settings.public_base_url)
        self.sign_in = AdminSignIn(
            admins,
            gateway.limiter,
            gateway.sign_in_failures,
            self.settings.login_attempts_per_minute,
        )

    def routes(self, *more: BaseRoute) -> list[BaseRoute]:
        """The dashboard's pages, `more` (other modules' /admin pages) before the catch-all."""
        return [
            page_route("/admin", self.overview),
            page_route("/admin/login", self.login, ("GET", "POST")),
            page_route("/admin/logout", self.logout, ("POST",)),
            page_route("/admin/users", self.users),
            page_route("/admin/users/{user_id:int}", self.user),
            page_route("/admin/users/{user_id:int}/{action}", self.change, ("POST",)),
            page_route("/admin/plans", self.plans),
            page_route("/admin/alerts", self.alerts),
            page_route("/admin/audit", self.audit),
            page_route("/admin/lang/{code}", language_switch("admin")),
            *more,
            page_route("/admin/{rest:path}", self.not_found, ("GET", "POST")),
        ]

    async def admin(self, request: Request) -> Signed | None:
        """The signed-in, enabled admin; their pages also show the sign-ins that failed on
        their account since their previous sign-in."""
        signed = await self.auth.current(request)
        if signed is None or not await self.admins.is_active(signed.session.subject_id):
            return None
        failed = await self.sign_in.failed_since_previous(signed.session.subject_id)
        request.state.failed_sign_ins = failed if failed.count else None
        return signed

    def to_login(self, request: Request) -> Response:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect("/admin/login?next=" + quote(here, safe=""))

    def page(self, request: Request, signed: Signed, template: str, **context: Any) -> Response:
        status_code = context.pop("status_code", 200)
        context["failed_sign_ins"] = getattr(request.state, "failed_sign_ins", None)
        return self.renderer.page(
            request, template, context, csrf=signed.session.csrf, status_code=status_code
        )

    # Sign-in.

    def _login_page(
        self,
        request: Request,
        *,
        problem: str = "",
        email: str = "",
        target: str | None = None,
        status_code: int = 200,
    ) -> Response:
        """The sign-in form; `target` (a failed attempt's own) else `?next=` is where it leads."""
        target = safe_next(target or request.query_params.get("next"), "/admin", "/admin")

        def render(token: str) -> Response:
            context = {"problem": problem, "email": email, "next": target, "login_csrf": token}
            return self.renderer.page(request, "admin/login.html", context, status_code=status_code)

        return self.auth.login_page(request, render)

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            if await self.admin(request) is not None:
                return redirect("/admin")
            return self._login_page(request)
        t = self.renderer.translator(request)
        form = await read_form(request)
        if not self.auth.login_form_sent_back(request, form):
            return error_page(self.renderer, request, 403, "error.csrf")
        email = str(form.get("email", "")).strip()
        password = str(form.get("password", ""))
        target = safe_next(str(form.get("next", "")), "/admin", "/admin")
        result = await self.sign_in.attempt(email, password, client_address(request))
        if result.admin_id is None:
            refused = {"email": email, "target": target}
            if result.wait_s:
                problem = too_many(t, result.wait_s)
                return self._login_page(request, problem=problem, status_code=429, **refused)
            problem = t("login.failed")
            return self._login_page(request, problem=problem, status_code=401, **refused)
        response = redirect(target)
        ttl_s = self.settings.dashboard_session_ttl_s
        await self.auth.sign_in(request, response, result.admin_id, ttl_s)
        return response

    async def logout(self, request: Request) -> Response:
        return await sign_out(request, self.auth, self.renderer, "/admin/login")

    # Pages.

    async def overview(self, request: Request) -> Response:
        if (signed := await self.admin(request)) is None:
            return self.to_login(request)
        t = self.renderer.translator(request)
        view = await self.operations.overview()
        days = await self.operations.daily_usage(None, CHART_DAYS)
        chart = charts.bar(
            t("overview.chart_days"),
            [row.key[5:] for row in days],
            t("col.tokens"),
            [row.billable for row in days],
        )
        return self.page(
            request, signed, "admin/overview.html", section="overview", view=view, days_chart=chart
        )

    async def users(self, request: Request) -> Response:
        if (signed := await self.admin(request)) is None:
            return self.to_login(request)
        query = request.query_params.get("q", "").strip()
        page = page_number(request)
        found = await self.operations.find_users(query, USERS_PAGE + 1, (page - 1) * USERS_PAGE)
        previous_url, next_url = pager("/admin/users", {"q": query}, page, len(found) > USERS_PAGE)
        return self.page(
            request,
            signed,
            "admin/users.html",
            section="users",
            users=found[:USERS_PAGE],
            query=query,
            previous_url=previous_url,
            next_url=next_url,
        )

    async def user(self, request: Request) -> Response:
        if (signed := await self.admin(request)) is None:
            return self.to_login(request)
        done = request.query_params.get("done", "")
        return await self._user_page(
            request, signed, request.path_params["user_id"], done=done if done in DONE else ""
        )

    async def _user_page(
        self,
        request: Request,
        signed: Signed,
        user_id: int,
        *,
        done: str = "",
        problem: str = "",
        new_key: str = "",
        status_code: int = 200,
    ) -> Response:
        t = self.renderer.translator(request)
        try:
            user = await self.operations.user(user_id)
        except UserNotFound:
            return error_page(self.renderer, request, 404, "error.not_found_text")
        days = await self.operations.daily_usage(user_id, CHART_DAYS)
        now = self.operations.clock()
        hour = now.replace(minute=0, second=0, microsecond=0)
        since = hour - timedelta(hours=23)
        hours = {
            row.key[11:16]: row.billable
            for row in await self.operations.usage(
                "hour", since, hour + timedelta(hours=1), user_id
            )
        }
        labels = [f"{since + timedelta(hours=k):%H:%M}" for k in range(24)]
        statement = await self.operations.statement(user_id, user.period_start, user.period_end)
        return self.page(
            request,
            signed,
            "admin/user.html",
            section="users",
            user=user,
            plans=await self.operations.plans(),
            statement=statement,
            days_chart=charts.bar(
                t("user.chart_days"),
                [row.key[5:] for row in days],
                t("col.tokens"),
                [row.billable for row in days],
            ),
            hours_chart=charts.line(
                t("user.chart_hours"), labels, t("col.tokens"), [hours.get(k, 0) for k in labels]
            ),
            done=done,
            problem=problem,
            new_key=new_key,
            status_code=status_code,
        )

    async def change(self, request: Request) -> Response:
        """POST /admin/users/{id}/{action}: one change, audited as this admin."""
        signed = await self.admin(request)
        form = await read_form(request)
        if signed is None or not csrf_matches(form.get(CSRF_FIELD), signed.session.csrf):
            return error_page(self.renderer, request, 403, "error.csrf")
        user_id: int = request.path_params["user_id"]
        action: UserAction | None = ACTIONS.get(request.path_params["action"])
        if action is None:
            return error_page(self.renderer, request, 404, "error.not_found_text")
        actor = Actor(f"admin:{signed.session.subject_id}")
        try:
            new_key = await action(self.operations, actor, user_id, form)
        except UserNotFound:
            return error_page(self.renderer, request, 404, "error.not_found_text")
        except (ApiError, ValueError) as error:
            t = self.renderer.translator(request)
            problem = t("form.invalid", problem=getattr(error, "message", str(error)))
            return await self._user_page(request, signed, user_id, problem=problem, status_code=400)
        if new_key is not None:  # shown once, on this very response (never in a URL)
            return await self._user_page(request, signed, user_id, new_key=new_key)
        return redirect(f"/admin/users/{user_id}?done={request.path_params['action']}")

    async def plans(self, request: Request) -> Response:
        if (signed := await self.admin(request)) is None:
            return self.to_login(request)
        plans = await self.operations.plans()
        return self.page(request, signed, "admin/plans.html", section="plans", plans=plans)

    async def alerts(self, request: Request) -> Response:
        if (signed := await self.admin(request)) is None:
            return self.to_login(request)
        alerts = await self.operations.alerts(ALERTS_SHOWN)
        return self.page(request, signed, "admin/alerts.html", section="alerts", alerts=alerts)

    async def audit(self, request: Request) -> Response:
        if (signed := await self.admin(request)) is None:
            return self.to_login(request)
        page = page_number(request)
        entries = await self.operations.audit(AUDIT_PAGE + 1, (page - 1) * AUDIT_PAGE)
        previous_url, next_url = pager("/admin/audit", {}, page, len(entries) > AUDIT_PAGE)
        return self.page(
            request,
            signed,
            "admin/audit.html",
            section="audit",
            entries=entries[:AUDIT_PAGE],
            previous_url=previous_url,
            next_url=next_url,
        )

    async def not_found(self, request: Request) -> Response:
        if request.path_params["rest"] == "" and request.method == "GET":
            return redirect("/admin")  # /admin/ is /admin
        return error_page(self.renderer, request, 404, "error.not_found_text")


def page_number(request: Request) -> int:
    value = request.query_params.get("page", "1")
    return max(1, min(int(value), 10_000)) if value.isdigit() else 1


def pager(
    path: str, params: dict[str, str], page: int, more: bool
) -> tuple[str | None, str | None]:
    def url(number: int) -> str:
        query = {k: v for k, v in params.items() if v}
        if number > 1:
            query["page"] = str(number)
        return path + (f"?{urlencode(query)}" if query else "")

    return (url(page - 1) if page > 1 else None), (url(page + 1) if more else None)
