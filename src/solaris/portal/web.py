"""The web pages: admin dashboard (/admin), user portal (/portal) and their assets (/static).

Server-rendered (Jinja2) pages in pt-BR and English, with a little JavaScript where it helps:
Chart.js for charts and htmx for the users search, both shipped in `static/vendor/` (no CDN;
`scripts/vendor_assets.py` fetches them). The admin API's /api/docs loads Swagger UI from there
too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from solaris.errors import StoreUnavailable
from solaris.operations.admins import Admins
from solaris.operations.core import Operations
from solaris.operations.orders import Orders
from solaris.operations.resources import Running
from solaris.operations.sessions import Sessions
from solaris.portal.dashboard import Dashboard
from solaris.portal.order_pages import OrderPages
from solaris.portal.portal_pages import PortalPages
from solaris.portal.routing import error_page
from solaris.portal.security import PAGE_HEADERS
from solaris.portal.templating import Renderer
from solaris.texts import Language

__all__ = ["STATIC_DIR", "web_error_handlers", "web_routes"]

log = structlog.get_logger(__name__)
UNAVAILABLE_RETRY_AFTER_S = 5

STATIC_DIR = Path(__file__).parent / "static"


def web_routes(gateway: Running) -> list[BaseRoute]:
    clock = gateway.ledger.clock
    sessions = Sessions(gateway.database, clock)
    dashboard = Dashboard(gateway, sessions, Admins(gateway.database, clock), Operations(gateway))
    order_pages = OrderPages(dashboard, Orders(gateway.purchases))
    return [
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        *dashboard.routes(*order_pages.routes()),
        *PortalPages(gateway, sessions).routes(),
    ]


Handler = Callable[[Request, Exception], Awaitable[Response]]


def web_error_handlers(language: Language) -> dict[type[Exception], Handler]:
    """A page that reads well (in the visitor's language, in its area's frame) when the
    database is away, instead of a bare 500."""
    renderers = {area: Renderer(area, language) for area in ("admin", "portal")}

    async def unavailable(request: Request, error: Exception) -> Response:
        log.error("database_unavailable", path=request.url.path, error=str(error))
        area = "admin" if request.url.path.startswith("/admin") else "portal"
        page = error_page(renderers[area], request, 503, "error.unavailable_text")
        for name, value in (
            *PAGE_HEADERS,
            (b"retry-after", str(UNAVAILABLE_RETRY_AFTER_S).encode()),
        ):
            page.headers[name.decode()] = value.decode()
        return page

    return {StoreUnavailable: unavailable}
