"""The web pages: admin dashboard (/admin), user portal (/portal) and their assets (/static).

Server-rendered (Jinja2) pages in pt-BR and English, with a little JavaScript where it helps:
Chart.js for charts and htmx for the users search, both shipped in `static/vendor/` (no CDN;
`scripts/vendor_assets.py` fetches them). The admin API's /api/docs loads Swagger UI from there
too.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from solaris.operations.admins import Admins
from solaris.operations.core import Operations
from solaris.operations.resources import Running
from solaris.operations.sessions import Sessions
from solaris.portal.dashboard import Dashboard
from solaris.portal.portal_pages import PortalPages

__all__ = ["STATIC_DIR", "web_routes"]

STATIC_DIR = Path(__file__).parent / "static"


def web_routes(gateway: Running) -> list[BaseRoute]:
    clock = gateway.ledger.clock
    sessions = Sessions(gateway.database, clock)
    dashboard = Dashboard(gateway, sessions, Admins(gateway.database, clock), Operations(gateway))
    return [
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        *dashboard.routes(),
        *PortalPages(gateway, sessions).routes(),
    ]
