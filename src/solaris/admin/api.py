"""The admin REST API (FastAPI, mounted at /api). Placeholder until the API lands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from solaris.app import Gateway

__all__ = ["admin_api"]


def admin_api(gateway: Gateway) -> FastAPI:
    return FastAPI(title="SOLARIS Gateway admin API", docs_url="/docs", openapi_url="/openapi.json")
