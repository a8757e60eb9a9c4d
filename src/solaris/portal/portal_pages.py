"""The user portal (/portal): sign-in by signed link or e-mail magic link, then the user's own
balance, usage, statement (with CSV) and the purchase page.

A user session only ever reads its own user: the user id comes from the session, never from the
URL or a form. A signed link is spent on first use (`redeem_link`) and swapped for a session
cookie, and the browser is sent to the same page without the token, so the token never stays in
the address bar, the history, or a Referer.
"""

from __future__ import annotations

import io

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from solaris.alerts.mail import smtp_from
from solaris.links import InvalidLink
from solaris.operations.clients import address_bucket, attempt_wait_s, client_address
from solaris.operations.resources import Running
from solaris.operations.sessions import Sessions
from solaris.portal import charts
from solaris.portal.account import (
    PortalUser,
    account,
    portal_user,
    recent_months,
    user_statement,
)
from solaris.portal.auth import WebAuth, redeem_link
from solaris.portal.limit_pages import LimitPages
from solaris.portal.purchase_pages import PurchasePages
from solaris.portal.routing import (
    error_page,
    language_switch,
    page_route,
    read_form,
    redirect,
    sign_out,
)
from solaris.portal.security import content_security_policy, too_many
from solaris.portal.signin_mail import plausible_email, send_signin_links
from solaris.portal.templating import Renderer
from solaris.texts.formats import format_month

__all__ = ["PortalPages"]

LINK_LENGTH_MAX = 2048


class PortalPages:
    def __init__(self, gateway: Running, sessions: Sessions) -> None:
        self.gateway = gateway
        self.settings = settings = gateway.settings
        self.renderer = Renderer("portal", settings.language, settings.zone)
        self.auth = WebAuth(sessions, "user", settings.public_base_url)
        self.key = settings.signing_key()
        self.purchase_pages = PurchasePages(gateway, gateway.purchases, self.renderer, self._user)
        self.limit_pages = LimitPages(gateway, self.renderer, self._user)

    def routes(self) -> list[BaseRoute]:
        return [
            page_route("/portal", self.home),
            page_route("/portal/statement", self.statement),
            page_route("/portal/statement.csv", self.statement_csv),
            page_route("/portal/buy", self.buy, ("GET", "POST")),
            *self.purchase_pages.routes(),
            *self.limit_pages.routes(),
            page_route("/portal/login", self.login, ("GET", "POST")),
            page_route("/portal/logout", self.logout, ("POST",)),
            page_route("/portal/lang/{code}", language_switch("portal")),
            page_route("/portal/{rest:path}", self.not_found, ("GET", "POST")),
        ]

    async def _user(self, request: Request) -> tuple[PortalUser, str] | None:
        """The signed-in user and the session's CSRF token, or None."""
        signed = await self.auth.current(request)
        if signed is None:
            return None
        user = await portal_user(self.gateway.database, signed.session.subject_id)
        return (user, signed.session.csrf) if user is not None else None

    async def home(self, request: Request) -> Response:
        if (signed := await self._user(request)) is None:
            return redirect("/portal/login")
        user, csrf = signed
        t = self.renderer.translator(request)
        state = await account(self.gateway.ledger, user)
        days = charts.bar(
            t("home.chart_days"),
            [day[5:] for day, _ in state.by_day],
            t("col.tokens"),
            [tokens for _, tokens in state.by_day],
        )
        models = charts.doughnut(
            t("home.chart_models"),
            [row.key for row in state.by_model],
            [row.billable for row in state.by_model],
        )
        context = {"section": "home", "account": state, "days_chart": days, "models_chart": models}
        return self.renderer.page(request, "portal/home.html", context, csrf=csrf)

    def _periods(self, request: Request) -> list[tuple[str, str]]:
        t = self.renderer.translator(request)
        language = self.renderer.language(request)
        months = recent_months(self.gateway.ledger.clock(), self.gateway.ledger.zone)
        return [("current", t("statement.current"))] + [
            (f"{year:04d}-{month:02d}", format_month(language, year, month))
            for year, month in months
        ]

    async def statement(self, request: Request) -> Response:
        if (signed := await self._user(request)) is None:
            return redirect("/portal/login")
        user, csrf = signed
        period = request.query_params.get("period", "current")
        found = await user_statement(self.gateway.ledger, user, period)
        if found is None:
            return redirect("/portal/statement")
        balance, _held = await self.gateway.ledger.balance(user.id)
        context = {
            "section": "statement",
            "statement": found,
            "period": period,
            "periods": self._periods(request),
            "owed": max(0, -balance),  # now, whatever period is shown
        }
        return self.renderer.page(request, "portal/statement.html", context, csrf=csrf)

    async def statement_csv(self, request: Request) -> Response:
        if (signed := await self._user(request)) is None:
            return redirect("/portal/login")
        user, _csrf = signed
        period = request.query_params.get("period", "current")
        found = await user_statement(self.gateway.ledger, user, period)
        if found is None:
            return redirect("/portal/statement")
        stream = io.StringIO()
        found.write_csv(stream, self.gateway.ledger.zone)
        name = self.renderer.translator(request)("statement.filename")
        label = period if period != "current" else f"{found.start:%Y-%m-%d}"
        return Response(
            stream.getvalue().encode("utf-8-sig"),  # the BOM makes spreadsheets read UTF-8
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}-{label}.csv"'},
        )

    async def buy(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.purchase_pages.start(request)
        if "t" in request.query_params:
            return await self._redeem(request, "/portal/buy")
        if (signed := await self._user(request)) is None:
            return redirect("/portal/login")
        user, csrf = signed
        balance, held = await self.gateway.ledger.balance(user.id)
        context = {
            "section": "buy",
            "packs": self.settings.credit_packs,
            "providers": sorted(self.gateway.purchases.providers),
            "contact": self.settings.purchase_contact,
            "available": max(0, balance - held),
            "owed": max(0, -balance),
        }
        providers = self.gateway.purchases.providers.values()
        checkouts = sorted({p.checkout_origin for p in providers if p.checkout_origin})
        policy = {"content-security-policy": content_security_policy(checkouts)}
        return self.renderer.page(request, "portal/buy.html", context, csrf=csrf, headers=policy)

    async def _redeem(self, request: Request, target: str) -> Response:
        """Spend the link in `?t=` for a session and go to `target` without it."""
        token = request.query_params.get("t", "")
        try:
            if len(token) > LINK_LENGTH_MAX:
                raise InvalidLink("link too long")
            claims = await redeem_link(
                self.gateway.database, self.key, token, self.gateway.ledger.clock()
            )
            user = await portal_user(self.gateway.database, claims.user_id)
            if user is None:
                raise InvalidLink("no such user")
        except InvalidLink:
            if await self._user(request) is not None:  # reloaded after signing in: carry on
                return redirect(target)
            return self._login_page(request, status_code=400, invalid_link=True)
        response = redirect(target)
        await self.auth.sign_in(request, response, user.id, self.settings.portal_session_ttl_s)
        return response

    def _login_page(
        self,
        request: Request,
        *,
        status_code: int = 200,
        invalid_link: bool = False,
        notice: str = "",
        problem: str = "",
    ) -> Response:
        t = self.renderer.translator(request)
        mail_enabled = smtp_from(self.settings) is not None
        lead = t("plogin.lead")
        if invalid_link:
            lead = t("link.text") + (" " + t("link.ask") if mail_enabled else "")
        context = {
            "heading": t("link.title") if invalid_link else t("plogin.title"),
            "lead": lead,
            "notice": notice,
            "problem": problem,
            "mail_enabled": mail_enabled,
        }

        def render(token: str) -> Response:
            page = {**context, "login_csrf": token}
            return self.renderer.page(request, "portal/login.html", page, status_code=status_code)

        return self.auth.login_page(request, render)

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            if "t" in request.query_params:
                return await self._redeem(request, "/portal")
            return self._login_page(request)
        return await self._send_link(request)

    async def _send_link(self, request: Request) -> Response:
        t = self.renderer.translator(request)
        form = await read_form(request)
        if not self.auth.login_form_sent_back(request, form):
            return error_page(self.renderer, request, 403, "error.csrf")
        email = str(form.get("email", "")).strip()
        if not plausible_email(email):
            return self._login_page(request, status_code=400, problem=t("plogin.invalid_email"))
        limiter, per_minute = self.gateway.limiter, self.settings.login_attempts_per_minute
        client = address_bucket(client_address(request))
        wait_s = await attempt_wait_s(limiter, per_minute, [f"portal-login:ip:{client}"])
        if wait_s:
            return self._login_page(request, status_code=429, problem=too_many(t, wait_s))
        smtp = smtp_from(self.settings)
        if smtp is None:  # the page says e-mail sign-in is not set up
            return self._login_page(request)
        response = self._login_page(request, notice=t("plogin.sent"))
        # An inbox gets at most its share of links a minute, however many addresses ask for
        # them; the page says the same either way. Refusing the asker instead would let anyone
        # who knows the e-mail keep its owner from asking, while the links already sent there
        # (each one good) are the owner's to use.
        if await attempt_wait_s(limiter, per_minute, [f"portal-login:email:{email.lower()}"]):
            return response
        response.background = BackgroundTask(
            send_signin_links,
            self.gateway.database,
            smtp,
            self.key,
            self.gateway.ledger.clock,
            self.settings.public_base_url,
            self.settings.link_ttl_s,
            email,
            self.renderer.language(request),
        )
        return response

    async def logout(self, request: Request) -> Response:
        return await sign_out(request, self.auth, self.renderer, "/portal/login")

    async def not_found(self, request: Request) -> Response:
        if request.path_params["rest"] == "" and request.method == "GET":
            return redirect("/portal")  # /portal/ is /portal
        return error_page(self.renderer, request, 404, "error.not_found_text")
