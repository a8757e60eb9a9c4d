"""Rendering pages: one Jinja2 environment (autoescape on, strict undefined), one template per
page under `templates/`, shared pieces in `templates/_partials/`.

Every page gets the same helpers: `t` (the catalog in the page's language), `n` (tokens with
the language's separators), `d` / `dt` / `tm` (dates and times in
the operator's zone), the language switch link, and the
CSRF token of whoever is signed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from solaris.clock import as_utc
from solaris.texts import Language
from solaris.texts.formats import (
    format_clock,
    format_date,
    format_moment,
    format_money,
    format_percent,
    format_tokens,
    format_usd,
)
from solaris.texts.pages import Translator, choose_language, translator

__all__ = ["TEMPLATES_DIR", "Renderer"]

TEMPLATES_DIR = Path(__file__).parent / "templates"


class Renderer:
    """Renders the pages of one area (`/admin` or `/portal`)."""

    def __init__(self, area: str, default_language: Language, zone: tzinfo = UTC) -> None:
        assert area in ("admin", "portal"), area
        self.area = area
        self.zone = zone
        self.default_language = default_language
        self.environment = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def language(self, request: Request) -> Language:
        return choose_language(request, self.default_language)

    def translator(self, request: Request) -> Translator:
        return translator(self.language(request))

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        csrf: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        language = self.language(request)
        other: Language = "en" if language == "pt-BR" else "pt-BR"
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        base: dict[str, Any] = {
            "area": self.area,
            "lang": language,
            "other_lang": other,
            "switch_url": f"/{self.area}/lang/{other}?next={quote(here, safe='')}",
            "path": request.url.path,
            "section": "",
            "csrf": csrf,
            "t": translator(language),
            "n": lambda value: format_tokens(language, value),
            "d": lambda value: format_date(language, value, self.zone),
            "dt": lambda value: format_moment(language, value, self.zone),
            "tm": lambda value: format_clock(as_utc(value).astimezone(self.zone)),
            "pct": lambda fraction: format_percent(language, fraction),
            "usd": lambda value: format_usd(language, value),
            "money": lambda cents, currency: format_money(language, cents, currency),
        }
        html = self.environment.get_template(template).render({**base, **(context or {})})
        return HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
