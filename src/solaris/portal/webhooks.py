"""POST /payments/{provider}/webhook: where the payment providers tell of their payments.

The event is verified (else 400: a forged or stale one is refused and nothing is stored), the
payment is fetched back from the provider and the order converged to it. When the database or
the provider is away the answer is 503, so the provider delivers the event again later: it is
never acknowledged before it has been applied.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from solaris.errors import ApiError, StoreUnavailable
from solaris.operations.purchases import Purchases

__all__ = ["webhook_route"]

BODY_BYTES_MAX = 256 * 1024  # a provider's event is a few kilobytes


def webhook_route(purchases: Purchases) -> Route:
    async def webhook(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > BODY_BYTES_MAX:
                return _error(413, "payload_too_large", "The event is too large.")
        try:
            order = await purchases.take_event(
                request.path_params["provider"],
                body,
                dict(request.headers),
                dict(request.query_params),
            )
        except StoreUnavailable:
            return _error(503, "service_unavailable", "The database is unreachable; retry.")
        except ApiError as error:
            return _error(error.status, error.code or "invalid_request", error.message)
        return JSONResponse({"received": True, "order": order.status if order else None})

    return Route("/payments/{provider}/webhook", webhook, methods=["POST"])


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
