"""The web pages: admin dashboard (/admin) and user portal (/portal). Placeholder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from solaris.app import Gateway

__all__ = ["web_routes"]


def web_routes(gateway: Gateway) -> list[BaseRoute]:
    return []
