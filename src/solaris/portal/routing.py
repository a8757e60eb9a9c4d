"""What the two areas' routes share: security headers and a body cap on every route, the
language switch, forms read with bounds, and the friendly error pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from solaris.portal.auth import WebAuth
from solaris.portal.security import CSRF_FIELD, SecurityHeaders, csrf_matches, safe_next
from solaris.portal.templating import Renderer
from solaris.texts import LANGUAGES
from solaris.texts.pages import LANG_COOKIE

__all__ = [
    "FORM_BYTES_MAX",
    "Endpoint",
    "error_page",
    "language_switch",
    "page_route",
    "read_form",
    "redirect",
    "sign_out",
]

FORM_BYTES_MAX = 64 * 1024
FORM_FIELDS_MAX = 20
LANG_COOKIE_MAX_AGE_S = 365 * 86400

Endpoint = Callable[[Request], Awaitable[Response]]


def page_route(path: str, endpoint: Endpoint, methods: Collection[str] = ("GET",)) -> Route:
    return Route(
        path,
        endpoint,
        methods=list(methods),
        middleware=[Middleware(SecurityHeaders)],
        max_body_size=FORM_BYTES_MAX,
    )


async def read_form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=FORM_FIELDS_MAX)


def redirect(url: str) -> RedirectResponse:
    """After a POST, or to a page: always a GET (303)."""
    return RedirectResponse(url, status_code=303)


HEADINGS = {
    400: "error.refused",
    404: "error.not_found",
    429: "error.too_many",
    503: "error.unavailable",
}


def error_page(
    renderer: Renderer, request: Request, status_code: int, message_key: str, **context: Any
) -> Response:
    t = renderer.translator(request)
    heading = t(HEADINGS.get(status_code, "error.forbidden"))
    return renderer.page(
        request,
        "error.html",
        {"heading": heading, "message": t(message_key), **context},
        status_code=status_code,
    )


async def sign_out(
    request: Request, auth: WebAuth, renderer: Renderer, login_path: str
) -> Response:
    """POST sign-out, then the sign-in page. A live session wants its CSRF token (403
    otherwise). Only a request that brought the cookie clears it, and clearing it revokes its
    session: a foreign site's auto-post, which the browser sends without our SameSite cookie,
    changes nothing at all (before, its answer deleted the cookie and left the session alive)."""
    form = await read_form(request)
    signed = await auth.current(request)
    if signed is not None and not csrf_matches(form.get(CSRF_FIELD), signed.session.csrf):
        return error_page(renderer, request, 403, "error.csrf")
    response = redirect(login_path)
    if auth.cookie in request.cookies:  # live and CSRF-checked, or dead: clear and revoke it
        await auth.sign_out(request, response)
    return response


def language_switch(area: str) -> Endpoint:
    """GET /<area>/lang/<code>?next=…: remember the language for the whole site, go back."""

    async def switch(request: Request) -> Response:
        code = request.path_params["code"]
        target = safe_next(request.query_params.get("next"), f"/{area}", f"/{area}")
        response = redirect(target)
        if code in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE, code, max_age=LANG_COOKIE_MAX_AGE_S, path="/", samesite="lax"
            )
        return response

    return switch
