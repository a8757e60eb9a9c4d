"""What Stripe checks of a request's parameters, and its error envelope.

Form values arrive as strings; amounts are integers in the currency's minor unit.
"""

from __future__ import annotations

from typing import Any

from solaris.devpayments.wire import Json

__all__ = [
    "SESSION_TTL_S",
    "StripeError",
    "amount",
    "expires_at",
    "line_items",
    "metadata",
    "missing",
    "text",
]

SESSION_TTL_S = 24 * 3600


class StripeError(Exception):
    """An API error, answered as Stripe's `{"error": {...}}` envelope with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {
            "error": {
                "type": kind,
                "message": message,
                **({"param": param} if param else {}),
                **({"code": code} if code else {}),
            }
        }


def missing(kind: str, id: str, param: str) -> StripeError:
    return StripeError(404, f"No such {kind}: '{id}'", param, "resource_missing")


def line_items(given: object) -> tuple[str, int, list[Json]]:
    if not isinstance(given, list) or not given:
        raise StripeError(
            400, "Missing required param: line_items.", "line_items", "parameter_missing"
        )
    currencies, total, items = set(), 0, []
    for index, item in enumerate(given):
        param = f"line_items[{index}]"
        price = item.get("price_data") if isinstance(item, dict) else None
        if not isinstance(price, dict):
            raise StripeError(400, f"dev-payments takes inline {param}[price_data] only", param)
        product = price.get("product_data")
        if not isinstance(product, dict) or not product.get("name"):
            raise StripeError(
                400,
                "Missing required param: product_data[name].",
                f"{param}[price_data][product_data][name]",
            )
        currency = price.get("currency")
        if not isinstance(currency, str) or len(currency) != 3:
            raise StripeError(400, "Invalid currency.", f"{param}[price_data][currency]")
        unit = amount(price.get("unit_amount"), f"{param}[price_data][unit_amount]")
        quantity = amount(item.get("quantity", "1"), f"{param}[quantity]", minimum=1)
        currencies.add(currency.lower())
        total += unit * quantity
        items.append({"name": product["name"], "unit_amount": unit, "quantity": quantity})
    if len(currencies) != 1:
        raise StripeError(400, "All line items must use the same currency.", "line_items")
    return currencies.pop(), total, items


def amount(value: object, param: str, minimum: int = 0) -> int:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text.isdigit() or int(text) < minimum or int(text) > 99_999_999:
        raise StripeError(400, f"Invalid integer: {value}", param)
    return int(text)


def metadata(given: object) -> dict[str, str]:
    if given == "":
        return {}
    if not isinstance(given, dict) or len(given) > 50:
        raise StripeError(400, "Invalid metadata: at most 50 string keys.", "metadata")
    for key, value in given.items():
        if len(key) > 40 or not isinstance(value, str) or len(value) > 500:
            raise StripeError(400, f"Invalid metadata[{key}].", f"metadata[{key}]")
    return dict(given)


def text(params: Json, key: str, length_max: int, required: bool = False) -> Any:
    value = params.get(key)
    if value is None and required:
        raise StripeError(400, f"Missing required param: {key}.", key, "parameter_missing")
    if value is not None and (not isinstance(value, str) or len(value) > length_max):
        raise StripeError(400, f"Invalid {key}.", key)
    return value


def expires_at(given: object, now: int) -> int:
    if given is None:
        return now + SESSION_TTL_S
    expires = amount(given, "expires_at")
    if not now + 1800 <= expires <= now + SESSION_TTL_S:
        raise StripeError(400, "expires_at must be 30 minutes to 24 hours away.", "expires_at")
    return expires
